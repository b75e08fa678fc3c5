"""Scoring a detector's sessions against the simulator's ground truth. Pure: changes in (any
detector's: the edge agent's, or the DETECT-bit baseline of ``kerbside.sim.baseline``), a score
out; running a detector over a capture is the caller's business.

A session runs from an ``occupied`` event's ``ts`` to the next ``vacant`` or ``unknown`` event's
``ts``, as the collector's rules count them. A detected session matches a true one of the same bay
when both its arrival and its departure are within the tolerance (35 s); matching is one to one.
A session still open at the end of the run ends at the run's end, on both sides. A session, true
or detected, that begins so close to the end (``confirm_s``, a keep-alive and the tolerance) that
it could not have been confirmed counts only when it was matched. Each matched boundary also
gives its confirmation latency, ``confirmed_ts - ts``: how long after the fact the collector
heard of it.

A detector may also start late (``late_start``), as if the agent had started mid-run with cars
already parked. The truth is restricted to its window (``window_truth``): a session running at its
start begins at the window start, and its arrival matches any detected one from the window start
until a keep-alive and a margin after it (the sensor may say nothing sooner); those arrivals give
no boundary error. A true session ending so soon after the window start that no reading could
show it counts only when it was matched.
"""

from __future__ import annotations

import dataclasses
import statistics
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from kerbside.core.instants import Instant
from kerbside.sim.truth import Truth

TOLERANCE_MS = 35_000
LATE_S = 75.0  # a detector may wait for a sensor's keep-alive before it confirms

Session = tuple[Instant, Instant]


class Change(Protocol):
    """What scoring reads of a detector's change (an occupancy event's fields)."""

    @property
    def bay_id(self) -> str: ...
    @property
    def state(self) -> str: ...
    @property
    def ts(self) -> Instant: ...
    @property
    def confirmed_ts(self) -> Instant: ...


@dataclass(frozen=True, slots=True)
class Detected:
    """A detected session: from an occupied change to the next vacant or unknown one."""

    arrival: Instant
    departure: Instant
    arrival_confirmed: Instant
    departure_confirmed: Instant | None  # None: still open at the end


@dataclass(frozen=True, slots=True)
class Score:
    true_sessions: int
    detected_sessions: int
    matched: int
    boundary_errors_s: tuple[float, ...]  # |detected - true| of every matched boundary
    # confirmed_ts - ts of every matched boundary: how late the collector heard of it
    latencies_s: tuple[float, ...] = ()

    @property
    def precision(self) -> float:
        return self.matched / self.detected_sessions if self.detected_sessions else 1.0

    @property
    def recall(self) -> float:
        return self.matched / self.true_sessions if self.true_sessions else 1.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    def boundary_p(self, pct: float) -> float:
        return _percentile(self.boundary_errors_s, pct)

    def latency_p(self, pct: float) -> float:
        return _percentile(self.latencies_s, pct)

    def __add__(self, other: Score) -> Score:
        return Score(
            self.true_sessions + other.true_sessions,
            self.detected_sessions + other.detected_sessions,
            self.matched + other.matched,
            self.boundary_errors_s + other.boundary_errors_s,
            self.latencies_s + other.latencies_s,
        )


EMPTY = Score(0, 0, 0, ())


def _percentile(values: tuple[float, ...], pct: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return 0.0
    if len(ordered) == 1:
        return ordered[0]
    return statistics.quantiles(ordered, n=100, method="inclusive")[round(pct) - 1]


def detected_sessions(changes: Iterable[Change], end: Instant) -> dict[str, list[Detected]]:
    """Sessions per bay from a detector's changes (open ones end at ``end``)."""
    sessions: dict[str, list[Detected]] = defaultdict(list)
    open_since: dict[str, Change] = {}
    for change in changes:
        arrival = open_since.get(change.bay_id)
        if change.state == "occupied":
            if arrival is None:
                open_since[change.bay_id] = change
        elif arrival is not None:
            sessions[change.bay_id].append(
                Detected(arrival.ts, change.ts, arrival.confirmed_ts, change.confirmed_ts)
            )
            del open_since[change.bay_id]
    for bay, arrival in open_since.items():
        sessions[bay].append(Detected(arrival.ts, end, arrival.confirmed_ts, None))
    return sessions


def true_sessions(truth: Truth, cutoff: Instant) -> dict[str, list[Session]]:
    sessions: dict[str, list[Session]] = defaultdict(list)
    for s in truth.sessions:
        if s.arrival < cutoff:
            sessions[s.bay_id].append(
                (s.arrival, truth.end if s.departure is None else s.departure)
            )
    return sessions


def window_truth(truth: Truth, start: Instant) -> Truth:
    """The truth of ``[start, truth.end)``: sessions running at ``start`` begin there."""
    if start <= truth.start:
        return truth
    sessions = [
        dataclasses.replace(s, arrival=max(s.arrival, start))
        for s in truth.sessions
        if s.departure is None or s.departure > start
    ]
    return dataclasses.replace(
        truth,
        start=start,
        sessions=sessions,
        silent=[s for s in truth.silent if s.end > start],
        faults=[s for s in truth.faults if s.end > start],
        reboots=[r for r in truth.reboots if r.at >= start],
    )


def score_sessions(
    changes: Iterable[Change],
    truth: Truth,
    confirm_s: float = 10.0,
    tolerance_ms: int = TOLERANCE_MS,
    *,
    late_start: bool = False,
) -> Score:
    """Score against ``truth``; ``late_start``: the detector started at ``truth.start`` with
    cars already parked (see the module docstring)."""
    late_ms = round((confirm_s + LATE_S) * 1000) + tolerance_ms
    cutoff = truth.end - late_ms
    # Arrivals this close to the start may be seen first as a level already there.
    early = truth.start + round(LATE_S * 1000) if late_start else truth.start - 1
    detected = detected_sessions(changes, truth.end)
    expected = true_sessions(truth, truth.end)
    n_true = n_detected = matched = 0
    errors: list[float] = []
    latencies: list[float] = []
    for bay in sorted(set(detected) | set(expected)):
        found = detected.get(bay, [])
        wanted = expected.get(bay, [])
        used: set[int] = set()
        for arrival, departure in wanted:
            at_start = arrival <= early
            for i, d in enumerate(found):
                if i in used:
                    continue
                if at_start:
                    arrival_ok = truth.start - tolerance_ms <= d.arrival <= early + tolerance_ms
                else:
                    arrival_ok = abs(d.arrival - arrival) <= tolerance_ms
                if arrival_ok and abs(d.departure - departure) <= tolerance_ms:
                    used.add(i)
                    matched += 1
                    n_true += 1
                    n_detected += 1
                    if not at_start:
                        errors.append(abs(d.arrival - arrival) / 1000)
                        latencies.append((d.arrival_confirmed - d.arrival) / 1000)
                    if departure != truth.end:
                        errors.append(abs(d.departure - departure) / 1000)
                    if d.departure_confirmed is not None:
                        latencies.append((d.departure_confirmed - d.departure) / 1000)
                    break
            else:
                # too close to the end to be confirmed, or gone before a reading showed it
                n_true += arrival < cutoff and not (
                    late_start and departure < truth.start + late_ms
                )
        n_detected += sum(1 for i, d in enumerate(found) if i not in used and d.arrival < cutoff)
    return Score(n_true, n_detected, matched, tuple(errors), tuple(latencies))
