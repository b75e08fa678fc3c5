"""A collector killed (SIGKILL) under load, at several instants, and started again each time:
every event it committed has its points in InfluxDB, without a ``backfill``.

Real Mosquitto, real InfluxDB 1.x, the collector as its own process. The points of a batch are
written to the spool in the batch's own transaction, so no instant of a kill can leave an
acknowledged event without them.
"""

from __future__ import annotations

import json
import signal
import sqlite3
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from tests.helpers import (
    Influxd,
    Mosquitto,
    occupancy_event,
    start_collector,
    topic_root_for,
    wait_for_log,
    wait_until,
    write_collector_setup,
)

pytestmark = pytest.mark.slow

BAYS = 200
EVENTS = 4000
RATE = 500  # events/s
KILL_AT_S = (1.0, 3.2, 5.5)  # after the stream's start


def _publish(port: int, root: str, base_ms: int, sent: list[int], stop: threading.Event) -> None:
    """EVENTS events at RATE/s: each bay flips with every round of BAYS, one ms apart."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"sigkill-gw-{time.time_ns()}")
    client.connect("127.0.0.1", port)
    client.loop_start()
    began = time.monotonic()
    infos = []
    for i in range(EVENTS):
        if stop.is_set():
            break
        bay = f"B{i % BAYS + 1:03d}"
        state = "occupied" if (i // BAYS) % 2 == 0 else "vacant"
        body = occupancy_event(i + 1, bay, state, base_ms + i)
        infos.append(client.publish(f"{root}/gw/gw-1/events", json.dumps(body), qos=1))
        sent[0] = i + 1
        time.sleep(max(0.0, began + (i + 1) / RATE - time.monotonic()))  # the gateways' rate
    for info in infos:
        info.wait_for_publish(30)
    client.loop_stop()
    client.disconnect()


def _points(influx: Influxd, measurement: str, field: str) -> set[tuple[str, int]]:
    """(bay_id, time in ms) of every point of ``measurement``."""
    results = influx.query(f"SELECT {field} FROM {measurement} GROUP BY bay_id", db="kerbside")
    found: set[tuple[str, int]] = set()
    for series in results[0].get("series") or []:
        bay = series["tags"]["bay_id"]
        found.update((bay, int(row[0])) for row in series["values"])
    return found


def test_sigkill_under_load_leaves_every_committed_events_points_in_influxdb(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    influx = Influxd(tmp_path / "influxd").start()
    broker = Mosquitto(tmp_path / "mosquitto").start()
    collector = None
    stop = threading.Event()
    publisher = None
    try:
        influx.query("CREATE DATABASE kerbside")
        root = topic_root_for(request.node.name)
        config = write_collector_setup(
            tmp_path / "collector",
            port=broker.port,
            topic_root=root,
            bays=BAYS,
            extra=f"influxdb: {{url: '{influx.url}', api: v1, database: kerbside}}\n",
        )
        log = tmp_path / "collector.log"
        collector = start_collector(config, log)
        wait_for_log(log, "connected to", collector, 60)
        sent = [0]
        base_ms = int(time.time() * 1000) - 120_000
        publisher = threading.Thread(
            target=_publish, args=(broker.port, root, base_ms, sent, stop), daemon=True
        )
        began = time.monotonic()
        publisher.start()
        for n, at in enumerate(KILL_AT_S):
            time.sleep(max(0.0, began + at - time.monotonic()))  # the kill's instant
            collector.send_signal(signal.SIGKILL)
            collector.wait(10)
            assert 0 < sent[0] < EVENTS, "the kill fell outside the stream"
            log = tmp_path / f"collector-{n + 1}.log"
            collector = start_collector(config, log)
            wait_for_log(log, "connected to", collector, 60)
        publisher.join(EVENTS / RATE + 60)
        assert not publisher.is_alive()

        store = sqlite3.connect(tmp_path / "collector" / "collector.db")

        def committed_events() -> int:
            return int(store.execute("SELECT COUNT(*) FROM events").fetchone()[0])

        # the last run takes in whatever the broker kept for it while the collector was down
        wait_until(lambda: committed_events() == EVENTS, timeout=60)
        changes = {
            (bay, int(ts))
            for bay, ts in store.execute(
                "SELECT bay_id, ts FROM state_changes"
                " UNION ALL SELECT bay_id, ts FROM state_changes_recent"
            )
        }
        closed = {
            (bay, int(start))
            for bay, start in store.execute(
                "SELECT bay_id, start FROM sessions WHERE end IS NOT NULL"
                " UNION ALL SELECT bay_id, start FROM sessions_recent WHERE end IS NOT NULL"
            )
        }
        store.close()
        assert len(changes) == EVENTS  # every event flipped its bay
        assert closed

        def arrived() -> bool:
            return (
                _points(influx, "bay_state", "occupied") >= changes
                and _points(influx, "bay_session", "duration_s") >= closed
            )

        wait_until(arrived, timeout=60)
        assert _points(influx, "bay_state", "occupied") == changes
        assert _points(influx, "bay_session", "duration_s") == closed
        assert "backfill" not in log.read_text()
    finally:
        stop.set()
        if publisher is not None:
            publisher.join(30)
        if collector is not None and collector.poll() is None:
            collector.kill()
            collector.wait()
        broker.stop()
        influx.stop()
