"""What the collector measures of itself beyond its stored counters, for ``/metrics``.

The rule latency is how long after it fell due (its instant plus ``alert_delay_s``) an alert was
committed: a histogram with Prometheus' cumulative buckets. ``counters`` follow the stored
counters as units of work commit (plain ints, so another thread may read them, as benches do).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from kerbside.core.instants import Instant

LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Telemetry:
    def __init__(self, counters: Mapping[str, int] | None = None) -> None:
        self.counters: dict[str, int] = dict(counters or {})
        self._counts = [0] * len(LATENCY_BUCKETS_S)
        self._count = 0
        self._sum = 0.0
        self.journal_skipped = 0  # journal records the last recovery could not read

    def committed(self, deltas: Mapping[str, int]) -> None:
        counters = self.counters
        for name, by in deltas.items():
            counters[name] = counters.get(name, 0) + by

    def raised(self, raised_at: Sequence[Instant], now: Instant, delay_ms: int) -> None:
        for due in raised_at:
            late = max((now - due - delay_ms) / 1000, 0.0)
            self._count += 1
            self._sum += late
            for i, bound in enumerate(LATENCY_BUCKETS_S):
                if late <= bound:
                    self._counts[i] += 1

    def latency(self) -> dict[str, Any]:
        return {
            "count": self._count,
            "sum": self._sum,
            "buckets": dict(zip(LATENCY_BUCKETS_S, self._counts, strict=True)),
        }
