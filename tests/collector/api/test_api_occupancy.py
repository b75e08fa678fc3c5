"""Time-weighted occupancy per bucket: the pure computation, and the route over the store."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kerbside.collector.api.occupancy import (
    IntervalError,
    occupancy_buckets,
    parse_interval,
)
from kerbside.core.instants import parse_instant
from tests.collector.api.conftest import ApiServer

H = 3_600_000
T0 = parse_instant("2026-11-26T00:00:00Z")


def test_parse_interval() -> None:
    assert parse_interval("15m") == 15 * 60_000
    assert parse_interval("1h") == H
    assert parse_interval("1d") == 24 * H
    for bad in ("", "0m", "15", "1w", "-1h", "30s", "1.5h", "m15"):
        with pytest.raises(IntervalError):
            parse_interval(bad)


def test_one_bay_half_an_hour_in_each_of_two_buckets() -> None:
    timelines = {"b1": [(T0, "vacant"), (T0 + H // 2, "occupied"), (T0 + 3 * H // 2, "vacant")]}
    buckets = occupancy_buckets(timelines, T0, T0 + 2 * H, H)
    assert [b.rate for b in buckets] == [0.5, 0.5]
    assert [b.occupied_ms for b in buckets] == [H // 2, H // 2]


def test_unknown_time_is_left_out_of_the_rate() -> None:
    # b1 unknown until 00:30 then occupied; b2 vacant all along.
    timelines = {"b1": [(T0 + H // 2, "occupied")], "b2": [(T0 - H, "vacant")]}
    (bucket,) = occupancy_buckets(timelines, T0, T0 + H, H)
    assert bucket.unknown_ms == H // 2
    assert bucket.rate == pytest.approx((H / 2) / (H / 2 + H))


def test_last_bucket_is_cut_at_end_and_no_data_is_none() -> None:
    buckets = occupancy_buckets({"b1": []}, T0, T0 + 90 * 60_000, H)
    assert [b.end - b.start for b in buckets] == [H, H // 2]
    assert all(b.rate is None for b in buckets)


@given(
    st.lists(
        st.tuples(st.integers(0, 4 * H), st.sampled_from(["occupied", "vacant", "unknown"])),
        max_size=20,
    ),
    st.sampled_from([15 * 60_000, H, 3 * H]),
)
def test_buckets_account_for_every_millisecond(changes: list[tuple[int, str]], step: int) -> None:
    line = sorted((T0 + t, s) for t, s in changes)
    buckets = occupancy_buckets({"b": line}, T0, T0 + 4 * H, step)
    assert sum(b.occupied_ms + b.vacant_ms + b.unknown_ms for b in buckets) == 4 * H
    for b in buckets:
        assert b.rate is None or 0.0 <= b.rate <= 1.0


def test_occupancy_route(api: ApiServer) -> None:
    svc = api.service
    api.call(lambda: svc.set_state("CA-F-B00000", "vacant", T0 - H))
    api.call(lambda: svc.set_state("CA-F-B00000", "occupied", T0 + H // 4))
    api.call(lambda: svc.set_state("CA-F-B00002", "occupied", T0 - H))
    api.call(lambda: svc.set_state("CA-F-B00004", "vacant", T0 - H))
    params = {
        "zone": "CA-F",
        "start": "2026-11-26T00:00:00Z",
        "end": "2026-11-26T02:00:00Z",
        "interval": "1h",
    }
    with api.client("analyst") as c:
        r = c.get("/api/v1/occupancy", params=params)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["zone_id"] == "CA-F"
        first, second = body["buckets"]
        assert first["start"] == "2026-11-26T00:00:00.000Z"
        assert first["rate"] == pytest.approx((0.75 + 1) / 3, abs=1e-6)
        assert second["rate"] == pytest.approx(2 / 3, abs=1e-6)
        assert first["bays"] == 3
        for bad, field in [
            ({"interval": "7x"}, "query.interval"),
            ({"end": "2026-11-25T00:00:00Z"}, "query.end"),
            ({"start": "yesterday"}, "query.start"),
            ({"interval": "1m", "end": "2027-11-26T00:00:00Z"}, "query.interval"),
        ]:
            r = c.get("/api/v1/occupancy", params={**params, **bad})
            assert r.status_code == 422
            assert r.json()["field"] == field
        r = c.get("/api/v1/occupancy", params={**params, "zone": "NOPE"})
        assert r.status_code == 404
        assert r.json()["field"] == "query.zone"
