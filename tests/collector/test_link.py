"""The collector's MQTT link process (paho, for MQTT 3.1.1 brokers): its framing, and its life
beside the collector."""

from __future__ import annotations

import os
import signal
import socket
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kerbside.collector.config import MqttConfig
from kerbside.collector.link.child import BrokerLink, FrameReader, encode_frame
from kerbside.collector.link.process import ProcessLink
from kerbside.collector.runtime import Collector
from tests.collector.test_ingest import Client, run_collector
from tests.helpers import (
    Mosquitto,
    RecordingBackoff,
    free_port,
    start_collector,
    stop_process,
    wait_for_log,
    wait_until,
    wait_until_async,
    write_collector_setup,
)
from tests.helpers import occupancy_event as event

pytestmark = pytest.mark.slow  # starts processes (brokers, programs, servers)

ITEMS: list[Any] = [
    [("m", ("root/gw/gw-1/events", b'{"v":1}', 1, 7, 1, 1764144005120))],
    [("c", True, 3), ("p", 12)],
    [("a", 7, 1, 3)] * 500,
    [("P", 1, "root/deadletter", "x" * 70_000, 0, False)],
]


def test_every_prefix_of_a_frame_is_incomplete_and_the_whole_comes_out_once() -> None:
    frame = encode_frame(ITEMS[1])
    for cut in range(len(frame)):
        reader = FrameReader()
        assert reader.feed(frame[:cut]) == []
        assert reader.feed(frame[cut:]) == [ITEMS[1]]
        assert reader.feed(b"") == []


def test_frames_in_one_chunk_come_out_in_order() -> None:
    stream = b"".join(encode_frame(items) for items in ITEMS)
    assert FrameReader().feed(stream) == ITEMS


@given(st.lists(st.integers(min_value=1, max_value=5000), max_size=40))
def test_any_chunking_gives_the_same_frames(cuts: list[int]) -> None:
    stream = b"".join(encode_frame(items) for items in ITEMS)
    reader = FrameReader()
    out: list[Any] = []
    pos = 0
    for size in cuts:
        out += reader.feed(stream[pos : pos + size])
        pos += size
    out += reader.feed(stream[pos:])
    assert out == ITEMS


def _link_processes(parent: int) -> list[int]:
    """The collector's MQTT link children (by their command line)."""
    children: list[int] = []
    for task in Path(f"/proc/{parent}/task").iterdir():
        children += [int(p) for p in (task / "children").read_text().split()]
    return [
        pid
        for pid in children
        if b"kerbside.collector.link.child" in Path(f"/proc/{pid}/cmdline").read_bytes()
    ]


def _gone(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return True
    return "\nState:\tZ" in status  # a zombie no one has reaped yet has exited all the same


def test_the_link_process_leaves_the_broker_when_the_collector_is_killed(
    tmp_path: Path, broker: Mosquitto, topic_root: str
) -> None:
    # paho's process is the link for MQTT 3.1.1 brokers
    config = write_collector_setup(
        tmp_path, port=broker.port, topic_root=topic_root, protocol="3.1.1"
    )
    log = tmp_path / "collector.log"
    proc = start_collector(config, log)
    try:
        wait_for_log(log, "connected to", proc)
        (child,) = _link_processes(proc.pid)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        wait_until(lambda: _gone(child), 5, "the link process gone with the collector")
    finally:
        stop_process(proc, signal.SIGKILL, timeout=10)


def test_a_link_process_that_dies_is_replaced_and_nothing_is_lost(
    tmp_path: Path, broker: Mosquitto, topic_root: str, caplog: pytest.LogCaptureFixture
) -> None:
    config = write_collector_setup(
        tmp_path, port=broker.port, topic_root=topic_root, bays=4, protocol="3.1.1"
    )
    gateway = Client(broker.port)
    events = f"{topic_root}/gw/gw-1/events"
    now = int(time.time() * 1000)

    async def body(service: Collector) -> None:
        gateway.publish(events, event(1, "B001", "occupied", now - 20_000))
        await wait_until_async(lambda: service.store.count_events() == 1)
        (child,) = _link_processes(os.getpid())
        assert isinstance(service.link, ProcessLink)
        backoff = service.link.backoff = RecordingBackoff(0.3, 0.3)
        os.kill(child, signal.SIGKILL)
        await wait_until_async(lambda: not service.link.connected, 10)
        # published while no link process is there: the broker keeps it in our session
        gateway.publish(events, event(2, "B002", "occupied", now - 19_000))
        await wait_until_async(lambda: service.link.connected, 20)
        # the new process was started after the backoff's delay, which starts over
        assert [delay for _, delay in backoff.given] == [0.3]
        assert backoff.failures == 0
        gateway.publish(events, event(3, "B003", "occupied", now - 18_000))
        await wait_until_async(lambda: service.store.count_events() == 3, 20)
        # nothing more arrives (the first event was acked once): the next one sent is the next
        gateway.publish(events, event(4, "B004", "occupied", now - 17_000))
        await wait_until_async(lambda: service.store.count_events() == 4, 20)
        assert "rejected.internal_error" not in service.store.counters()
        seqs = [e.body["seq"] for e in service.store.journal(types=["occupancy"])]
        assert seqs == [1, 2, 3, 4]
        assert _link_processes(os.getpid()) != [child]

    try:
        run_collector(config, body)
    finally:
        gateway.close()
    assert any(
        "MQTT link process exited (code -9): starting another in 0.3 s" in r.getMessage()
        for r in caplog.records
    )


def test_the_link_process_reconnects_with_its_backoff(tmp_path: Path) -> None:
    port = free_port()
    backoff = RecordingBackoff(0.1, 0.4)
    ours, theirs = socket.socketpair()
    link = BrokerLink(MqttConfig(port=port, protocol="3.1.1"), theirs, 0, backoff)
    link.connect()
    broker: Mosquitto | None = None
    try:
        wait_until(lambda: backoff.failures >= 4, what="four refused attempts")
        assert [delay for _, delay in backoff.given[:3]] == [0.1, 0.2, 0.4]
        assert backoff.spaced([at for at, _ in backoff.given])
        broker = Mosquitto(tmp_path, port=port).start()
        wait_until(lambda: link.connected, what="connected once the broker is up")
        assert backoff.failures == 0
    finally:
        link.close()
        ours.close()
        theirs.close()
        if broker is not None:
            broker.stop()
    assert not link.serving
