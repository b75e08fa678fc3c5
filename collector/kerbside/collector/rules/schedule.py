"""Controlled time of a bay as instants: the site's local wall clock, daylight saving included.

An instant is controlled when its local wall time (and date, for holidays) falls in the bay's
hours. Each local date is turned into the UTC intervals whose wall time lies in that date's
controlled ranges: on the spring-forward Sunday the missing hour simply has no instants, on the
fall-back Sunday the repeated hour has twice as many. A controlled period is a maximal run of
such intervals; periods are found once per schedule and cached, so the engine's per-event cost is
a bisection, and nothing ever scans minute by minute.
"""

from __future__ import annotations

import bisect
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

from kerbside.core.instants import Instant
from kerbside.core.site import Hours

NEG_INF: Instant = -(1 << 62)  # "before anything": a period with no known start
POS_INF: Instant = 1 << 62  # "after anything": a period with no known end
DAY_MS = 86_400_000
MINUTE_MS = 60_000
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
# How far a period is followed before it is taken to be endless (a year and a bit).
HORIZON_DAYS = 400

Segment = tuple[Instant, Instant, bool]  # [start, end), controlled or not


class ZoneClock:
    """Offsets of one time zone, with its daylight-saving transitions found by bisection."""

    def __init__(self, tz: ZoneInfo) -> None:
        self.tz = tz
        self._pieces: dict[int, tuple[tuple[Instant, Instant, int], ...]] = {}

    def offset_ms(self, instant: Instant) -> int:
        moment = datetime.fromtimestamp(instant // 1000, tz=UTC).astimezone(self.tz)
        offset = moment.utcoffset()
        assert offset is not None
        return (offset.days * 86_400 + offset.seconds) * 1000

    def local_ordinal(self, instant: Instant) -> int:
        """The proleptic ordinal of the local date at ``instant``."""
        return (instant + self.offset_ms(instant)) // DAY_MS + _EPOCH_ORDINAL

    def pieces(self, ordinal: int) -> tuple[tuple[Instant, Instant, int], ...]:
        """Constant-offset stretches ``(u0, u1, offset)`` covering every instant of local date
        ``ordinal`` (a window of one day either side, so any offset fits)."""
        found = self._pieces.get(ordinal)
        if found is not None:
            return found
        midnight = (ordinal - _EPOCH_ORDINAL) * DAY_MS
        lo, hi = midnight - DAY_MS, midnight + 2 * DAY_MS
        off_lo, off_hi = self.offset_ms(lo), self.offset_ms(hi)
        if off_lo == off_hi:
            found = ((lo, hi, off_lo),)
        else:
            # Transitions happen on whole seconds: bisect seconds for the first with off_hi.
            a, b = lo // 1000, hi // 1000
            while b - a > 1:
                mid = (a + b) // 2
                if self.offset_ms(mid * 1000) == off_lo:
                    a = mid
                else:
                    b = mid
            found = ((lo, b * 1000, off_lo), (b * 1000, hi, off_hi))
        self._pieces[ordinal] = found
        return found


class Schedule:
    """When one bay is controlled: its hours on the zone's clock, minus holidays if they apply."""

    def __init__(self, hours: Hours, clock: ZoneClock, holidays: frozenset[date]) -> None:
        self.hours = hours
        self.clock = clock
        self._holidays = frozenset(d.toordinal() for d in holidays)
        # Wall-clock minute ranges of each weekday: those starting that day, and the parts that
        # spill past midnight into the next day (they belong to the day they start).
        self._own: list[list[tuple[int, int]]] = [[] for _ in range(7)]
        self._spill: list[list[tuple[int, int]]] = [[] for _ in range(7)]
        if isinstance(hours, tuple):
            for rng in hours:
                for day in rng.days:
                    if rng.end_min > rng.start_min:
                        self._own[day].append((rng.start_min, rng.end_min))
                    else:
                        self._own[day].append((rng.start_min, 1440))
                        if rng.end_min > 0:
                            self._spill[day].append((0, rng.end_min))
        self._days: dict[int, tuple[tuple[Instant, Instant], ...]] = {}
        self._starts: list[Instant] = []
        self._segments: list[Segment] = []

    # -- one local date -------------------------------------------------------------------
    def _wall_ranges(self, ordinal: int) -> list[tuple[int, int]]:
        if ordinal in self._holidays:
            return []
        if self.hours == "any":
            return [(0, 1440)]
        if self.hours == "none":
            return []
        weekday = (ordinal - 1) % 7  # date.fromordinal(1) is a Monday
        ranges = sorted(self._own[weekday] + self._spill[(weekday - 1) % 7])
        merged: list[tuple[int, int]] = []
        for start, end in ranges:
            if merged and start <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(merged[-1][1], end))
            else:
                merged.append((start, end))
        return merged

    def day(self, ordinal: int) -> tuple[tuple[Instant, Instant], ...]:
        """The instants, as sorted disjoint intervals, whose local date is ``ordinal`` and whose
        local wall time is controlled."""
        found = self._days.get(ordinal)
        if found is not None:
            return found
        midnight = (ordinal - _EPOCH_ORDINAL) * DAY_MS
        day_lo, day_hi = midnight, midnight + DAY_MS
        out: list[tuple[Instant, Instant]] = []
        for start_min, end_min in self._wall_ranges(ordinal):
            wall_a, wall_b = midnight + start_min * MINUTE_MS, midnight + end_min * MINUTE_MS
            for u0, u1, off in self.clock.pieces(ordinal):
                # Instants of this piece whose wall time is on this date and in [wall_a, wall_b).
                lo = max(u0, wall_a - off, day_lo - off)
                hi = min(u1, wall_b - off, day_hi - off)
                if lo < hi:
                    out.append((lo, hi))
        out.sort()
        merged: list[tuple[Instant, Instant]] = []
        for lo, hi in out:
            if merged and lo <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(merged[-1][1], hi))
            else:
                merged.append((lo, hi))
        found = tuple(merged)
        if len(self._days) > 4096:
            self._days.clear()
        self._days[ordinal] = found
        return found

    def _containing(self, instant: Instant) -> tuple[Instant, Instant] | None:
        for lo, hi in self.day(self.clock.local_ordinal(instant)):
            if lo <= instant < hi:
                return (lo, hi)
        return None

    # -- maximal runs ---------------------------------------------------------------------
    def controlled(self, instant: Instant) -> bool:
        return self.segment_at(instant)[2]

    def segment_at(self, instant: Instant) -> Segment:
        """The maximal run, controlled or not, that contains ``instant``."""
        starts = self._starts
        i = bisect.bisect_right(starts, instant) - 1
        if i >= 0:
            seg = self._segments[i]
            if instant < seg[1]:
                return seg
        seg = self._compute(instant)
        j = bisect.bisect_left(starts, seg[0])
        starts.insert(j, seg[0])
        self._segments.insert(j, seg)
        return seg

    def period_at(self, instant: Instant) -> tuple[Instant, Instant] | None:
        """The controlled period containing ``instant``, or None if it is not controlled."""
        start, end, controlled = self.segment_at(instant)
        return (start, end) if controlled else None

    def next_start(self, instant: Instant) -> Instant | None:
        """The start of the first controlled period after ``instant`` (not containing it)."""
        _start, end, controlled = self.segment_at(instant)
        if controlled:
            if end >= POS_INF:
                return None
            _start, end, _controlled = self.segment_at(end)
        return None if end >= POS_INF else end

    def _compute(self, instant: Instant) -> Segment:
        if self.hours == "none" or (self.hours == "any" and not self._holidays):
            return (NEG_INF, POS_INF, self.hours == "any")
        horizon = HORIZON_DAYS * DAY_MS
        found = self._containing(instant)
        if found is not None:
            start, end = found
            while end - instant < horizon:
                nxt = self._containing(end)
                if nxt is None:
                    break
                end = nxt[1]
            else:
                end = POS_INF
            while instant - start < horizon:
                prev = self._containing(start - 1)
                if prev is None:
                    break
                start = prev[0]
            else:
                start = NEG_INF
            return (start, end, True)
        ordinal = self.clock.local_ordinal(instant)
        end = POS_INF
        for k in range(-1, HORIZON_DAYS):
            later = [lo for lo, _ in self.day(ordinal + k) if lo > instant]
            if later:
                end = min(later)
                # A neighbouring date can hold an earlier start around a transition.
                end = min([end, *(lo for lo, _ in self.day(ordinal + k + 1) if lo > instant)])
                break
        start = NEG_INF
        for k in range(1, -HORIZON_DAYS, -1):
            earlier = [hi for _, hi in self.day(ordinal + k) if hi <= instant]
            if earlier:
                start = max(earlier)
                start = max([start, *(hi for _, hi in self.day(ordinal + k - 1) if hi <= instant)])
                break
        return (start, end, False)


class ScheduleBook:
    """One Schedule per distinct (hours, holidays) of a site, shared by the bays that use it."""

    def __init__(self, timezone: str, holidays: frozenset[date]) -> None:
        self.clock = ZoneClock(ZoneInfo(timezone))
        self._holidays = holidays
        self._schedules: dict[tuple[object, bool], Schedule] = {}

    def get(self, hours: Hours, except_holidays: bool) -> Schedule:
        key = (hours, except_holidays)
        found = self._schedules.get(key)
        if found is None:
            holidays = self._holidays if except_holidays else frozenset()
            found = Schedule(hours, self.clock, holidays)
            self._schedules[key] = found
        return found
