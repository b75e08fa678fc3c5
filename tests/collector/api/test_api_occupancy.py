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
from tests.collector.api.harness import site_data

H = 3_600_000
T0 = parse_instant("2026-11-26T00:00:00Z")


def test_parse_interval() -> None:
    assert parse_interval("15m") == 15 * 60_000
    assert parse_interval("1h") == H
    assert parse_interval("1d") == 24 * H
    for bad in ("", "0m", "15", "1w", "-1h", "30s", "1.5h", "m15"):
        with pytest.raises(IntervalError):
            parse_interval(bad)


FAR = T0 + 1000 * H  # a "now" long after every range below: nothing is cut


def test_one_bay_half_an_hour_in_each_of_two_buckets() -> None:
    timelines = {"b1": [(T0, "vacant"), (T0 + H // 2, "occupied"), (T0 + 3 * H // 2, "vacant")]}
    buckets = occupancy_buckets(timelines, T0, T0 + 2 * H, H, now=FAR)
    assert [b.rate for b in buckets] == [0.5, 0.5]
    assert [b.occupied_ms for b in buckets] == [H // 2, H // 2]
    assert [b.partial for b in buckets] == [False, False]


def test_unknown_time_is_left_out_of_the_rate() -> None:
    # b1 unknown until 00:30 then occupied; b2 vacant all along.
    timelines = {"b1": [(T0 + H // 2, "occupied")], "b2": [(T0 - H, "vacant")]}
    (bucket,) = occupancy_buckets(timelines, T0, T0 + H, H, now=FAR)
    assert bucket.unknown_ms == H // 2
    assert bucket.rate == pytest.approx((H / 2) / (H / 2 + H))


def test_last_bucket_is_cut_at_end_and_no_data_is_none() -> None:
    buckets = occupancy_buckets({"b1": []}, T0, T0 + 90 * 60_000, H, now=FAR)
    assert [b.end - b.start for b in buckets] == [H, H // 2]
    assert all(b.rate is None for b in buckets)


def test_no_bucket_after_now_and_the_current_one_is_partial() -> None:
    # At 06:21 a query to 07:00 by 15 minutes: 06:00 is over, 06:15 is partial (counted up to
    # 06:21, the bay's state carried no further), 06:30 and 06:45 have not begun.
    six = T0 + 6 * H
    now = six + 21 * 60_000
    timelines = {"b1": [(six, "vacant"), (six + 10 * 60_000, "occupied")]}
    buckets = occupancy_buckets(timelines, six, six + H, 15 * 60_000, now=now)
    assert [(b.start - six) // 60_000 for b in buckets] == [0, 15]
    assert [b.partial for b in buckets] == [False, True]
    assert buckets[1].end == six + 30 * 60_000  # the bucket's own end; as_of tells how far
    assert buckets[0].occupied_ms == 5 * 60_000
    assert buckets[1].occupied_ms == 6 * 60_000  # 06:15 to 06:21, not to 06:30
    assert buckets[1].vacant_ms + buckets[1].unknown_ms == 0
    assert buckets[0].rate == pytest.approx(5 / 15)
    assert buckets[1].rate == 1.0
    assert occupancy_buckets(timelines, now, now + H, H, now=now) == []  # all in the future


def test_a_bay_counts_from_its_origin_and_not_before() -> None:
    # b1 was added to the site at 00:40; b2 has always been there; b3 never existed.
    origins = {"b1": T0 + 40 * 60_000, "b2": T0 - H}
    timelines = {"b1": [], "b2": [(T0 - H, "occupied")], "b3": [(T0, "vacant")]}
    buckets = occupancy_buckets(timelines, T0, T0 + 2 * H, H, now=FAR, origins=origins)
    assert [b.bays for b in buckets] == [2, 2]
    assert buckets[0].unknown_ms == 20 * 60_000  # b1 from 00:40, not from 00:00
    assert buckets[0].occupied_ms == H
    assert buckets[0].vacant_ms == 0  # b3's vacant time is not counted
    before = occupancy_buckets(timelines, T0 - 3 * H, T0 - 2 * H, H, now=FAR, origins=origins)
    assert [(b.bays, b.rate, b.unknown_ms) for b in before] == [(0, None, 0)]


@given(
    st.lists(
        st.tuples(st.integers(0, 4 * H), st.sampled_from(["occupied", "vacant", "unknown"])),
        max_size=20,
    ),
    st.sampled_from([15 * 60_000, H, 3 * H]),
    st.integers(-H, 5 * H),
    st.integers(-H, 5 * H),
)
def test_buckets_account_for_every_millisecond_between_origin_and_now(
    changes: list[tuple[int, str]], step: int, now_offset: int, origin_offset: int
) -> None:
    line = sorted((T0 + t, s) for t, s in changes)
    now, origin = T0 + now_offset, T0 + origin_offset
    end = T0 + 4 * H
    buckets = occupancy_buckets({"b": line}, T0, end, step, now=now, origins={"b": origin})
    counted = max(0, min(end, now) - max(T0, origin))
    assert sum(b.occupied_ms + b.vacant_ms + b.unknown_ms for b in buckets) == counted
    assert all(b.start < now for b in buckets)
    assert [b.partial for b in buckets] == [b.end > now for b in buckets]
    assert sum(b.partial for b in buckets) <= 1
    for b in buckets:
        assert b.rate is None or 0.0 <= b.rate <= 1.0
        assert b.occupied_ms + b.vacant_ms + b.unknown_ms <= b.end - b.start


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
    now = T0 + 2 * H + 30 * 60_000  # the collector's clock: 02:30, after the range
    api.call(lambda: svc.clock.at_least(now))
    with api.client("analyst") as c:
        r = c.get("/api/v1/occupancy", params=params)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["zone_id"] == "CA-F"
        assert body["as_of"] == "2026-11-26T02:30:00.000Z"
        first, second = body["buckets"]
        assert first["start"] == "2026-11-26T00:00:00.000Z"
        assert first["rate"] == pytest.approx((0.75 + 1) / 3, abs=1e-6)
        assert second["rate"] == pytest.approx(2 / 3, abs=1e-6)
        assert first["bays"] == 3
        assert (first["partial"], second["partial"]) == (False, False)
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


def test_occupancy_route_counts_nothing_after_the_collectors_now(api: ApiServer) -> None:
    """At 06:21 a 15-minute query to 07:00: two buckets, the second partial, nothing after."""
    # CA-F-B00002 joined the site at 06:10 (a site reload); the zone's third bay (B00004) was
    # there all along.
    api = api.fresh(site=site_data(without=("CA-F-B00002",)))
    svc = api.service
    api.call(lambda: svc.set_state("CA-F-B00000", "occupied", T0 + 5 * H))
    api.call(lambda: svc.clock.at_least(T0 + 6 * H + 10 * 60_000))
    api.call(lambda: svc.reload(site_data()))
    api.call(lambda: svc.clock.at_least(T0 + 6 * H + 21 * 60_000))
    params = {
        "zone": "CA-F",
        "start": "2026-11-26T06:00:00Z",
        "end": "2026-11-26T07:00:00Z",
        "interval": "15m",
    }
    with api.client("analyst") as c:
        r = c.get("/api/v1/occupancy", params=params)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["as_of"] == "2026-11-26T06:21:00.000Z"
    assert [(b["start"][11:16], b["end"][11:16], b["partial"]) for b in body["buckets"]] == [
        ("06:00", "06:15", False),
        ("06:15", "06:30", True),
    ]
    first, second = body["buckets"]
    assert (first["bays"], second["bays"]) == (3, 3)
    assert first["occupied_s"] == 15 * 60
    assert first["unknown_s"] == 15 * 60 + 5 * 60  # B00004 all along, B00002 from 06:10
    assert second["occupied_s"] == 6 * 60  # up to 06:21 only
    assert second["unknown_s"] == 2 * 6 * 60
    assert second["rate"] == 1.0
