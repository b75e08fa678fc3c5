"""Controlled hours on the local wall clock: daylight saving, midnight, merging, holidays,
overrides, and the grace/observation inheritance, through the schedule and through alerts."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import partial
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kerbside.collector.rules import NEG_INF, POS_INF, Schedule, ScheduleBook
from kerbside.core.site import Hours, parse_site
from tests.collector.rules_builders import Journal, at, make_site, replay
from tests.helpers import present

SUN_ALL_DAY = [{"days": ["sun"], "start": "00:00", "end": "24:00"}]
SUN_NIGHT = [{"days": ["sun"], "start": "00:30", "end": "02:30"}]
SUN_ONE_AM = [{"days": ["sun"], "start": "01:00", "end": "01:30"}]


def schedule(
    hours: Any, holidays: list[str] | None = None, except_holidays: bool = False
) -> Schedule:
    site = make_site(hours, holidays=holidays, zone_extra={"except_holidays": except_holidays})
    bay = site.bays["B1"]
    return ScheduleBook(site.timezone, site.holidays).get(bay.controlled_hours, bay.except_holidays)


# (name, hours, instant inside, expected period as UTC strings)
PERIODS = [
    (
        "GMT winter day",
        None,
        "2026-11-26 12:00",
        ("2026-11-26 08:30", "2026-11-26 18:30"),
    ),
    (
        "BST summer day is an hour earlier in UTC",
        None,
        "2027-06-02 12:00",
        ("2027-06-02 07:30", "2027-06-02 17:30"),
    ),
    (
        "spring-forward Sunday: the day is 23 hours long",
        SUN_ALL_DAY,
        "2027-03-28 12:00",
        ("2027-03-28 00:00", "2027-03-28 23:00"),
    ),
    (
        "autumn Sunday: the day is 25 hours long",
        SUN_ALL_DAY,
        "2026-10-25 12:00",
        ("2026-10-24 23:00", "2026-10-26 00:00"),
    ),
    (
        "spring-forward night: the missing hour is skipped (one hour of control)",
        SUN_NIGHT,
        "2027-03-28 00:45",
        ("2027-03-28 00:30", "2027-03-28 01:30"),
    ),
    (
        "autumn night: the repeated hour counts twice (three hours of control)",
        SUN_NIGHT,
        "2026-10-25 01:00",
        ("2026-10-24 23:30", "2026-10-25 02:30"),
    ),
    (
        "autumn 01:00-01:30, first time round (BST)",
        SUN_ONE_AM,
        "2026-10-25 00:10",
        ("2026-10-25 00:00", "2026-10-25 00:30"),
    ),
    (
        "autumn 01:00-01:30, second time round (GMT)",
        SUN_ONE_AM,
        "2026-10-25 01:10",
        ("2026-10-25 01:00", "2026-10-25 01:30"),
    ),
    (
        "crossing midnight belongs to the day it starts (Friday night into Saturday)",
        [{"days": ["fri"], "start": "20:00", "end": "02:00"}],
        "2026-11-28 01:00",
        ("2026-11-27 20:00", "2026-11-28 02:00"),
    ),
    (
        "adjacent ranges merge into one period",
        [
            {"days": ["thu"], "start": "08:00", "end": "12:00"},
            {"days": ["thu"], "start": "12:00", "end": "18:00"},
        ],
        "2026-11-26 09:00",
        ("2026-11-26 08:00", "2026-11-26 18:00"),
    ),
    (
        "ranges merge across midnight (to 24:00, then from 00:00)",
        [
            {"days": ["thu"], "start": "20:00", "end": "24:00"},
            {"days": ["fri"], "start": "00:00", "end": "06:00"},
        ],
        "2026-11-26 21:00",
        ("2026-11-26 20:00", "2026-11-27 06:00"),
    ),
    (
        "overlapping ranges merge",
        [
            {"days": ["thu"], "start": "08:00", "end": "12:00"},
            {"days": ["thu"], "start": "10:00", "end": "14:00"},
        ],
        "2026-11-26 13:00",
        ("2026-11-26 08:00", "2026-11-26 14:00"),
    ),
]


@pytest.mark.parametrize(
    ("hours", "inside", "expected"), [pytest.param(*p[1:], id=p[0]) for p in PERIODS]
)
def test_period_on_the_local_wall_clock(hours: Any, inside: str, expected: tuple[str, str]) -> None:
    sched = schedule(hours)
    assert sched.period_at(at(inside)) == (at(expected[0]), at(expected[1]))
    start, end = at(expected[0]), at(expected[1])
    assert sched.controlled(start)
    assert sched.controlled(end - 1)
    assert not sched.controlled(start - 1)
    assert not sched.controlled(end)


def test_spring_forward_ranges_inside_or_across_the_missing_hour() -> None:
    gap_only = schedule([{"days": ["sun"], "start": "01:15", "end": "01:45"}])
    assert not gap_only.controlled(at("2027-03-28 01:00"))  # 02:00 BST: after the range
    assert not gap_only.controlled(at("2027-03-28 00:59:59.999"))  # 00:59 GMT: before it
    assert gap_only.next_start(at("2027-03-28 00:00")) == at("2027-04-04 00:15")  # next Sunday
    starts_in_gap = schedule([{"days": ["sun"], "start": "01:30", "end": "03:00"}])
    assert starts_in_gap.period_at(at("2027-03-28 01:30")) == (
        at("2027-03-28 01:00"),
        at("2027-03-28 02:00"),
    )


def test_crossing_midnight_does_not_start_on_a_day_not_listed() -> None:
    sched = schedule([{"days": ["fri"], "start": "20:00", "end": "02:00"}])
    # Thursday night into Friday is not controlled: the range belongs to Friday evening.
    assert not sched.controlled(at("2026-11-27 01:00"))
    assert sched.next_start(at("2026-11-27 01:00")) == at("2026-11-27 20:00")


def test_any_and_none() -> None:
    assert schedule("any").period_at(at("2026-11-26 03:00")) == (NEG_INF, POS_INF)
    assert schedule("none").period_at(at("2026-11-26 12:00")) is None
    assert schedule("none").next_start(at("2026-11-26 12:00")) is None


def test_holidays_only_with_except_holidays() -> None:
    holiday = ["2027-04-02"]  # Good Friday
    assert schedule(None, holiday, except_holidays=False).controlled(at("2027-04-02 10:00"))
    sched = schedule(None, holiday, except_holidays=True)
    assert not sched.controlled(at("2027-04-02 10:00"))
    assert sched.next_start(at("2027-04-02 10:00")) == at("2027-04-03 07:30")  # BST Saturday
    # `any` minus a holiday: the period ends at the holiday's local midnight.
    any_sched = schedule("any", holiday, except_holidays=True)
    assert present(any_sched.period_at(at("2027-04-01 12:00")))[1] == at("2027-04-01 23:00")
    assert any_sched.next_start(at("2027-04-02 12:00")) == at("2027-04-02 23:00")


ALERT_ROWS: list[tuple[str, dict[str, Any], Any, list[tuple[Any, ...]]]] = [
    (
        "spring-forward Sunday: 23 h period, overstay due at its end is not raised",
        {"hours": SUN_ALL_DAY, "kind": "limited", "max_stay": 1370, "bay_extra": {}},
        lambda j: j.park("2027-03-27 20:00", "2027-03-29 01:00"),
        [],
    ),
    (
        "spring-forward Sunday: 1 minute less stay is raised and cleared at local midnight",
        {"hours": SUN_ALL_DAY, "kind": "limited", "max_stay": 1369},
        lambda j: j.park("2027-03-27 20:00", "2027-03-29 01:00"),
        [("overstay", "B1", "28T22:59", "cleared", "28T23:00", "restriction_ended")],
    ),
    (
        "autumn Sunday: 25 h period allows a 24 h 50 min stay before the alert",
        {"hours": SUN_ALL_DAY, "kind": "limited", "max_stay": 1480},
        lambda j: j.park("2026-10-24 20:00", "2026-10-26 02:00"),
        [("overstay", "B1", "25T23:50", "cleared", "26T00:00", "restriction_ended")],
    ),
    (
        "autumn repeated hour: two periods, two unpaid alerts in one session",
        {"hours": SUN_ONE_AM, "max_stay": None},
        lambda j: j.park("2026-10-24 23:00", "2026-10-25 03:00"),
        [
            ("unpaid", "B1", "25T00:05", "cleared", "25T00:30", "restriction_ended"),
            ("unpaid", "B1", "25T01:05", "cleared", "25T01:30", "restriction_ended"),
        ],
    ),
    (
        "spring night: skipped hour, unpaid observed from 00:30 local",
        {"hours": SUN_NIGHT, "max_stay": None},
        lambda j: j.park("2027-03-28 00:00", "2027-03-28 03:00"),
        [("unpaid", "B1", "28T00:35", "cleared", "28T01:30", "restriction_ended")],
    ),
    (
        "summer time weekday: 08:30 local is 07:30 UTC",
        {"max_stay": None},
        lambda j: j.park("2027-06-02 07:00", "2027-06-02 08:00"),
        [("unpaid", "B1", "02T07:35", "cleared", "02T08:00", "vehicle_left")],
    ),
    (
        "holiday with except_holidays: no alert all day",
        {"holidays": ["2027-04-02"], "zone_extra": {"except_holidays": True}},
        lambda j: j.park("2027-04-02 08:00", "2027-04-02 18:00"),
        [],
    ),
    (
        "holiday without except_holidays: controlled as usual",
        {"holidays": ["2027-04-02"], "max_stay": None},
        lambda j: j.park("2027-04-02 08:00", "2027-04-02 09:00"),
        [("unpaid", "B1", "02T08:05", "cleared", "02T09:00", "vehicle_left")],  # BST: 09:00 local
    ),
    (
        "bay override `none`: never controlled",
        {"bay_extra": {"controlled_hours": "none"}},
        lambda j: j.park("2026-11-26 09:00", "2026-11-26 20:00"),
        [],
    ),
    (
        "bay override `any`: controlled at night too",
        {"bay_extra": {"controlled_hours": "any"}, "max_stay": None},
        lambda j: j.park("2026-11-26 02:00", "2026-11-26 03:00"),
        [("unpaid", "B1", "26T02:05", "cleared", "26T03:00", "vehicle_left")],
    ),
    (
        "grace and observation: bay over zone over defaults",
        {
            "kind": "paid",
            "max_stay": 60,
            "defaults": {"grace_minutes": 1, "observation_minutes": 1},
            "zone_extra": {"grace_minutes": 20},
            "bay_extra": {"observation_minutes": 2},
        },
        lambda j: j.park("2026-11-26 09:00", "2026-11-26 11:00"),
        [
            ("unpaid", "B1", "26T09:02", "cleared", "26T11:00", "vehicle_left"),
            ("overstay", "B1", "26T10:20", "cleared", "26T11:00", "vehicle_left"),
        ],
    ),
    (
        "grace and observation: defaults when neither bay nor zone say",
        {"max_stay": 60, "defaults": {"grace_minutes": 3, "observation_minutes": 7}},
        lambda j: j.park("2026-11-26 09:00", "2026-11-26 11:00"),
        [
            ("unpaid", "B1", "26T09:07", "cleared", "26T11:00", "vehicle_left"),
            ("overstay", "B1", "26T10:03", "cleared", "26T11:00", "vehicle_left"),
        ],
    ),
]


@pytest.mark.parametrize(
    ("site_kwargs", "build", "expected"), [pytest.param(*r[1:], id=r[0]) for r in ALERT_ROWS]
)
def test_alerts_on_the_local_clock(site_kwargs: dict[str, Any], build: Any, expected: Any) -> None:
    assert replay(make_site(**site_kwargs), build(Journal())) == expected


def test_built_in_grace_and_observation_are_10_and_5() -> None:
    site = parse_site(
        {
            "site": "s",
            "timezone": "UTC",
            "zones": [{"id": "Z", "controlled_hours": "any"}],
            "bays": [{"id": "B", "zone": "Z", "kind": "paid"}],
        }
    )
    assert (site.bays["B"].grace_minutes, site.bays["B"].observation_minutes) == (10, 5)


def test_hours_types() -> None:
    hours: Hours = make_site().bays["B1"].controlled_hours
    assert isinstance(hours, tuple)
    assert hours[0].start_min == 8 * 60 + 30


# ---- a property: the schedule agrees with the wall clock, to the millisecond -----------------
HOURS_CHOICES: list[Any] = [
    None,
    "any",
    [{"days": ["fri", "sat"], "start": "20:00", "end": "02:00"}],
    [
        {"days": ["sun", "mon"], "start": "00:00", "end": "01:30"},
        {"days": ["sun"], "start": "01:30", "end": "03:00"},
        {"days": ["sat"], "start": "23:00", "end": "24:00"},
    ],
]
# Whole-hour, half-hour (Lord Howe) and midnight (Santiago, Havana) transitions, and none.
ZONES = [
    "Europe/London",
    "America/New_York",
    "Australia/Lord_Howe",
    "America/Santiago",
    "America/Havana",
    "Asia/Kolkata",
]


def naive_controlled(site_hours: Any, tz: Any, holidays: frozenset[Any], t: int) -> bool:
    local = datetime.fromtimestamp(t / 1000, UTC).astimezone(tz)
    if local.date() in holidays:
        return False
    if site_hours in ("any", "none"):
        return bool(site_hours == "any")
    minute = local.hour * 60 + local.minute
    today, yesterday = local.weekday(), (local.weekday() - 1) % 7
    for rng in site_hours:
        if rng.end_min > rng.start_min:
            if today in rng.days and rng.start_min <= minute < rng.end_min:
                return True
        elif (today in rng.days and minute >= rng.start_min) or (
            yesterday in rng.days and minute < rng.end_min
        ):
            return True
    return False


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from(HOURS_CHOICES),
    st.sampled_from(ZONES),
    st.booleans(),
    st.integers(at("2026-01-01 00:00"), at("2028-12-31 00:00")),
)
def test_schedule_agrees_with_the_local_wall_clock(
    hours: Any, timezone: str, holidays: bool, t: int
) -> None:
    days = ["2026-10-25", "2027-03-28", "2027-04-04", "2027-09-05"] if holidays else []
    site = make_site(hours, timezone=timezone, holidays=days, zone_extra={"except_holidays": True})
    bay = site.bays["B1"]
    sched = ScheduleBook(site.timezone, site.holidays).get(bay.controlled_hours, True)
    check = partial(naive_controlled, bay.controlled_hours, site.tz, site.holidays)
    start, end, controlled = sched.segment_at(t)
    assert controlled == check(t)
    assert start <= t < end
    if start > NEG_INF:
        assert check(start) == controlled
        assert check(start - 1) != controlled
    if end < POS_INF:
        assert check(end - 1) == controlled
        assert check(end) != controlled
