"""Time-weighted occupancy per bucket, from each bay's state timeline (no I/O).

A bucket's rate is occupied time / (occupied + vacant time) summed over the zone's bays: the
time-weighted form of the time series' ``occupied / (total - unknown)``. A bay is
``unknown`` until its first known state.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from kerbside.core.instants import Instant

_INTERVAL_RE = re.compile(r"^([1-9][0-9]{0,5})([smhd])$")
_UNIT_MS = {"s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
MIN_INTERVAL_MS = 60_000
MAX_BUCKETS = 10_000


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
    occupied_ms: int = 0
    vacant_ms: int = 0
    unknown_ms: int = 0

    @property
    def rate(self) -> float | None:
        known = self.occupied_ms + self.vacant_ms
        return None if known == 0 else self.occupied_ms / known


def occupancy_buckets(
    timelines: Mapping[str, Sequence[tuple[Instant, str]]],
    start: Instant,
    end: Instant,
    interval_ms: int,
) -> list[Bucket]:
    """Buckets ``[start + k*interval, ...)`` up to ``end`` (the last one cut at ``end``).

    ``timelines`` maps a bay to its ``(ts, state)`` changes in time order; the state at ``start``
    is its last change at or before ``start``. Changes at or after ``end`` are ignored.
    """
    buckets = [Bucket(t, min(t + interval_ms, end)) for t in range(start, end, interval_ms)]
    for changes in timelines.values():
        state, at = "unknown", start
        for ts, new_state in changes:
            if ts >= end:
                break
            if ts > at:
                _spread(buckets, start, interval_ms, (at, ts), state)
                at = ts
            state = new_state
        _spread(buckets, start, interval_ms, (at, end), state)
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
