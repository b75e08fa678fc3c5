"""Confirmation on the base sensor protocol: what a frame proves, and what it does not.

A sensor promises a frame on a DETECT change or a move of more than 20 mG, and a keep-alive at
least once a minute; nothing more. So consecutive seq numbers prove that a reading stood until the
next frame. These tests send only that (no repeated readings, unless a test says so), and check
that a change is confirmed once it held, that no stay proven that way is lost, and that a passing
car (35-90 mG for 1-4 s) never becomes a session, whichever of its frames are lost.
"""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from kerbside.edge.config import DetectorConfig
from kerbside.edge.detector import BayView, CandidatePhase, Detector, FirstLevel
from kerbside.edge.model import FLAG_BOOT, OccupancyChange
from tests.edge.test_detector import (
    BASE,
    CAR,
    S,
    Sensor,
    add,
    hold,
    new,
    ramp,
    settle_vacant,
    summary,
)

SMALL = add((0.0, 0.0, 0.0), CAR, 0.4)  # 72 mG in one step: what a passing car can also do
WEAK = (40.0, -30.0, 20.0)  # a weak car, ~54 mG


def test_a_small_single_step_waits_for_the_next_frame_which_proves_it() -> None:
    detector, sensor = new()
    settle_vacant(sensor)  # keep-alives at 0, 60, 120
    out = sensor.send(300, add(BASE, SMALL))
    out += detector.tick(340 * S)
    assert out == []  # a passing car whose end frame was lost looks the same
    assert detector.bay("S-1").candidate is CandidatePhase.WAITING
    out += sensor.send(360, add(BASE, SMALL))  # the keep-alive: its seq follows
    assert summary(out) == [("occupied", 300, 360, None)]


@pytest.mark.parametrize("stay_s", [10, 12, 20, 35, 59])
def test_a_stay_shorter_than_a_keepalive_is_never_lost(stay_s: int) -> None:
    """A frame when the car comes, one when it goes, nothing between: the departure frame's
    seq follows the arrival's, so the car stood there all the while."""
    detector, sensor = new()
    settle_vacant(sensor)
    gone = 300 + stay_s
    out = sensor.send(300, add(BASE, SMALL))
    out += sensor.send(gone, BASE)
    out += hold(sensor, gone + 50, 600, BASE)
    out += detector.tick(600 * S)
    assert summary(out) == [("occupied", 300, gone, None), ("vacant", gone, gone + 10, None)]


def test_a_stay_shorter_than_the_confirmation_time_is_a_blip() -> None:
    _, sensor = new()
    settle_vacant(sensor)
    out = sensor.send(300, add(BASE, SMALL))
    out += sensor.send(309, BASE)
    out += hold(sensor, 360, 600, BASE)
    assert out == []


def test_a_stay_is_proven_across_the_seq_wrap() -> None:
    detector, sensor = new()
    sensor.seq = 65530
    settle_vacant(sensor)  # 65531..65533
    sensor.seq = 65534
    out = sensor.send(300, add(BASE, SMALL))  # seq 65535
    out += sensor.send(330, BASE)  # seq 0: it follows
    out += detector.tick(400 * S)
    assert summary(out) == [("occupied", 300, 330, None), ("vacant", 330, 340, None)]


def test_after_lost_frames_a_small_step_is_confirmed_only_if_still_there() -> None:
    _, sensor = new()
    settle_vacant(sensor)
    out = sensor.send(300, add(BASE, SMALL))
    sensor.seq += 1  # lost: perhaps the car's going
    out += sensor.send(330, BASE)
    out += hold(sensor, 390, 600, BASE)
    assert out == []
    _, sensor = new()
    settle_vacant(sensor)
    out = sensor.send(300, add(BASE, SMALL))
    sensor.seq += 1  # lost, but the car is still there at the next frame
    out += sensor.send(360, add(BASE, SMALL))
    assert summary(out) == [("occupied", 300, 360, None)]


def test_a_reboot_proves_nothing() -> None:
    _, sensor = new()
    settle_vacant(sensor)
    out = sensor.send(300, add(BASE, SMALL))
    out += sensor.send(330, BASE, flags=FLAG_BOOT, seq=0)  # down meanwhile: no proof
    out += hold(sensor, 390, 600, BASE)
    assert out == []


def test_repeated_readings_confirm_a_small_step_at_its_deadline() -> None:
    """Firmware that repeats a changed reading 1, 2, 4 and 8 s later: the repeats show it
    lasted longer than a passing car."""
    detector, sensor = new()
    settle_vacant(sensor)
    out: list[OccupancyChange] = []
    for t in (300, 301, 302, 304, 308):
        out += sensor.send(t, add(BASE, SMALL))
    out += detector.tick(400 * S)
    assert summary(out) == [("occupied", 300, 310, None)]


def test_a_car_pulling_in_over_several_frames_is_confirmed_at_its_deadline() -> None:
    detector, sensor = new()
    settle_vacant(sensor)
    out = ramp(sensor, 300, BASE, add(BASE, WEAK), steps=2)  # 27 mG, then 54 mG
    out += detector.tick(400 * S)
    assert summary(out) == [("occupied", 300, 310, None)]


def test_a_departure_landing_on_the_vacant_level_is_confirmed_at_its_deadline() -> None:
    detector, sensor = new()
    settle_vacant(sensor)
    ramp(sensor, 200, BASE, add(BASE, WEAK), steps=2)
    hold(sensor, 261, 1000, add(BASE, WEAK))
    out = sensor.send(1000, BASE)  # one step, no bigger than a passing car, back home
    out += detector.tick(1100 * S)
    assert summary(out) == [("vacant", 1000, 1010, None)]


def test_a_weak_car_leaving_short_of_its_whole_signature_is_a_departure() -> None:
    """The sensor reports a move only past 20 mG: its last frame may stop that short of the
    vacant level, and a weak car's whole signature is hardly more than the threshold."""
    _, sensor = new()
    settle_vacant(sensor)
    ramp(sensor, 200, BASE, add(BASE, WEAK), steps=2)
    hold(sensor, 261, 1000, add(BASE, WEAK))
    out = sensor.send(1000, add(BASE, WEAK, 0.3))  # 16 mG off the vacant level, 38 mG moved
    out += hold(sensor, 1060, 1200, add(BASE, WEAK, 0.3))
    assert summary(out) == [("vacant", 1000, 1010, None)]


def test_a_departure_whose_last_frame_was_lost_ends_where_it_was_heading() -> None:
    """The frame that finished the car's pulling out was lost: the vacant level was set from
    readings on the way. The next frame, at the level the departure was heading for, settles
    it; it is no new car."""
    detector, sensor = new()
    settle_vacant(sensor)
    parked = add(BASE, CAR)
    ramp(sensor, 200, BASE, parked)
    hold(sensor, 262, 1000, parked)
    out = sensor.send(1000, add(BASE, CAR, 0.7))
    out += sensor.send(1001, add(BASE, CAR, 0.4))  # its frame at 1002 (BASE) is lost:
    sensor.seq += 1
    out += hold(sensor, 1061, 1400, BASE)
    out += detector.tick(1400 * S)
    assert summary(out) == [("vacant", 1000, 1010, None)]
    assert detector.bay("S-1").baseline == pytest.approx(BASE, abs=1)


def test_a_car_parked_over_a_held_first_level_leaving_is_not_a_new_car() -> None:
    """While the first level is held, a departure whose last frames were lost reads between the
    two levels: a car leaving, not a third level (which would say the belief was upside down)."""
    sensor = Sensor(Detector(DetectorConfig(), {"S-1": "BAY-1"}))
    sensor.send(0, BASE, flags=1)
    hold(sensor, 60, 600, BASE, flags=1)  # held: DETECT on, not trusted
    parked = add(BASE, CAR)
    ramp(sensor, 600, BASE, parked, flags=1)
    hold(sensor, 662, 1800, parked, flags=1)
    out = sensor.send(1800, add(BASE, CAR, 0.7), flags=1)
    out += sensor.send(1801, add(BASE, CAR, 0.4), flags=1)
    sensor.seq += 1  # the frame at the vacant level is lost
    out += hold(sensor, 1861, 2200, BASE, flags=1)
    assert [(state, ts) for state, ts, _, _ in summary(out)] == [
        ("vacant", 0),  # back to the first level: it was the empty bay
        ("occupied", 600),
        ("vacant", 1800),
    ]


def test_the_bay_view_shows_the_phases() -> None:
    detector, sensor = new()
    assert detector.bay("S-1") == BayView(
        "S-1", "BAY-1", "unknown", None, "unknown", FirstLevel.UNKNOWN, *[None] * 6
    )
    settle_vacant(sensor)
    sensor.send(300, add(BASE, SMALL))
    view = detector.bay("S-1")
    assert (view.published, view.belief, view.first_level) == (
        "vacant",
        "vacant",
        FirstLevel.BELIEVED,
    )
    assert (view.candidate, view.candidate_state, view.candidate_since) == (
        CandidatePhase.PENDING,
        "occupied",
        300 * S,
    )
    assert view.baseline == pytest.approx(BASE)
    sensor.send(303, BASE)  # back after 3 s: a passing car, perhaps, and the change waits
    assert detector.bay("S-1").candidate is CandidatePhase.SUSPENDED
    assert [v.bay_id for v in detector.bays()] == ["BAY-1", "BAY-2"]
    with pytest.raises(KeyError):
        detector.bay("S-9")


# ---- properties: a sensor that sends only what the protocol promises ---------------------------

MOVE_MG = 20.0


class BasicSensor:
    """Firmware that samples once a second and sends a frame on a move of more than 20 mG since
    its last frame, or a keep-alive after ``keepalive_s``; nothing else. ``lose``: the line loses
    the frames sent at these seconds (their seq is used up)."""

    def __init__(self, sensor: Sensor, keepalive_s: int, lose: set[int] | None = None) -> None:
        self.sensor = sensor
        self.keepalive_s = keepalive_s
        self.lose = lose or set()
        self.last: tuple[float, ...] | None = None
        self.last_t = -(10**9)

    def sample(self, t: int, field: tuple[float, ...]) -> list[OccupancyChange]:
        moved = self.last is None or math.dist(field, self.last) > MOVE_MG
        if not moved and t - self.last_t < self.keepalive_s:
            return []
        self.last, self.last_t = field, t
        if t in self.lose:
            self.sensor.seq += 1
            return []
        return self.sensor.send(t, field)


def direction(rng: random.Random) -> tuple[float, float, float]:
    x, y, z = (rng.gauss(0, 1) for _ in range(3))
    n = math.sqrt(x * x + y * y + z * z) or 1.0
    return (x / n, y / n, z / n)


stays = st.lists(
    st.tuples(
        st.integers(15, 400),  # gap before the car, s (longer than the confirmation time)
        st.integers(12, 400),  # its stay, s (longer than the confirmation time)
        st.floats(65, 320),  # its signature, mG
        st.integers(0, 5),  # seconds it takes to pull in, and out
    ),
    min_size=1,
    max_size=6,
)


@settings(max_examples=60, deadline=None)
# Weak cars, whose last step in or out stops short of the level by less than a sensor's step:
# a departure whose next frame is a keep-alive on the empty level (dated from its first reading)
@example([(15, 23, 65.0, 4), (15, 12, 65.0, 3)], 21, 1)
# and the next car pulling in before that keep-alive (a whole signature from the empty level)
@example([(86, 12, 65.0, 0), (15, 23, 65.0, 4), (15, 12, 65.0, 3)], 21, 1)
# and a next car half-way in, nearer a stopped-short level's target than that level is
@example([(15, 23, 84.0, 4), (15, 12, 65.0, 0), (15, 12, 65.0, 1)], 21, 27345)
@given(stays, st.integers(20, 60), st.integers(0, 2**32 - 1))
def test_no_stay_is_lost_and_each_is_dated_within_seconds(
    visits: list[tuple[int, int, float, int]], keepalive_s: int, seed: int
) -> None:
    """Stays of any length past the confirmation time, each car pulling in and out in 0-5 s,
    keep-alives every 20-60 s, no frame lost: every stay is published once, dated within the
    time the car took to pull in or out, and confirmed by the frame after its deadline at the
    latest."""
    rng = random.Random(seed)
    detector, raw = new()
    sensor = BasicSensor(raw, keepalive_s)
    plan: list[tuple[int, int, tuple[float, float, float], int]] = []
    t = 60
    for gap, stay, size, ramp_s in visits:
        arrive = t + gap
        plan.append((arrive, arrive + stay, add((0, 0, 0), direction(rng), size), ramp_s))
        t = arrive + stay + ramp_s
    end = t + 300

    def field_at(now: int) -> tuple[float, ...]:
        for arrive, leave, signature, ramp_s in plan:
            if arrive <= now < leave + ramp_s:
                k = min(1.0, (now - arrive + 1) / (ramp_s + 1))
                if now >= leave:
                    k = min(k, 1.0 - (now - leave + 1) / (ramp_s + 1))
                return add(BASE, signature, k)
        return BASE

    out: list[OccupancyChange] = []
    for now in range(end):
        out += sensor.sample(now, field_at(now))
    out += detector.tick(end * S)
    changes = [c for c in out if c.confirmed_ts > 20 * S]  # after the first level
    assert [c.state for c in changes] == ["occupied", "vacant"] * len(plan)
    for (arrive, leave, _, ramp_s), (came, went) in zip(
        plan, zip(changes[::2], changes[1::2], strict=True), strict=True
    ):
        assert arrive * S <= came.ts <= (arrive + ramp_s + 1) * S
        assert leave * S <= went.ts <= (leave + ramp_s + 1) * S
        for change in (came, went):
            assert change.confirmed_ts - change.ts <= (keepalive_s + 12) * S


passing = st.lists(
    st.tuples(
        st.integers(20, 300),  # quiet time before it, s
        st.floats(35, 90),  # its field, mG
        st.integers(1, 4),  # how long it lasts, s
    ),
    min_size=1,
    max_size=8,
)


@settings(max_examples=60, deadline=None)
@given(passing, st.booleans(), st.integers(20, 60), st.integers(0, 2**32 - 1))
def test_passing_cars_never_become_sessions(
    cars: list[tuple[int, float, int]], parked: bool, keepalive_s: int, seed: int
) -> None:
    """Passing cars over an empty bay or a parked car, with or without the frame that ended
    them (a lost frame), whenever the keep-alives fall: never a change."""
    rng = random.Random(seed)
    detector, raw = new()
    parked_from = 100 if parked else 10**9  # a car pulls in over 3 s, and stays
    blips: list[tuple[int, int, tuple[float, float, float]]] = []
    t = 200
    for quiet, size, length in cars:
        start = t + quiet
        blips.append((start, start + length, add((0, 0, 0), direction(rng), size)))
        t = start + length
    end = t + 200
    lose = {blips[0][1]} if rng.random() < 0.5 else set()  # maybe the frame ending the first
    sensor = BasicSensor(raw, keepalive_s, lose)
    out: list[OccupancyChange] = []
    for now in range(end):
        field = add(BASE, CAR, min(1.0, max(0.0, (now - parked_from + 1) / 3)))
        for start, stop, blip in blips:
            if start <= now < stop:
                field = add(field, blip)
        out += sensor.sample(now, field)
    out += detector.tick(end * S)
    assert [c.state for c in out] == (["vacant", "occupied"] if parked else ["vacant"])
