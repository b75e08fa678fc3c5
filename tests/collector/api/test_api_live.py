"""End to end with the real collector: an `unpaid` alert raised by the live engine is cleared by
a right posted through the API; the stream delivers it; open data reflects the bay."""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kerbside.core.instants import format_instant
from tests.collector.api.live import LiveCollector
from tests.helpers import Mosquitto

pytestmark = pytest.mark.slow


@pytest.fixture
def live(tmp_path: Path, broker: Mosquitto, topic_root: str) -> Iterator[LiveCollector]:
    collector = LiveCollector(tmp_path / "collector", broker, topic_root).start()
    yield collector
    collector.stop()


def _open_unpaid(page: dict[str, Any]) -> list[dict[str, Any]]:
    return [a for a in page["items"] if a["kind"] == "unpaid" and a["status"] == "open"]


def test_right_posted_through_the_api_clears_a_live_unpaid_alert(live: LiveCollector) -> None:
    now = int(time.time() * 1000)
    # Just arrived; observation 0: the alert is raised alert_delay_s (3 s) later.
    live.publish_event("B001", "occupied", now - 200)
    page = live.wait_for("officer", "/api/v1/alerts", _open_unpaid, status="open")
    alert = _open_unpaid(page)[0]
    assert alert["bay_id"] == "B001"

    paid_at = int(time.time() * 1000)  # the driver pays now, at the machine or by phone
    with live.client("provider") as c:
        r = c.post(
            "/api/v1/rights",
            json={"right_id": "ringgo-1", "kind": "payment", "bay_id": "B001",
                  "start": format_instant(paid_at), "end": format_instant(paid_at + 3_600_000)},
        )  # fmt: skip
        assert r.status_code == 201, r.text

    cleared = live.wait_for(
        "officer", f"/api/v1/alerts/{alert['alert_id']}", lambda a: a["status"] != "open"
    )
    assert cleared["status"] == "cleared", cleared
    assert cleared["clear_reason"] == "right_added"

    # open data is built at most every few seconds, for every client at once
    live.wait_for(
        None,
        "/api/v1/opendata/parking-spots",
        lambda spots: (
            ("urn:ngsi-ld:ParkingSpot:B001", "occupied") in [(s["id"], s["status"]) for s in spots]
        ),
    )
    with live.client() as c:
        health = c.get("/healthz")
    assert health.status_code == 200, health.text
    assert health.json()["broker"] == "ok"

    # Occupancy from the store: B001 occupied since `now - 200`; the other bays never seen.
    # Every bay came into being when the collector started (its origin): none counts before.
    with contextlib.closing(sqlite3.connect(live.workdir / "collector.db")) as db:
        origins = dict(db.execute("SELECT bay_id, since FROM bay_origins").fetchall())
    assert sorted(origins) == ["B001", "B002", "B003", "B004"]
    counted_from = max(now - 60_000, *origins.values())
    end = int(time.time() * 1000)
    with live.client("analyst") as c:
        r = c.get(
            "/api/v1/occupancy",
            params={"zone": "Z1", "start": format_instant(now - 60_000),
                    "end": format_instant(end), "interval": "1m"},
        )  # fmt: skip
    assert r.status_code == 200, r.text
    first, *rest = r.json()["buckets"]
    # the last 200 ms of it (less if the collector started within them: none counts before)
    occupied_ms = now - max(now - 200, counted_from)
    assert first["occupied_s"] == pytest.approx(occupied_ms / 1000, abs=0.001)
    assert first["vacant_s"] == 0
    assert first["rate"] == 1.0  # the only bay with a known state was occupied
    unknown_ms = 4 * (now - counted_from) - occupied_ms  # B001 until it arrived, B002..B004 unseen
    assert first["unknown_s"] == pytest.approx(unknown_ms / 1000, abs=0.001)
    assert first["bays"] == 4
    assert sum(b["occupied_s"] for b in rest) == pytest.approx((end - now) / 1000, abs=0.001)
    assert all(b["rate"] == 1.0 for b in rest)


def test_bad_right_writes_nothing_in_the_real_collector(live: LiveCollector) -> None:
    with live.client("provider") as c:
        r = c.post(
            "/api/v1/rights",
            json={"right_id": "x1", "kind": "payment", "bay_id": "B999",
                  "start": "2026-11-26T08:00:00Z", "end": "2026-11-26T09:00:00Z"},
        )  # fmt: skip
        assert (r.status_code, r.json()["field"]) == (422, "body.bay_id")
        assert c.delete("/api/v1/rights/x1").status_code == 404


def test_healthz_is_503_while_the_broker_is_down(tmp_path: Path, own_broker: Mosquitto) -> None:
    collector = LiveCollector(tmp_path / "c", own_broker, "t/health").start()
    try:
        own_broker.stop()
        down = collector.wait_for(None, "/healthz", lambda h: h["status"] == "down")
        assert down["broker"] == "down"
        with collector.client() as c:
            assert c.get("/healthz").status_code == 503
            assert c.get("/metrics").status_code == 200  # still answers while degraded
    finally:
        collector.stop()


def test_suspension_all_or_nothing_in_the_real_collector(live: LiveCollector) -> None:
    now = int(time.time() * 1000)
    window = {"start": format_instant(now - 60_000), "end": format_instant(now + 3_600_000)}
    with live.client("admin") as c:
        bad = c.post(
            "/api/v1/suspensions",
            json={"suspension_id": "s-bad", "bay_ids": ["B001", "B999"], **window},
        )
        assert (bad.status_code, bad.json()["field"]) == (422, "body.bay_ids.1")
        good = c.post(
            "/api/v1/suspensions", json={"suspension_id": "s-ok", "bay_ids": ["B002"], **window}
        )
        assert good.status_code == 201, good.text
    published = live.wait_for(  # open data is built at most every few seconds
        None,
        "/api/v1/opendata/parking-spots",
        lambda found: (
            {s["id"]: s["status"] for s in found}["urn:ngsi-ld:ParkingSpot:B002"] == "closed"
        ),
    )
    spots = {s["id"]: s["status"] for s in published}
    assert spots["urn:ngsi-ld:ParkingSpot:B001"] == "unknown"  # the rejected one wrote nothing
