"""The broker killed (SIGKILL) with a queue for the collector, and persistence on: the queue and
the collector's session come back with it, and every event a gateway had handed over reaches the
store once.

Mosquitto acknowledges a message on receipt and writes its state to disk every
``autosave_interval`` (1 s here, 60 s in our broker role): a message acknowledged in the moment
before a crash, not yet saved, is lost with the broker, and the gateway has already dropped it
from its outbox (docs/operations.md says so). The test kills the broker once its save has passed
the last acknowledgement, which is what persistence promises; the window itself is a property of
Mosquitto, not of Kerbside.
"""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from kerbside.core.instants import format_instant
from tests.helpers import (
    Mosquitto,
    MqttRecorder,
    start_collector,
    wait_for_log,
    wait_until,
    write_collector_setup,
)

pytestmark = [pytest.mark.slow, pytest.mark.reliability]
BATCH = 100


def _events(first: int, count: int) -> list[bytes]:
    now = int(time.time() * 1000)
    out = []
    for n in range(first, first + count):
        bay = f"B{1 + n % 4:03d}"
        body = {
            "v": 1, "event_id": f"gw-1:crash:{n}", "gateway_id": "gw-1", "seq": n,
            "bay_id": bay, "sensor_id": "S" + bay[1:],
            "state": "occupied" if (n // 4) % 2 == 0 else "vacant",
            "ts": format_instant(now - 60_000 + n), "confirmed_ts": format_instant(now),
            "reason": None,
        }  # fmt: skip
        out.append(json.dumps(body).encode())
    return out


def _stored(store: Path) -> list[str]:
    try:
        db = sqlite3.connect(f"file:{store}?mode=ro", uri=True)
    except sqlite3.Error:
        return []
    try:
        return [r[0] for r in db.execute("SELECT event_id FROM events")]
    except sqlite3.OperationalError:
        return []
    finally:
        db.close()


def _send(port: int, root: str, events: list[bytes]) -> float:
    """Publish as gw-1, each acknowledged by the broker; returns when the last one was."""
    gateway = MqttRecorder(port, "gw-1-crash")
    try:
        for payload in events:
            assert gateway.publish(f"{root}/gw/gw-1/events", payload)
        return time.time()
    finally:
        gateway.close()


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0


def test_a_broker_killed_with_a_queue_for_the_collector_loses_none_of_it(
    tmp_path: Path, own_broker: Mosquitto, topic_root: str
) -> None:
    config = write_collector_setup(tmp_path, port=own_broker.port, topic_root=topic_root)
    store = tmp_path / "collector.db"
    log = tmp_path / "collector.log"
    collector = start_collector(config, log)
    try:
        wait_for_log(log, "connected to", collector)
        _send(own_broker.port, topic_root, _events(1, BATCH))
        wait_until(lambda: len(_stored(store)) == BATCH, 30)
        # The collector goes away (an upgrade); the broker queues for its session.
        _stop(collector)
        acked_at = _send(own_broker.port, topic_root, _events(BATCH + 1, BATCH))
        saved = own_broker.workdir / "mosquitto.db"
        wait_until(lambda: saved.exists() and saved.stat().st_mtime > acked_at + 0.1, 10)
        own_broker.stop(signal.SIGKILL)
        own_broker.start()  # same port and persistence file
        collector = start_collector(config, log)
        wait_for_log(log, "session present: True", collector)
        _send(own_broker.port, topic_root, _events(2 * BATCH + 1, BATCH))
        wait_until(lambda: len(_stored(store)) >= 3 * BATCH, 30)
        _stop(collector)
    finally:
        if collector.poll() is None:
            collector.kill()
            collector.wait()
    stored = _stored(store)
    assert sorted(stored) == sorted(f"gw-1:crash:{n}" for n in range(1, 3 * BATCH + 1))
    assert "Traceback" not in log.read_text()
