"""Time-weighted occupancy per bucket, from each bay's state timeline (no I/O).

A bucket's rate is occupied time / (occupied + vacant time) summed over the zone's bays: the
time-weighted form of the time series' ``occupied / (total - unknown)``. A bay counts from its
origin (when the collector first ran with a site holding it; before that it did not exist) and
is ``unknown`` until its first known state. Time after ``now`` is never counted: buckets that
have not begun are left out, and the one ``now`` falls in is ``partial``.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from kerbside.core.instants import Instant

_INTERVAL_RE = re.compile(r"^([1-9][0-9]{0,5})([smhd])$")
_UNIT_MS = {"s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
MIN_INTERVAL_MS = 60_000
MAX_BUCKETS = 10_000
DAY_MS = 86_400_000
# The most history one request may read: bays x days up to the collector's now (a busy bay
# changes state a few dozen times a day; 100,000 bay-days is about two million changes and a few
# seconds in a worker thread). Longer views come from InfluxDB's zone_occupancy.
MAX_BAY_DAYS = 100_000
# Occupancy requests read and counted at once; others wait their turn.
HEAVY_READS_AT_ONCE = 2


class IntervalError(ValueError):
    """An interval that is not like ``15m``, ``1h``, ``1d`` (at least a minute)."""


def parse_interval(text: str) -> int:
    match = _INTERVAL_RE.match(text)
    if match is None:
        raise IntervalError("expected a duration like 15m, 1h or 1d")
    millis = int(match.group(1)) * _UNIT_MS[match.group(2)]
    if millis < MIN_INTERVAL_MS:
        raise IntervalError("must be at least 1m")
    return millis


@dataclass
class Bucket:
    start: Instant
    end: Instant
    partial: bool = False  # part of it is still to come: counted up to ``now`` only
    occupied_ms: int = 0
    vacant_ms: int = 0
    unknown_ms: int = 0
    bays: int = 0  # bays that existed during the part counted

    @property
    def rate(self) -> float | None:
        known = self.occupied_ms + self.vacant_ms
        return None if known == 0 else self.occupied_ms / known


def occupancy_buckets(
    timelines: Mapping[str, Sequence[tuple[Instant, str]]],
    start: Instant,
    end: Instant,
    interval_ms: int,
    *,
    now: Instant,
    origins: Mapping[str, Instant] | None = None,
) -> list[Bucket]:
    """Buckets ``[start + k*interval, ...)`` that begin before ``min(end, now)`` (the last one
    cut at ``end``); the bucket holding ``now`` is partial and counts time up to ``now``.

    ``timelines`` maps a bay to its ``(ts, state)`` changes in time order; the state at ``start``
    is its last change at or before ``start``. Changes at or after ``end`` are ignored. With
    ``origins``, a bay counts from its origin on, and a bay without one not at all.
    """
    horizon = min(end, now)
    buckets = [
        Bucket(t, min(t + interval_ms, end), partial=min(t + interval_ms, end) > now)
        for t in range(start, horizon, interval_ms)
    ]
    arrivals = [0] * (len(buckets) + 1)  # bays whose counted time begins in each bucket
    for bay_id, changes in timelines.items():
        origin = start if origins is None else origins.get(bay_id)
        if origin is None or origin >= horizon:
            continue
        state, at = "unknown", max(start, origin)
        arrivals[(at - start) // interval_ms] += 1
        for ts, new_state in changes:
            if ts >= horizon:
                break
            if ts > at:
                _spread(buckets, start, interval_ms, (at, ts), state)
                at = ts
            state = new_state
        _spread(buckets, start, interval_ms, (at, horizon), state)
    for bucket, bays in zip(buckets, itertools.accumulate(arrivals), strict=False):
        bucket.bays = bays
    return buckets


def _spread(
    buckets: list[Bucket],
    origin: Instant,
    interval_ms: int,
    span: tuple[Instant, Instant],
    state: str,
) -> None:
    lo, hi = span
    index = (lo - origin) // interval_ms
    while lo < hi and index < len(buckets):
        bucket = buckets[index]
        part = min(hi, bucket.end) - lo
        if state == "occupied":
            bucket.occupied_ms += part
        elif state == "vacant":
            bucket.vacant_ms += part
        else:
            bucket.unknown_ms += part
        lo = bucket.end
        index += 1
