"""Scoring a detector's sessions against the simulator's ground truth.

A session runs from an ``occupied`` event's ``ts`` to the next ``vacant`` or ``unknown`` event's
``ts`` (docs/rules.md). A detected session matches a true one of the same bay when both its
arrival and its departure are within the tolerance (35 s); matching is one to one. A session still
open at the end of the run ends at the run's end, on both sides. A session, true or detected,
that begins so close to the end (``confirm_s``, a keep-alive and the tolerance) that it could not
have been confirmed counts only when it was matched.

A replay may also start late (``skip_s``): the capture's records before ``truth.start + skip_s``
are dropped, as if the agent had started then, with cars already parked. The truth is restricted
to the window: a session running at its start begins at the window start, and its arrival matches
any detected one from the window start until a keep-alive and a margin after it (the sensor may
say nothing sooner); those arrivals give no boundary error. A true session ending so soon after
the window start that no reading could show it counts only when it was matched.
"""

from __future__ import annotations

import dataclasses
import statistics
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from kerbside.core.instants import Instant
from kerbside.edge.capture import CaptureError, read_capture
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
    changes: Iterable[OccupancyChange],
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
    for bay in sorted(set(detected) | set(expected)):
        found = detected.get(bay, [])
        wanted = expected.get(bay, [])
        used: set[int] = set()
        for arrival, departure in wanted:
            at_start = arrival <= early
            for i, (d_arrival, d_departure) in enumerate(found):
                if i in used:
                    continue
                if at_start:
                    arrival_ok = truth.start - tolerance_ms <= d_arrival <= early + tolerance_ms
                else:
                    arrival_ok = abs(d_arrival - arrival) <= tolerance_ms
                if arrival_ok and abs(d_departure - departure) <= tolerance_ms:
                    used.add(i)
                    matched += 1
                    n_true += 1
                    n_detected += 1
                    if not at_start:
                        errors.append(abs(d_arrival - arrival) / 1000)
                    if departure != truth.end:
                        errors.append(abs(d_departure - departure) / 1000)
                    break
            else:
                # too close to the end to be confirmed, or gone before a reading showed it
                n_true += arrival < cutoff and not (
                    late_start and departure < truth.start + late_ms
                )
        n_detected += sum(1 for i, s in enumerate(found) if i not in used and s[0] < cutoff)
    return Score(n_true, n_detected, matched, tuple(errors))


def score_capture(
    directory: str | Path, factory: DetectorFactory = Detector, *, skip_s: float = 0.0
) -> Score:
    """Replay ``DIR/capture.jsonl`` with ``DIR/edge.yaml`` through a detector, scored against
    ``DIR/truth.json`` (the layout ``kerbside-sim capture`` writes). ``skip_s``: start the
    replay that long after the capture's start, with whatever is parked then."""
    folder = Path(directory)
    config: EdgeConfig = load_edge_config(folder / "edge.yaml")
    truth = load_truth(folder / "truth.json")
    start = truth.start + round(skip_s * 1000)
    detector = factory(config.detector, config.bay_of_sensor)
    records = (
        r
        for r in read_capture(folder / "capture.jsonl")
        if isinstance(r, CaptureError) or r.t >= start
    )
    changes = list(replay_changes(records, config, detector=detector))
    confirm = max(config.detector.confirm_occupied_s, config.detector.confirm_vacant_s)
    return score_sessions(
        changes, window_truth(truth, start), confirm_s=confirm, late_start=skip_s > 0
    )


def score_restart(directory: str | Path, *, skip_s: float, gap_s: float = 60.0) -> Score:
    """As ``score_capture(directory, skip_s=skip_s)``, but the detector is a restarted one: an
    agent ran until ``gap_s`` before the window, saved its detector (``snapshot``), and the new
    one took it back (``restore``) at the window start, as a gateway's agent does."""
    folder = Path(directory)
    config: EdgeConfig = load_edge_config(folder / "edge.yaml")
    truth = load_truth(folder / "truth.json")
    start = truth.start + round(skip_s * 1000)
    stopped = start - round(gap_s * 1000)
    before = Detector(config.detector, config.bay_of_sensor)
    records = list(read_capture(folder / "capture.jsonl"))
    early = (r for r in records if isinstance(r, CaptureError) or r.t < stopped)
    for _ in replay_changes(early, config, detector=before):
        pass
    detector = Detector(config.detector, config.bay_of_sensor)
    detector.restore(before.snapshot(stopped), start)
    late = (r for r in records if isinstance(r, CaptureError) or r.t >= start)
    changes = list(replay_changes(late, config, detector=detector))
    confirm = max(config.detector.confirm_occupied_s, config.detector.confirm_vacant_s)
    return score_sessions(changes, window_truth(truth, start), confirm_s=confirm, late_start=True)


def score_baseline(directory: str | Path, *, skip_s: float = 0.0) -> Score:
    """The same, for the baseline that only debounces the firmware's DETECT bit."""
    return score_capture(directory, DetectBitDetector, skip_s=skip_s)
