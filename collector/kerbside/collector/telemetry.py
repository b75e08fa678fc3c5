"""What the collector measures of itself beyond its stored counters, for ``/metrics``.

Plain numbers, no exporter: the API turns them into Prometheus metrics (api/metrics.py).

- Rule latency: how long after it fell due (its instant plus ``alert_delay_s``) an enforcement
  alert was committed.
- Publication latency: how long after its commit the broker acknowledged an alert change (the
  outbox reports it).

Both are counted into Prometheus' cumulative buckets. ``counters`` follow the stored counters as
units of work commit (plain ints, so another thread may read them, as benches do).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from kerbside.core.instants import Instant

LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


@dataclass(frozen=True, slots=True)
class LatencyCounts:
    """A histogram as Prometheus exposes it: ``cumulative[i]`` observations were at most
    ``bounds[i]`` seconds; ``count`` and ``sum`` cover all of them."""

    bounds: tuple[float, ...]
    cumulative: tuple[int, ...]
    count: int
    sum: float


class Latencies:
    """Observations in seconds, counted into cumulative buckets."""

    def __init__(self, bounds: Sequence[float] = LATENCY_BUCKETS_S) -> None:
        self._bounds = tuple(bounds)
        self._counts = [0] * len(self._bounds)
        self._count = 0
        self._sum = 0.0

    def observe(self, seconds: float) -> None:
        seconds = max(seconds, 0.0)
        self._count += 1
        self._sum += seconds
        for i, bound in enumerate(self._bounds):
            if seconds <= bound:
                self._counts[i] += 1

    def counts(self) -> LatencyCounts:
        return LatencyCounts(self._bounds, tuple(self._counts), self._count, self._sum)


class Telemetry:
    def __init__(self, counters: Mapping[str, int] | None = None) -> None:
        self.counters: dict[str, int] = dict(counters or {})
        self.rule_latency = Latencies()
        self.publish_latency = Latencies()
        self.journal_skipped = 0  # journal records the last recovery could not read

    def committed(self, deltas: Mapping[str, int]) -> None:
        counters = self.counters
        for name, by in deltas.items():
            counters[name] = counters.get(name, 0) + by

    def raised(self, raised_at: Sequence[Instant], now: Instant, delay_ms: int) -> None:
        """Enforcement alerts committed at ``now``, each due ``delay_ms`` after its instant."""
        for due in raised_at:
            self.rule_latency.observe((now - due - delay_ms) / 1000)
