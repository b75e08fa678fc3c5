"""End to end with BLE: the real agent (``kerbside-edge run``) scanning through bleak's own
``BleakScanner`` over the simulator's bleak backend, beside serial sensors on pseudo-terminals,
publishing into a real Mosquitto; and its watchdog restarting a scan that went deaf."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
import yaml
from paho.mqtt.enums import CallbackAPIVersion

from kerbside.core.instants import parse_instant
from tests.helpers import Mosquitto, wait_until

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
SIM_BACKEND = "kerbside.sim.ble_backend.SimScannerBackend"


class Subscriber:
    def __init__(self, broker: Mosquitto, topic_root: str) -> None:
        self.messages: list[tuple[str, bytes]] = []
        self.lock = threading.Lock()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"t-{uuid.uuid4().hex}")
        subscribed = threading.Event()
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(f"{topic_root}/#", qos=1)
        self.client.on_subscribe = lambda c, u, mid, rc, p: subscribed.set()
        self.client.on_message = self._message
        self.client.connect("127.0.0.1", broker.port)
        self.client.loop_start()
        assert subscribed.wait(10)

    def _message(self, client: Any, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        with self.lock:
            self.messages.append((msg.topic, bytes(msg.payload)))

    def payloads(self, leaf: str) -> list[dict[str, Any]]:
        with self.lock:
            return [json.loads(p) for t, p in self.messages if t.endswith("/" + leaf)]

    def events(self) -> list[dict[str, Any]]:
        """Each event once (QoS 1 may redeliver), by seq."""
        unique = {e["event_id"]: e for e in self.payloads("events")}
        return sorted(unique.values(), key=lambda e: e["seq"])

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[Any]]]:
    made: list[subprocess.Popen[Any]] = []
    yield made
    for proc in made:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


@pytest.fixture
def subscriber(own_broker: Mosquitto, topic_root: str) -> Iterator[Subscriber]:
    sub = Subscriber(own_broker, topic_root)
    yield sub
    sub.close()


def agent_config(base: dict[str, Any], broker: Mosquitto, topic_root: str, tmp: Path) -> Path:
    config = dict(base)
    config["mqtt"] = {"host": "127.0.0.1", "port": broker.port, "topic_root": topic_root}
    config["outbox"] = {"path": str(tmp / "outbox.db"), "max_mb": 16}
    config["detector"] = {"confirm_occupied_s": 1.5, "confirm_vacant_s": 1.5, "silence_s": 300}
    config["health_interval_s"] = 1
    config["clock"] = {"require_sync": False}
    path = tmp / "edge.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def start_agent(config: Path, tmp: Path, feed: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "KERBSIDE_SIM_BLE_FEED": feed}
    with (tmp / "agent.log").open("ab") as log:
        return subprocess.Popen(
            [
                *(str(BIN / "kerbside-edge"), "run", "--config", str(config)),
                *("--capture", str(tmp / "capture.jsonl")),
            ],
            stdout=log,
            stderr=log,
            env=env,
        )


def stop(proc: subprocess.Popen[Any]) -> int:
    proc.send_signal(signal.SIGTERM)
    return proc.wait(timeout=20)


def replay(tmp: Path) -> list[dict[str, Any]]:
    done = subprocess.run(
        [
            *(str(BIN / "kerbside-edge"), "replay", str(tmp / "capture.jsonl")),
            *("--config", str(tmp / "edge.yaml")),
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return [json.loads(line) for line in done.stdout.splitlines()]


def assert_live_equals_replay(live: list[dict[str, Any]], tmp: Path) -> None:
    """What the broker got is what replaying the agent's capture gives; the agent may also
    have confirmed a few deadlines that fell due after the capture's last record."""
    replayed = replay(tmp)
    assert live[: len(replayed)] == replayed
    lines = (tmp / "capture.jsonl").read_text().splitlines()
    last_t = max(parse_instant(json.loads(line)["t"]) for line in lines if line.endswith("}"))
    assert all(parse_instant(e["confirmed_ts"]) > last_t for e in live[len(replayed) :])
    assert [e["seq"] for e in live] == list(range(1, len(live) + 1))


def test_serial_and_ble_sensors_through_one_detector_and_outbox(
    tmp_path: Path,
    own_broker: Mosquitto,
    topic_root: str,
    subscriber: Subscriber,
    processes: list[subprocess.Popen[Any]],
) -> None:
    sock = tmp_path / "ble.sock"
    sim_config = tmp_path / "sim-edge.yaml"
    sim = subprocess.Popen(
        [
            *(str(BIN / "kerbside-sim"), "serial", "--scenario", "clean", "--seed", "3"),
            *("--sensors", "6", "--ble-sensors", "6", "--sensors-per-port", "6"),
            *("--speed", "60", "--dir", str(tmp_path / "ttys")),
            *("--config-out", str(sim_config), "--ble-socket", str(sock)),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    processes.append(sim)
    assert sim.stdout is not None
    wait_until(sim_config.exists, 20, "the simulator's edge config")
    base = yaml.safe_load(sim_config.read_text())
    assert base["ble"]["enabled"] is True
    base["ble"]["backend"] = SIM_BACKEND
    config = agent_config(base, own_broker, topic_root, tmp_path)
    agent = start_agent(config, tmp_path, f"socket:{sock}")
    processes.append(agent)

    def both_kinds_occupied() -> bool:
        occupied = {e["sensor_id"][:3] for e in subscriber.events() if e["state"] == "occupied"}
        return {"S-0", "BLE"} <= occupied

    wait_until(both_kinds_occupied, 90, "occupied bays of serial and BLE sensors")
    wait_until(lambda: len(subscriber.payloads("health")) >= 2, 10, "health")
    assert stop(agent) == 0, (tmp_path / "agent.log").read_text()

    live = subscriber.events()
    sensors = {e["sensor_id"] for e in live}
    assert any(s.startswith("BLE-") for s in sensors)
    assert any(s.startswith("S-") for s in sensors)
    assert_live_equals_replay(live, tmp_path)
    health = subscriber.payloads("health")[-1]
    assert "ble" in {p["src"] for p in health["ports"]}
    by_sensor = {s["sensor_id"]: s for s in health["sensors"]}
    ble_heard = [s for sid, s in by_sensor.items() if sid.startswith("BLE-") and s["frames"]]
    assert ble_heard
    assert all(isinstance(s["rssi"], int) and -127 <= s["rssi"] < 0 for s in ble_heard)
    assert all(s["rssi"] is None for sid, s in by_sensor.items() if sid.startswith("S-"))


def test_watchdog_restarts_a_deaf_scan_and_no_event_is_lost(
    tmp_path: Path,
    own_broker: Mosquitto,
    topic_root: str,
    subscriber: Subscriber,
    processes: list[subprocess.Popen[Any]],
) -> None:
    street = tmp_path / "street"
    subprocess.run(
        [
            *(str(BIN / "kerbside-sim"), "capture", "--quiet", "--ble", "--scenario", "clean"),
            *("--seed", "8", "--sensors", "6", "--hours", "1", str(street)),
        ],
        check=True,
    )
    base = yaml.safe_load((street / "edge.yaml").read_text())
    base["ble"]["backend"] = SIM_BACKEND
    base["ble"]["watchdog_s"] = 1.0
    config = agent_config(base, own_broker, topic_root, tmp_path)
    # On the air at 60x; the agent's first scan session goes deaf after 4 s until restarted.
    feed = f"capture:{street}/capture.jsonl?speed=60&stall_after=4"
    agent = start_agent(config, tmp_path, feed)
    processes.append(agent)
    log = tmp_path / "agent.log"
    wait_until(lambda: "restarting the scan" in log.read_text(), 30, "the watchdog")
    restarted = len(subscriber.events())
    wait_until(lambda: len(subscriber.events()) >= restarted + 4, 40, "events after the restart")
    assert stop(agent) == 0, log.read_text()
    assert_live_equals_replay(subscriber.events(), tmp_path)
