"""Vehicles on one bay: arrivals (Poisson, rate by time of day, by thinning), dwell times from
a minute to hours, generated lazily and reproducibly from the bay's own random stream.

Two mixes: ``standard`` (a fifth of the stays are short stops of 1-3 minutes) and
``short-stays`` (loading bays, drop-off points: half the stays last 20-75 s, shorter than a
sensor's keep-alive, the turnover analysts count).

Guarantees the ground truth relies on: every session lasts at least the mix's ``min_session_ms``
(60 s, or 20 s for short stays), gaps between sessions on a bay are at least its ``min_gap_ms``
(60 s, or 30 s), and no session overlaps a blocked interval (the sensor's silent and fault
intervals widened by two minutes).
"""

from __future__ import annotations

import bisect
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from kerbside.core.instants import Instant
from kerbside.sim.schedule import Interval

WARMUP_MS = 120_000
_HOUR_MS = 3_600_000
_RATE_MAX_PER_H = 2.0
_FOREVER = 2**62

Vector = tuple[float, float, float]
Blocked = Callable[[Instant, Instant], list[Interval]]


@dataclass(frozen=True, slots=True)
class TrafficMix:
    name: str
    short_share: float  # share of stays drawn from ``short_ms`` instead of the standard dwell
    short_ms: tuple[int, int]
    min_session_ms: int
    min_gap_ms: int


MIXES: dict[str, TrafficMix] = {
    "standard": TrafficMix("standard", 0.0, (60_000, 60_000), 60_000, 60_000),
    "short-stays": TrafficMix("short-stays", 0.5, (20_000, 75_000), 20_000, 30_000),
}
STANDARD = MIXES["standard"]
MIN_SESSION_MS = STANDARD.min_session_ms
MIN_GAP_MS = STANDARD.min_gap_ms


@dataclass(frozen=True, slots=True)
class Session:
    arrival: Instant  # the car starts pulling in
    departure: Instant  # the car starts pulling out
    signature: Vector  # mG, at full strength
    ramp_in_ms: int
    ramp_out_ms: int


def arrival_rate_per_h(t: Instant) -> float:
    """Arrivals per hour at a vacant bay, by hour of day (UTC; the street is in London)."""
    hour = (t // _HOUR_MS) % 24
    if 7 <= hour < 19:
        return 2.0
    if 19 <= hour < 23:
        return 1.0
    return 0.25


def random_unit(rng: random.Random) -> Vector:
    while True:
        x, y, z = rng.gauss(0, 1), rng.gauss(0, 1), rng.gauss(0, 1)
        norm = math.sqrt(x * x + y * y + z * z)
        if norm > 1e-6:
            return (x / norm, y / norm, z / norm)


def _dwell_ms(rng: random.Random, mix: TrafficMix) -> int:
    if mix.short_share and rng.random() < mix.short_share:
        return rng.randint(*mix.short_ms)
    pick = rng.random()
    if pick < 0.2:  # short stops: a delivery, a drop-off
        return rng.randint(60_000, 180_000)
    if pick < 0.7:
        lo, hi = 5 * 60.0, 60 * 60.0
    elif pick < 0.92:
        lo, hi = 60 * 60.0, 3 * 3600.0
    else:
        lo, hi = 3 * 3600.0, 8 * 3600.0
    return int(1000 * math.exp(rng.uniform(math.log(lo), math.log(hi))))


def _signature(rng: random.Random) -> Vector:
    # Weak cars (small, high ground clearance, aluminium) sit just above the 50 mG threshold.
    magnitude = rng.uniform(55.0, 80.0) if rng.random() < 0.15 else rng.uniform(80.0, 320.0)
    ux, uy, uz = random_unit(rng)
    return (ux * magnitude, uy * magnitude, uz * magnitude)


class BayTraffic:
    """The sessions of one bay, generated on demand up to any horizon."""

    def __init__(
        self,
        seed: int,
        bay_index: int,
        start: Instant,
        blocked: Blocked,
        *,
        fixed: Sequence[tuple[Instant, Instant]] | None = None,
        mix: TrafficMix = STANDARD,
    ) -> None:
        self._rng = random.Random(f"{seed}:traffic:{bay_index}")
        self._mix = mix
        self._blocked = blocked
        self._free_from = start + WARMUP_MS
        self.sessions: list[Session] = []
        self._arrivals: list[Instant] = []
        self._fixed = fixed is not None
        for arrival, departure in sorted(fixed or ()):
            # Given visits (a planned street): the vehicles are random, the times are not.
            signature = _signature(self._rng)
            ramp_in, ramp_out = self._rng.randint(2_000, 6_000), self._rng.randint(2_000, 5_000)
            self.sessions.append(Session(arrival, departure, signature, ramp_in, ramp_out))
            self._arrivals.append(arrival)

    def extend_to(self, horizon: Instant) -> None:
        """Generate sessions until one arrives at or after ``horizon``."""
        if self._fixed:
            return
        while not self.sessions or self.sessions[-1].arrival < horizon:
            self._next_session()

    def _next_arrival(self, t: Instant) -> Instant:
        rng = self._rng
        while True:
            t += int(rng.expovariate(_RATE_MAX_PER_H) * _HOUR_MS) + 1
            if rng.random() * _RATE_MAX_PER_H < arrival_rate_per_h(t):
                return t

    def _next_session(self) -> None:
        rng = self._rng
        free = self._free_from
        while True:
            arrival = self._next_arrival(free)
            dwell = _dwell_ms(rng, self._mix)
            signature = _signature(rng)
            ramp_in, ramp_out = rng.randint(2_000, 6_000), rng.randint(2_000, 5_000)
            departure = arrival + dwell
            clash = self._blocked(arrival, departure + ramp_out)
            if clash:
                first = clash[0]
                shortest = self._mix.min_session_ms + ramp_out
                if first.start <= arrival or first.start - arrival < shortest:
                    free = max(free, first.end)
                    continue
                departure = first.start - ramp_out  # the car leaves before the sensor's incident
            session = Session(arrival, departure, signature, ramp_in, ramp_out)
            self.sessions.append(session)
            self._arrivals.append(arrival)
            self._free_from = departure + ramp_out + self._mix.min_gap_ms
            return

    def field_at(self, t: Instant) -> tuple[Vector | None, Instant]:
        """The vehicle's field contribution at ``t`` and the instant until which it stays the
        same (a ramp changes every moment; an empty or steadily parked bay does not)."""
        i = bisect.bisect_right(self._arrivals, t) - 1
        nxt = self._arrivals[i + 1] if i + 1 < len(self._arrivals) else _FOREVER
        if i < 0:
            return None, nxt
        s = self.sessions[i]
        if t >= s.departure + s.ramp_out_ms:
            return None, nxt
        if s.arrival + s.ramp_in_ms <= t < s.departure:
            return s.signature, s.departure
        return self.signature_at(t), t + 1

    def signature_at(self, t: Instant) -> Vector | None:
        """The vehicle's field contribution at ``t`` (ramping in and out), or None."""
        i = bisect.bisect_right(self._arrivals, t) - 1
        if i < 0:
            return None
        s = self.sessions[i]
        if t >= s.departure + s.ramp_out_ms:
            return None
        if t < s.arrival + s.ramp_in_ms:
            k = (t - s.arrival) / s.ramp_in_ms
        elif t >= s.departure:
            k = 1.0 - (t - s.departure) / s.ramp_out_ms
        else:
            return s.signature
        x, y, z = s.signature
        return (x * k, y * k, z * k)
