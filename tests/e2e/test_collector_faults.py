"""The collector as a process against what breaks a long-running one: an event from the year 999,
a journal record it cannot read, and a full disk under its store (a small tmpfs we fill to the
last byte). It must keep running, keep memory as the store is, and carry on once space returns.
"""

from __future__ import annotations

import json
import signal
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from kerbside.core.instants import format_instant, parse_instant
from tests.collector.api.live import LiveCollector, live_token
from tests.collector.api.test_api_sse import Stream
from tests.e2e.test_edge_disk_full import fill, small_disk  # noqa: F401 (a fixture)
from tests.helpers import Mosquitto, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.reliability]


def _now() -> int:
    return int(time.time() * 1000)


def _metric(live: LiveCollector, name: str) -> float:
    with live.client() as c:
        for line in c.get("/metrics").text.splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    return 0.0


def _kill(live: LiveCollector) -> None:
    assert live.proc is not None
    live.proc.send_signal(signal.SIGKILL)
    live.proc.wait(10)
    live.proc = None


class Watcher:
    """Everything the collector publishes under the test's topic root."""

    def __init__(self, port: int, root: str) -> None:
        self.messages: list[tuple[str, dict[str, Any]]] = []
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2)
        self.client.on_message = lambda c, u, m: self.messages.append(
            (m.topic, json.loads(m.payload))
        )
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *_: subscribed.set()
        self.client.connect("127.0.0.1", port)
        self.client.subscribe(f"{root}/#", 1)
        self.client.loop_start()
        assert subscribed.wait(10), "no SUBACK"

    def on(self, suffix: str) -> list[dict[str, Any]]:
        return [body for topic, body in list(self.messages) if topic.endswith(suffix)]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def live(tmp_path: Path, broker: Mosquitto, topic_root: str) -> Iterator[LiveCollector]:
    collector = LiveCollector(tmp_path / "collector", broker, topic_root)
    yield collector
    collector.stop()


def test_an_event_from_the_year_999_is_refused_and_the_collector_starts_again(
    live: LiveCollector, broker: Mosquitto, topic_root: str
) -> None:
    """Such an event once went into the journal with its year written "999", which no parser
    reads back: after a SIGKILL the collector could not start again."""
    watcher = Watcher(broker.port, topic_root)
    try:
        live.start()
        live.publish_event("B001", "occupied", _now() - 1000)
        live.publish_event("B002", "occupied", parse_instant("0999-01-01T00:00:00Z"))
        wait_until(lambda: watcher.on("/deadletter"), 15)
        (dead,) = watcher.on("/deadletter")
        assert dead["reason"] == "ts_out_of_range"
        assert json.loads(dead["payload"])["ts"] == "0999-01-01T00:00:00.000Z"
        wait_until(lambda: _metric(live, "kerbside_events_in_total") == 1, 15)
        _kill(live)
        live.start()  # raises if it does not come up
        with live.client("officer") as c:
            assert c.get("/api/v1/bays/B001").json()["state"] == "occupied"
            assert c.get("/api/v1/bays/B002").json()["state"] == "unknown"
        assert live.proc is not None
        assert live.proc.poll() is None
    finally:
        watcher.close()


def test_a_journal_record_that_cannot_be_read_is_skipped_and_reported_at_start(
    live: LiveCollector,
) -> None:
    live.start()
    arrival = _now() - 1000
    live.publish_event("B001", "occupied", arrival)
    live.wait_for("officer", "/api/v1/bays/B001", lambda b: b["state"] == "occupied")
    _kill(live)
    # What the collector of before wrote for the year-999 event, and a good record after it,
    # both after the last saved rules (so a start re-executes them).
    db = sqlite3.connect(live.workdir / "collector.db")
    pos, watermark = db.execute(
        "SELECT MAX(pos), (SELECT value FROM kv WHERE key = 'watermark') FROM journal"
    ).fetchone()
    bad = {
        "type": "occupancy", "v": 1, "event_id": "gw-1:old:1", "gateway_id": "gw-1", "seq": 1,
        "bay_id": "B003", "sensor_id": "S003", "state": "occupied",
        "ts": "999-01-01T00:00:00.000Z", "confirmed_ts": "999-01-01T00:00:10.000Z",
        "reason": None,
    }  # fmt: skip
    later = _now() - 500
    good = {
        **bad,
        "event_id": "gw-1:old:2",
        "seq": 2,
        "bay_id": "B002",
        "sensor_id": "S002",
        "ts": format_instant(later),
        "confirmed_ts": format_instant(later + 100),
    }
    db.executemany(
        "INSERT INTO journal(pos, type, time, watermark, body) VALUES (?, 'occupancy', ?, ?, ?)",
        [
            (pos + 1, 0, int(watermark), json.dumps(bad)),
            (pos + 2, later, int(watermark), json.dumps(good)),
        ],
    )
    db.execute("INSERT INTO bays VALUES ('B002', 'occupied', ?, 'gw-1', ?)", (later, later))
    db.commit()
    db.close()
    live.start()
    assert "cannot be read, skipped" in live.log.read_text()
    assert _metric(live, "kerbside_journal_skipped") == 1
    # the records around it were re-executed: B002's unpaid alert comes (observation 0)
    live.wait_for(
        "officer",
        "/api/v1/alerts",
        lambda page: (
            {a["bay_id"] for a in page["items"] if a["status"] == "open"} >= {"B001", "B002"}
        ),
    )


def _refused_batches(live: LiveCollector) -> int:
    """Batches the collector could not commit, by its log."""
    return live.log.read_text(errors="replace").count("messages not committed; again in")


def test_a_full_disk_fails_commits_without_losing_anything_and_ingest_resumes(
    tmp_path: Path,
    small_disk: Path,  # noqa: F811 (the fixture imported above)
    broker: Mosquitto,
    topic_root: str,
) -> None:
    live = LiveCollector(tmp_path / "collector", broker, topic_root)
    # the store alone on the small disk; a small receive window and small batches, so that
    # batches left unacknowledged would soon stop the broker sending
    config = live.config.read_text()
    config = config.replace("store: {path: collector.db}", f"store: {{path: {small_disk}/c.db}}")
    config = config.replace("client_id:", "receive_maximum: 20, client_id:")
    live.config.write_text(config + "ingest: {batch_max: 10}\n")
    live.start()
    stream: Stream | None = None
    try:
        live.publish_event("B001", "occupied", _now() - 200)
        page = live.wait_for(
            "officer", "/api/v1/alerts", lambda p: p["items"] and p["items"][0]["kind"] == "unpaid"
        )
        alert = page["items"][0]
        with live.client("officer") as c:
            since = c.get("/api/v1/alerts").headers["x-last-event-id"]
        officer = {"Authorization": f"Bearer {live_token('officer')}"}
        stream = Stream(live, officer, {"since": since})
        assert stream.code == 200
        taken = _metric(live, "kerbside_events_in_total")

        filler = fill(small_disk)
        paid_at = _now()
        right = {
            "right_id": "ringgo-1", "kind": "payment", "bay_id": "B001",
            "start": format_instant(paid_at), "end": format_instant(paid_at + 3_600_000),
        }  # fmt: skip
        with live.client("provider") as c:
            refused = c.post("/api/v1/rights", json=right)
        assert refused.status_code == 503, refused.text
        health = live.wait_for(None, "/healthz", lambda h: h["store"] == "failing")
        with live.client() as c:
            assert c.get("/healthz").status_code == 503
        assert health["status"] == "down"
        # 60 events while nothing can be stored: none is counted, none acknowledged
        now = _now()
        failed = _refused_batches(live)
        live.publish_events(
            [(f"B00{2 + i % 3}", ("occupied", "vacant")[i // 3 % 2], now + i) for i in range(60)]
        )
        # the collector takes them and cannot commit them: it says so, and tries again later
        wait_until(
            lambda: _refused_batches(live) >= failed + 2, what="batches refused by the full store"
        )
        assert _metric(live, "kerbside_events_in_total") == taken
        with live.client("officer") as c:
            # memory is as the store is: the alert the refused payment would have cleared is
            # open, and the stream said nothing of it
            assert c.get(f"/api/v1/alerts/{alert['alert_id']}").json()["status"] == "open"
        assert stream.events.empty()

        filler.unlink()
        # every event goes in, without a restart (the broker's window was not left full)
        wait_until(lambda: _metric(live, "kerbside_events_in_total") == taken + 60, 30)
        live.wait_for(None, "/healthz", lambda h: h["store"] == "ok" and h["status"] == "ok")
        with live.client("provider") as c:
            assert c.post("/api/v1/rights", json=right).status_code == 201
        cleared = json.loads(stream.next(timeout=15)["data"])
        assert (cleared["alert_id"], cleared["status"], cleared["clear_reason"]) == (
            alert["alert_id"],
            "cleared",
            "right_added",
        )
        assert stream.events.empty()
        # no change id was handed out twice: the stream's ids are the store's
        db = sqlite3.connect(small_disk / "c.db")
        ids = [
            r[0]
            for r in db.execute(
                "SELECT id FROM alert_changes WHERE alert_id = ?", (alert["alert_id"],)
            )
        ]
        db.close()
        assert len(ids) == len(set(ids)) == 2
    finally:
        if stream is not None:
            stream.close()
        live.stop()
    live.start()  # and after a restart, the store and the collector agree
    with live.client("officer") as c:
        assert c.get(f"/api/v1/alerts/{alert['alert_id']}").json()["status"] == "cleared"
    live.stop()
