"""Scoring a detector's sessions against the simulator's ground truth.

A session runs from an ``occupied`` event's ``ts`` to the next ``vacant`` or ``unknown`` event's
``ts`` (SPEC section 7). A detected session matches a true one of the same bay when both its
arrival and its departure are within the tolerance (35 s); matching is one to one. A session still
open at the end of the run ends at the run's end, on both sides. A session, true or detected,
that begins so close to the end (``confirm_s``, a keep-alive and the tolerance) that it could not
have been confirmed counts only when it was matched.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from kerbside.core.instants import Instant
from kerbside.edge.capture import read_capture
from kerbside.edge.config import DetectorConfig, EdgeConfig, load_edge_config
from kerbside.edge.detector import DetectBitDetector, Detector
from kerbside.edge.model import OccupancyChange
from kerbside.edge.replay import replay_changes
from kerbside.sim.truth import Truth, load_truth

TOLERANCE_MS = 35_000
LATE_S = 75.0  # a detector may wait for a sensor's keep-alive before it confirms

Session = tuple[Instant, Instant]
DetectorFactory = Callable[[DetectorConfig, Mapping[str, str]], Detector]


@dataclass(frozen=True, slots=True)
class Score:
    true_sessions: int
    detected_sessions: int
    matched: int
    boundary_errors_s: tuple[float, ...]  # |detected - true| of every matched boundary

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
        errors = sorted(self.boundary_errors_s)
        if not errors:
            return 0.0
        if len(errors) == 1:
            return errors[0]
        return statistics.quantiles(errors, n=100, method="inclusive")[round(pct) - 1]

    def __add__(self, other: Score) -> Score:
        return Score(
            self.true_sessions + other.true_sessions,
            self.detected_sessions + other.detected_sessions,
            self.matched + other.matched,
            self.boundary_errors_s + other.boundary_errors_s,
        )


EMPTY = Score(0, 0, 0, ())


def detected_sessions(changes: Iterable[OccupancyChange], end: Instant) -> dict[str, list[Session]]:
    """Sessions per bay from a detector's changes (open ones end at ``end``)."""
    sessions: dict[str, list[Session]] = defaultdict(list)
    open_since: dict[str, Instant] = {}
    for change in changes:
        start = open_since.get(change.bay_id)
        if change.state == "occupied":
            if start is None:
                open_since[change.bay_id] = change.ts
        elif start is not None:
            sessions[change.bay_id].append((start, change.ts))
            del open_since[change.bay_id]
    for bay, start in open_since.items():
        sessions[bay].append((start, end))
    return sessions


def true_sessions(truth: Truth, cutoff: Instant) -> dict[str, list[Session]]:
    sessions: dict[str, list[Session]] = defaultdict(list)
    for s in truth.sessions:
        if s.arrival < cutoff:
            sessions[s.bay_id].append(
                (s.arrival, truth.end if s.departure is None else s.departure)
            )
    return sessions


def score_sessions(
    changes: Iterable[OccupancyChange],
    truth: Truth,
    confirm_s: float = 10.0,
    tolerance_ms: int = TOLERANCE_MS,
) -> Score:
    cutoff = truth.end - round((confirm_s + LATE_S) * 1000) - tolerance_ms
    detected = detected_sessions(changes, truth.end)
    expected = true_sessions(truth, truth.end)
    n_true = n_detected = matched = 0
    errors: list[float] = []
    for bay in sorted(set(detected) | set(expected)):
        found = detected.get(bay, [])
        wanted = expected.get(bay, [])
        used: set[int] = set()
        for arrival, departure in wanted:
            for i, (d_arrival, d_departure) in enumerate(found):
                if i in used:
                    continue
                if (
                    abs(d_arrival - arrival) <= tolerance_ms
                    and abs(d_departure - departure) <= tolerance_ms
                ):
                    used.add(i)
                    matched += 1
                    n_true += 1
                    n_detected += 1
                    errors.append(abs(d_arrival - arrival) / 1000)
                    if departure != truth.end:
                        errors.append(abs(d_departure - departure) / 1000)
                    break
            else:
                n_true += arrival < cutoff  # too close to the end to be confirmed: no miss
        n_detected += sum(1 for i, s in enumerate(found) if i not in used and s[0] < cutoff)
    return Score(n_true, n_detected, matched, tuple(errors))


def score_capture(directory: str | Path, factory: DetectorFactory = Detector) -> Score:
    """Replay ``DIR/capture.jsonl`` with ``DIR/edge.yaml`` through a detector, scored against
    ``DIR/truth.json`` (the layout ``kerbside-sim capture`` writes)."""
    folder = Path(directory)
    config: EdgeConfig = load_edge_config(folder / "edge.yaml")
    truth = load_truth(folder / "truth.json")
    detector = factory(config.detector, config.bay_of_sensor)
    changes = list(
        replay_changes(read_capture(folder / "capture.jsonl"), config, detector=detector)
    )
    confirm = max(config.detector.confirm_occupied_s, config.detector.confirm_vacant_s)
    return score_sessions(changes, truth, confirm_s=confirm)


def score_baseline(directory: str | Path) -> Score:
    """The same, for the baseline that only debounces the firmware's DETECT bit."""
    return score_capture(directory, DetectBitDetector)
