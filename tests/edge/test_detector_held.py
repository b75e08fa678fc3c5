"""Held first levels (DETECT on, not trusted: drift may have moved the empty field past the
threshold): what a held bay can and cannot be told, and how it goes through a silence or a fault.

A car parked throughout, or one step between two levels with DETECT on at both, is the same field
whichever way round it is (a car leaving, or one arriving over an empty bay): such a bay stays
held, nothing published. A silence or a fault publishes ``unknown`` at once; what was held before
it is dropped, but the levels stay, and a sensor back on the level it held goes on from them.
"""

from __future__ import annotations

import math

from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from kerbside.edge.config import DetectorConfig
from kerbside.edge.detector import Detector, FirstLevel, Tuning
from kerbside.edge.model import FLAG_DETECT, FLAG_FAULT, OccupancyChange
from tests.edge.test_detector import BASE, CAR, S, Sensor, add, hold, ramp, summary

D = FLAG_DETECT
SECOND = (60.0, 150.0, -120.0)  # another car, far from the first one's level and the bay's


def drifting() -> tuple[Detector, Sensor]:
    """A sensor on a street where DETECT is never trusted (on over empty bays too)."""
    detector = Detector(DetectorConfig(), {"S-1": "BAY-1"}, Tuning(trust_steps=10**9))
    return detector, Sensor(detector)


def parked_then_gone(sensor: Sensor) -> list[OccupancyChange]:
    """A car parked from before the start leaves at 1000 s; DETECT stays on (drift)."""
    parked = add(BASE, CAR)
    out = sensor.send(0, parked, D)
    out += hold(sensor, 60, 1000, parked, D)
    out += ramp(sensor, 1000, parked, BASE, flags=D)
    out += hold(sensor, 1062, 1200, BASE, D)
    return out


def test_one_step_with_detect_on_at_both_levels_is_never_guessed() -> None:
    """A car leaving, or one arriving over a drifted empty bay: the same frames either way."""
    detector, sensor = drifting()
    out = parked_then_gone(sensor)
    out += hold(sensor, 1200, 4000, BASE, D)
    out += detector.tick(4000 * S)
    assert out == []
    view = detector.bay("S-1")
    assert (view.published, view.first_level) == ("unknown", FirstLevel.HELD)


def test_a_held_bay_back_from_a_fault_on_its_level_goes_on_from_its_levels() -> None:
    detector, sensor = drifting()
    out = parked_then_gone(sensor)
    assert out == []
    out = sensor.send(1200, BASE, D | FLAG_FAULT)
    assert summary(out) == [("unknown", 1200, 1200, "sensor_fault")]
    # What was held before the fault is dropped: unknown is published, and nothing older than
    # it can follow. Back on the level it held, the sensor goes on from its levels, so the next
    # car (far from both) shows the level before it is the empty bay.
    out = hold(sensor, 1210, 2000, BASE, D)
    out += ramp(sensor, 2000, BASE, add(BASE, SECOND), flags=D)
    out += hold(sensor, 2062, 2300, add(BASE, SECOND), D)
    assert [(state, ts) for state, ts, _, _ in summary(out)] == [
        ("vacant", 1210),
        ("occupied", 2000),
    ]
    assert detector.bay("S-1").first_level is FirstLevel.BELIEVED


def test_a_held_bay_back_from_a_silence_elsewhere_is_judged_afresh() -> None:
    detector, sensor = drifting()
    out = parked_then_gone(sensor)
    out += detector.tick(2200 * S)  # silent since its keep-alive at 1182
    assert summary(out) == [("unknown", 1182, 2082, "sensor_silent")]
    # Back far from both levels it had, DETECT off: a first level, the empty bay.
    elsewhere = add(BASE, SECOND, -0.5)
    out = hold(sensor, 2400, 2700, elsewhere)
    assert summary(out) == [("vacant", 2400, 2410, None)]
    assert detector.bay("S-1").baseline == elsewhere


def test_back_on_its_level_with_detect_off_is_the_empty_bay_as_a_first_level_would_be() -> None:
    """The held belief took the level after the step for a car; DETECT off there now says it is
    the empty bay (as it says of any first level): the belief was upside down."""
    detector, sensor = drifting()
    parked_then_gone(sensor)
    sensor.send(1200, BASE, D | FLAG_FAULT)
    out = hold(sensor, 1210, 1500, BASE)
    assert summary(out) == [("vacant", 1210, 1220, None)]
    view = detector.bay("S-1")
    assert (view.belief, view.first_level, view.baseline) == ("vacant", FirstLevel.BELIEVED, BASE)
    out = ramp(sensor, 1500, BASE, add(BASE, SECOND), flags=D)
    out += hold(sensor, 1562, 1800, add(BASE, SECOND), D)
    assert summary(out) == [("occupied", 1500, 1510, None)]


def _vector(azimuth: float, elevation: float, size: float) -> tuple[float, float, float]:
    return (
        size * math.cos(elevation) * math.cos(azimuth),
        size * math.cos(elevation) * math.sin(azimuth),
        size * math.sin(elevation),
    )


cars = st.tuples(st.floats(0, 2 * math.pi), st.floats(-1.4, 1.4), st.floats(80, 320)).map(
    lambda c: _vector(*c)
)


@settings(max_examples=60, deadline=None)
@example(  # the next car stood on the way between the held levels, on a drifted empty bay
    parked_at_start=True,
    first=(-22.60692517728532, -189.65739356542002, 0.0),
    second=(-61.515037440658254, -92.39534711593659, 0.0),
    durations=[300, 300, 300, 300],
    fault_in=None,
)
@given(
    parked_at_start=st.booleans(),
    first=cars,
    second=cars,
    durations=st.lists(st.integers(300, 1500), min_size=4, max_size=4),
    fault_in=st.sampled_from([None, 1, 2]),
)
def test_a_held_bay_is_published_late_but_never_upside_down(
    parked_at_start: bool,
    first: tuple[float, float, float],
    second: tuple[float, float, float],
    durations: list[int],
    fault_in: int | None,
) -> None:
    """DETECT on throughout (never trusted). Either a car parked from the start leaves and,
    later, another comes; or the bay is empty, a car comes and goes. The other car may stand
    anywhere, on the way between the first two levels too. A fault may come between
    steps (the sensor back on the same level). Whatever the detector publishes agrees with the
    truth at its ts, and a bay's ts never go back (the collector drops an event older than the
    bay's latest)."""
    e = BASE
    a, b = add(e, first), add(e, second)
    assume(math.dist(a, b) > 100)  # two cars, told apart (even on the way between the levels)
    story = [a, e, b, e] if parked_at_start else [e, a, e, a]
    cars_at = [level != e for level in story]
    detector, sensor = drifting()
    out: list[OccupancyChange] = []
    t = 0.0
    starts = []
    for i, (level, held_s) in enumerate(zip(story, durations, strict=True)):
        if i:
            out += ramp(sensor, t, story[i - 1], level, flags=D)
            t += 3
        starts.append(t)
        out += hold(sensor, t, t + held_s, level, D)
        t += held_s
        if fault_in == i:
            out += sensor.send(t, level, D | FLAG_FAULT)
            t += 10
    out += detector.tick(round((t + 60) * S))

    def car_at(ts: float) -> bool:
        phase = max(i for i, start in enumerate(starts) if start <= ts + 5)
        return cars_at[phase]

    for change in out:
        assert change.ts <= change.confirmed_ts
        if change.reason is None:
            assert (change.state == "occupied") == car_at(change.ts / S), summary(out)
    stamps = [c.ts for c in out]
    assert stamps == sorted(stamps), summary(out)


def test_a_car_standing_on_the_way_between_the_held_levels_is_a_car_from_where_it_stood() -> None:
    """On the way between the two levels, a reading may be a car leaving whose last frames were
    lost; still there a minute later (a frame lost in between), it is a car that came: the
    belief was upside down, and the car's arrival is published from when it began."""
    detector, sensor = drifting()
    parked, between = add(BASE, (-23.0, -190.0, 0.0)), add(BASE, (-62.0, -92.0, 0.0))
    out = sensor.send(0, parked, D)
    out += hold(sensor, 60, 300, parked, D)
    out += ramp(sensor, 300, parked, BASE, flags=D)  # it leaves; DETECT stays on (drift)
    out += hold(sensor, 303, 600, BASE, D)
    out += ramp(sensor, 600, BASE, between, flags=D)  # a car pulls in, 600-602
    sensor.seq += 1  # the keep-alive at 662 is lost
    out += hold(sensor, 722, 900, between, D)
    assert summary(out) == [  # decided once it was there again: late, never upside down
        ("occupied", 0, 732, None),
        ("vacant", 300, 732, None),
        ("occupied", 600, 732, None),
    ]
    assert detector.bay("S-1").first_level is FirstLevel.BELIEVED
