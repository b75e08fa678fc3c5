"""A collector on PostgreSQL whose database goes away under load and comes back: it stops
acknowledging, says so in ``/healthz`` (503, the store named) and its log, carries on by itself
when the database returns, and every event a gateway published is stored exactly once.

The database is a server of the test's own (``initdb`` into a temporary directory), stopped and
started again while a gateway stand-in publishes all along; the collector is a real process
(``kerbside-collector run``) on the session's Mosquitto.
"""

from __future__ import annotations

import json
import signal
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.helpers import (
    Mosquitto,
    MqttRecorder,
    free_port,
    occupancy_event,
    start_collector,
    stop_process,
    wait_for_log,
    wait_until,
    write_collector_setup,
)
from tests.pg import OwnPostgres, own_postgres

pytestmark = [pytest.mark.slow, pytest.mark.reliability]

HALF = 60  # events published in each outage
EVERY_S = 0.025  # a gateway's burst: 40 events a second


@pytest.fixture
def database() -> Iterator[OwnPostgres]:
    with own_postgres() as server:
        yield server


def health(port: int) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())
    except urllib.error.URLError:
        return 0, {}  # not listening yet


def stored(url: str) -> list[str]:
    with psycopg.connect(url) as db:
        return [r[0] for r in db.execute("SELECT event_id FROM events").fetchall()]


def test_a_lost_database_stops_acknowledgements_and_nothing_is_lost_when_it_returns(
    tmp_path: Path, broker: Mosquitto, topic_root: str, database: OwnPostgres
) -> None:
    """First outage: /healthz and the log say so, and the collector carries on by itself when
    the database is back. Second outage: the collector is killed while it holds events it could
    not store; they were never acknowledged, so the broker hands them to the next collector."""
    http = free_port()
    config = write_collector_setup(
        tmp_path, port=broker.port, topic_root=topic_root, store=f"{{url: '{database.url}'}}"
    )
    config.write_text(
        config.read_text().replace("http: null", f"http: {{host: 127.0.0.1, port: {http}}}")
    )
    log = tmp_path / "collector.log"
    state = {"STATE_DIRECTORY": str(tmp_path)}  # its site cache here, not in /var/lib
    proc = start_collector(config, log, state)
    gateway = MqttRecorder(broker.port, f"gw-{topic_root}"[:60])
    published: list[str] = []
    start = int(time.time() * 1000) - 60_000

    def publish(first: int, last: int) -> None:
        for n in range(first, last + 1):
            bay = f"B{(n - 1) % 4 + 1:03d}"
            state = "occupied" if (n - 1) // 4 % 2 == 0 else "vacant"
            body = occupancy_event(n, bay, state, start + n * 100)
            assert gateway.publish(f"{topic_root}/gw/gw-1/events", json.dumps(body).encode())
            published.append(body["event_id"])
            time.sleep(EVERY_S)  # a gateway's pace

    try:
        wait_for_log(log, "collector started", proc)
        wait_until(lambda: health(http)[0] == 200, timeout=30)
        publisher = threading.Thread(target=publish, args=(1, HALF), daemon=True)
        publisher.start()
        wait_until(lambda: len(stored(database.url)) >= HALF // 4, timeout=30)

        database.stop()  # under load: the gateway goes on publishing
        wait_until(lambda: health(http)[0] == 503, timeout=30, every=0.2)
        code, body = health(http)
        assert code == 503
        assert body["store"] in ("down", "failing")
        assert body["status"] == "down"
        wait_for_log(log, "connection lost", proc)
        publisher.join(timeout=30)
        first_half = list(published)
        assert len(first_half) == HALF
        database.start()
        wait_until(lambda: health(http)[0] == 200, timeout=60, every=0.2)
        wait_for_log(log, "connected again", proc)
        wait_until(lambda: len(stored(database.url)) >= HALF, timeout=60, every=0.2)
        assert sorted(stored(database.url)) == sorted(first_half)

        database.stop()
        failed = log.read_text(errors="replace").count("not committed; again in")
        publish(HALF + 1, 2 * HALF)  # reaches the collector, which cannot store it
        wait_until(lambda: health(http)[0] == 503, timeout=30, every=0.2)
        wait_until(
            lambda: log.read_text(errors="replace").count("not committed; again in") > failed,
            30,
            "the collector to try the second half and fail",
        )
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        database.start()
        proc = start_collector(config, log, state)
        wait_until(lambda: len(stored(database.url)) >= 2 * HALF, timeout=60, every=0.2)
    finally:
        stop_process(proc, signal.SIGTERM, timeout=20)
        gateway.close()
    assert proc.returncode == 0, log.read_text()
    events = stored(database.url)
    assert sorted(events) == sorted(published)  # every published event, exactly once
    assert len(events) == 2 * HALF
    with psycopg.connect(database.url) as db:
        journal = db.execute("SELECT count(*) FROM journal WHERE type = 'occupancy'").fetchone()
        positions = [r[0] for r in db.execute("SELECT pos FROM journal ORDER BY pos").fetchall()]
    assert journal == (2 * HALF,)
    assert positions == list(range(1, len(positions) + 1))  # no position lost or repeated
