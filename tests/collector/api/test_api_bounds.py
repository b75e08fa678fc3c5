"""What one request may ask of the collector: cursors and instants it can hold (a 4xx naming the
field, never a plain-text 500), occupancy history bounded in bays x days and read in a worker
thread a few at a time (the loop answers everyone else meanwhile), and a fault of ours answered
in JSON too."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from kerbside.collector.api.occupancy import HEAVY_READS_AT_ONCE, MAX_BAY_DAYS
from kerbside.core.instants import format_instant
from tests.collector.api.conftest import ApiServer

BAY = "CA-F-B00000"
DAY = 86_400_000

BAD_QUERIES = [
    ("/api/v1/alerts", {"cursor": "9" * 40 + "|x"}, "query.cursor"),
    ("/api/v1/alerts", {"cursor": "٣|x"}, "query.cursor"),  # a digit, but not an ASCII one
    ("/api/v1/bays", {"cursor": "9" * 40}, "query.cursor"),
    (f"/api/v1/bays/{BAY}/sessions", {"cursor": "9" * 40}, "query.cursor"),
    (f"/api/v1/bays/{BAY}/sessions", {"start": "0001-01-01T00:00:00+01:00"}, "query.start"),
    (
        "/api/v1/occupancy",
        {"start": "0001-01-01T00:00:00+01:00", "end": "2026-01-01T00:00:00Z"},
        "query.start",
    ),
    (
        "/api/v1/occupancy",
        {"start": "2026-01-01T00:00:00Z", "end": "9999-12-31T23:00:00-01:00"},
        "query.end",
    ),
]


@pytest.mark.parametrize(("path", "params", "field"), BAD_QUERIES)
def test_queries_it_cannot_hold_get_a_4xx_naming_the_field(
    shared_api: ApiServer, path: str, params: dict[str, str], field: str
) -> None:
    with shared_api.client("admin") as client:
        response = client.get(path, params=params)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.json()["field"] == field


def test_occupancy_is_bounded_in_bays_times_days(api: ApiServer) -> None:
    bays = len(api.service.site.bays)  # 6
    now = api.call(api.service.collector.queries.now)
    most_days = MAX_BAY_DAYS // bays
    with api.client("analyst") as client:
        too_much = client.get(
            "/api/v1/occupancy",
            params={
                "start": _iso(now - (most_days + 1) * DAY),
                "end": _iso(now),
                "interval": "30d",
            },
        )
        enough = client.get(
            "/api/v1/occupancy",
            params={"start": _iso(now - most_days * DAY), "end": _iso(now), "interval": "30d"},
        )
        # days not yet come cost nothing: the bound counts up to the collector's now
        ahead = client.get(
            "/api/v1/occupancy",
            params={"start": _iso(now - DAY), "end": _iso(now + 5000 * DAY), "interval": "1d"},
        )
    assert too_much.status_code == 422
    assert too_much.json()["field"] == "query.start"
    assert "bay-days" in too_much.json()["detail"][0]["msg"]
    assert enough.status_code == 200, enough.text
    assert ahead.status_code == 200, ahead.text


def _iso(instant: int) -> str:
    return format_instant(instant)


def test_occupancy_is_read_off_the_loop_a_few_at_a_time(
    api: ApiServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The store's read is held until the test lets it go: meanwhile the loop must answer
    /healthz and list bays, and no more than HEAVY_READS_AT_ONCE reads may be in at once."""
    store = api.service.store
    release = threading.Event()
    inside: list[str] = []
    most = [0]
    lock = threading.Lock()

    def held(read: Any) -> Any:
        def wrapper(*args: Any) -> Any:
            with lock:
                inside.append(threading.current_thread().name)
                most[0] = max(most[0], len(inside))
            release.wait(20)
            with lock:
                inside.pop()
            return read(*args)

        return wrapper

    for name in ("timelines", "state_changes"):
        if hasattr(store, name):
            monkeypatch.setattr(store, name, held(getattr(store, name)))
    now = api.call(api.service.collector.queries.now)
    params = {"start": _iso(now - 2 * DAY), "end": _iso(now), "interval": "1h"}

    def ask() -> int:
        with api.client("analyst") as client:
            return client.get("/api/v1/occupancy", params=params, timeout=30).status_code

    with ThreadPoolExecutor(4) as pool:
        asked = [pool.submit(ask) for _ in range(4)]
        with httpx.Client(base_url=api.url, timeout=5) as client:
            while len(inside) < HEAVY_READS_AT_ONCE:
                assert client.get("/healthz").status_code in (200, 503)
            assert client.get("/healthz").status_code in (200, 503)
        with api.client("officer") as client:
            assert client.get("/api/v1/bays").status_code == 200
        assert len(inside) == HEAVY_READS_AT_ONCE
        release.set()
        assert [f.result() for f in asked] == [200] * 4
    assert most[0] == HEAVY_READS_AT_ONCE


def test_a_fault_of_ours_is_answered_in_json(
    api: ApiServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(**_: Any) -> Any:
        raise RuntimeError("a bug")

    monkeypatch.setattr(api.service.store, "alerts", broken)
    with api.client("officer") as client:
        response = client.get("/api/v1/alerts")
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"field": None, "detail": "internal error; it has been logged"}


def test_healthz_before_the_rules_clock_has_moved(api: ApiServer) -> None:
    """A batch committed while the broker hands over its backlog (the rules' clock not started)
    once made /healthz answer 503 "store: down" (the clock's instant could not be written)."""
    harness = api.service

    def backlog_batch() -> None:
        harness.collector.cycle.hold()
        harness.ingest(harness.message(harness.event(BAY, "occupied", harness.clock.now)))

    api.call(backlog_batch)
    with httpx.Client(base_url=api.url, timeout=5) as client:
        health = client.get("/healthz").json()
    assert (health["store"], health["clock"]) == ("ok", None), health
