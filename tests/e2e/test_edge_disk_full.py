"""A full disk on a gateway: the real agent, its outbox on a small tmpfs we fill to the last byte,
a real Mosquitto. The agent must stay up, hold what it confirms in memory, say so, and once space
returns store and send everything, in order, with nothing dropped."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import tty
import uuid
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from kerbside.sim.kbs1 import encode_frame
from tests.helpers import Mosquitto, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.reliability]

FAULT = 0x08


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs: a real file system that really fills up."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (CI runs as root)")
    mount = tmp_path / "disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(disk: Path) -> Path:
    """Write a file until the disk refuses another byte."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for size in (65536, 4096, 1):
            with contextlib.suppress(OSError):
                while True:
                    os.write(fd, b"\0" * size)
    finally:
        os.close(fd)
    return filler


class Events:
    """Every event the broker hands out on the gateway's events topic, with health payloads."""

    def __init__(self, port: int, root: str) -> None:
        self.events: list[dict[str, object]] = []
        self.health: list[dict[str, object]] = []
        self.lock = threading.Lock()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"t-{uuid.uuid4().hex}")
        self.client.on_message = self._message
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *_: subscribed.set()
        self.client.connect("127.0.0.1", port)
        self.client.subscribe(f"{root}/gw/gw-disk/#", qos=1)
        self.client.loop_start()
        assert subscribed.wait(10), "no SUBACK"

    def _message(self, client: object, userdata: object, message: mqtt.MQTTMessage) -> None:
        body = json.loads(message.payload)
        with self.lock:
            if message.topic.endswith("/events"):
                self.events.append(body)
            elif message.topic.endswith("/health"):
                self.health.append(body)

    def count(self) -> int:
        with self.lock:
            return len(self.events)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def test_a_full_disk_is_survived_and_nothing_is_lost(
    tmp_path: Path, small_disk: Path, own_broker: Mosquitto
) -> None:
    ours, theirs = os.openpty()
    tty.setraw(theirs)
    root = f"test/disk-full-{os.getpid()}"
    config = tmp_path / "edge.yaml"
    config.write_text(
        "gateway_id: gw-disk\n"
        f"mqtt: {{host: 127.0.0.1, port: {own_broker.port}, topic_root: {root}}}\n"
        f"outbox: {{path: {small_disk}/outbox.db}}\n"
        "detector: {confirm_occupied_s: 0.2, confirm_vacant_s: 0.2, silence_s: 600}\n"
        "health_interval_s: 0.5\n"
        "clock: {require_sync: false}\n"
        f"serial: [{{port: {os.ttyname(theirs)}}}]\n"
        "sensors: [{id: S-1, bay: B-1}]\n"
    )
    events = Events(own_broker.port, root)
    log = tmp_path / "agent.log"
    with log.open("wb") as out:
        agent = subprocess.Popen(
            [sys.executable, "-m", "kerbside.edge.cli", "run", "--config", str(config)],
            stderr=out,
        )
    seq = 0

    def frame(flags: int) -> None:
        nonlocal seq
        seq += 1
        os.write(ours, encode_frame("S-1", seq, flags, 100, 200, -300, 3600, 215))

    def two_changes() -> None:
        """A fault (unknown at once), then readings that confirm the bay vacant again."""
        frame(FAULT)
        for _ in range(3):
            time.sleep(0.15)  # a sensor's readings come apart in time; the detector needs that
            frame(0)

    try:
        wait_until(lambda: "open at" in log.read_text(), 20, "the agent to open the port")
        for _ in range(3):
            two_changes()
        wait_until(lambda: events.count() == 6, 20, "the first 6 events at the broker")

        filler = fill(small_disk)
        for _ in range(5):
            two_changes()
        wait_until(lambda: "holding" in log.read_text(), 20, "the agent to say the disk is full")
        # the agent has published since (a health message), and still no event
        health = len(events.health)
        wait_until(lambda: len(events.health) > health, 10, "a health message after holding")
        assert agent.poll() is None, log.read_text()
        assert events.count() == 6  # nothing could be numbered and stored: nothing went out
        said = next(x for x in log.read_text().splitlines() if "holding" in x)
        assert "full" in said
        assert f"free space on {small_disk}" in said

        filler.unlink()  # space returns
        wait_until(lambda: events.count() == 16, 30, "the held events after space returned")
        assert "outbox writable again" in log.read_text()
        for _ in range(2):
            two_changes()
        wait_until(lambda: events.count() == 20, 20, "events confirmed after the recovery")
        wait_until(lambda: len(events.health) > 0, 10, "a health message")
    finally:
        agent.send_signal(signal.SIGTERM)
        code = agent.wait(timeout=30)
        events.close()
        os.close(ours)
        os.close(theirs)
    assert code == 0, log.read_text()
    seqs = [int(str(e["seq"])) for e in events.events]
    assert seqs == list(range(1, 21))  # in order, none missing, none twice
    assert all(h["events_dropped"] == 0 for h in events.health)
    states = [e["state"] for e in events.events]
    assert states == ["unknown", "vacant"] * 10
    assert "Traceback" not in log.read_text()
