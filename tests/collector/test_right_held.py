"""The right an alert's card shows: of those that covered the bay during the stay so far, the
one that runs latest; none bought for later, none that ended before the vehicle came."""

from __future__ import annotations

from kerbside.collector.records import Right
from kerbside.collector.right_held import right_held

MIN = 60_000
ARRIVAL = 1_800_000_000_000
NOW = ARRIVAL + 90 * MIN


def _right(right_id: str, start: int, end: int, kind: str = "payment") -> Right:
    return Right(right_id, kind, "B1", None, ARRIVAL + start * MIN, ARRIVAL + end * MIN)


def test_none_for_a_stay_without_one() -> None:
    assert right_held([], ARRIVAL, NOW) is None
    before = _right("gone", -120, 0)  # ended as the vehicle arrived: [start, end)
    later = _right("tomorrow", 100, 200)  # bought for later
    assert right_held([before, later], ARRIVAL, NOW) is None


def test_the_one_that_runs_latest() -> None:
    first = _right("p1", -10, 30)
    extension = _right("p2", 30, 60)
    assert right_held([first, extension], ARRIVAL, NOW) == extension  # ran out at +60
    permit = _right("z1", -1000, 2000, kind="permit")
    assert right_held([first, permit, extension], ARRIVAL, NOW) == permit


def test_a_right_starting_now_is_held() -> None:
    starts_now = _right("p3", 90, 150)
    assert right_held([starts_now], ARRIVAL, NOW) == starts_now
