"""The edge detector over simulated streets, scored against their ground truth (for tests and
bench/): this is the one place that runs a program of one root (edge) over the output of
another (the simulator), so it lives beside the tests, not in either."""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kerbside.core.instants import Instant
from kerbside.edge.capture import BadCaptureLine, CaptureRecord, read_capture
from kerbside.edge.config import EdgeConfig, load_edge_config
from kerbside.edge.detector import Detector, Tuning
from kerbside.edge.model import Frame, OccupancyChange
from kerbside.edge.replay import replay_changes
from kerbside.sim.baseline import DetectBitBaseline
from kerbside.sim.capture import write_capture
from kerbside.sim.score import Score, score_sessions, window_truth
from kerbside.sim.street import SimConfig, SimStreet
from kerbside.sim.truth import Truth, load_truth

RAMP_MS = 10_000  # a car pulling in or out: readings this near a step belong to neither level


@dataclass(frozen=True)
class SimRun:
    directory: Path  # capture.jsonl, edge.yaml and truth.json, as ``kerbside-sim capture`` writes
    baseline: Score  # the DETECT-bit baseline over the frames that reached the gateway


def simulate(out: Path, hours: float, **config: Any) -> SimRun:
    """Simulate a street (``SimConfig`` fields) for ``hours`` into ``out``; the baseline is fed
    the same run's frames, so the street is simulated once."""
    street = SimStreet(SimConfig(hours=hours, **config))
    baseline = DetectBitBaseline([s.bay_id for s in street.sensors])
    _, end = write_capture(street, hours, out, tap=baseline.feed)
    truth = load_truth(out / "truth.json")
    return SimRun(out, score_sessions(baseline.changes(end), truth))


def _confirm_s(config: EdgeConfig) -> float:
    return max(config.detector.confirm_occupied_s, config.detector.confirm_vacant_s)


def _records_from(path: Path, start: int) -> list[CaptureRecord | BadCaptureLine]:
    return [r for r in read_capture(path) if isinstance(r, BadCaptureLine) or r.t >= start]


def score_capture(directory: Path, *, skip_s: float = 0.0, tuning: Tuning | None = None) -> Score:
    """Replay ``directory``'s capture through the agent's parser and detector (as ``kerbside-edge
    replay`` does) and score it. ``skip_s``: start that long after the capture's start, with
    whatever is parked then."""
    config = load_edge_config(directory / "edge.yaml")
    truth = load_truth(directory / "truth.json")
    start = truth.start + round(skip_s * 1000)
    detector = Detector(config.detector, config.bay_of_sensor, tuning)
    records = _records_from(directory / "capture.jsonl", start)
    changes = list(replay_changes(records, config, detector=detector))
    return score_sessions(
        changes, window_truth(truth, start), confirm_s=_confirm_s(config), late_start=skip_s > 0
    )


def score_restart(directory: Path, *, skip_s: float, gap_s: float = 60.0) -> Score:
    """As ``score_capture(directory, skip_s=skip_s)``, but the detector is a restarted one: an
    agent ran until ``gap_s`` before the window, saved its detector (``snapshot``), and the new
    one took it back (``restore``) at the window start, as a gateway's agent does."""
    config = load_edge_config(directory / "edge.yaml")
    truth = load_truth(directory / "truth.json")
    start = truth.start + round(skip_s * 1000)
    stopped = start - round(gap_s * 1000)
    before = Detector(config.detector, config.bay_of_sensor)
    records = list(read_capture(directory / "capture.jsonl"))
    early = (r for r in records if isinstance(r, BadCaptureLine) or r.t < stopped)
    for _ in replay_changes(early, config, detector=before):
        pass
    detector = Detector(config.detector, config.bay_of_sensor)
    detector.restore(before.snapshot(stopped), start)
    late = (r for r in records if isinstance(r, BadCaptureLine) or r.t >= start)
    changes = list(replay_changes(late, config, detector=detector))
    return score_sessions(
        changes, window_truth(truth, start), confirm_s=_confirm_s(config), late_start=True
    )


class _Tap(Detector):
    """The detector, noting when each sensor's DETECT bit was off."""

    def __init__(self, config: EdgeConfig) -> None:
        super().__init__(config.detector, config.bay_of_sensor)
        self.detect_off: dict[str, list[Instant]] = defaultdict(list)

    def observe(self, frame: Frame, now: Instant) -> list[OccupancyChange]:
        if not frame.detect:
            self.detect_off[frame.sensor_id].append(now)
        return super().observe(frame, now)


@dataclass(frozen=True)
class ColdStart:
    """What a fresh start over parked cars on a drifted street leaves no detector to tell.

    A bay is undecidable when its window shows at most one step (by the truth) and no reading
    with DETECT off away from that step: a level held throughout with DETECT on is a parked car
    or an empty bay whose field drifted past the firmware's threshold, and one step between two
    such levels is a car leaving or one arriving (the same fields, time reversed). ``ceiling``
    is the session F1 of a detector that decides every other session right and guesses none of
    these (publishes nothing for them)."""

    true_sessions: int
    undecidable: int  # true sessions on undecidable bays
    bays: frozenset[str]  # the undecidable bays
    changes: tuple[OccupancyChange, ...]  # what the agent's detector published

    @property
    def ceiling(self) -> float:
        return f1_ceiling(self.true_sessions, self.undecidable)


def f1_ceiling(true_sessions: int, undecidable: int) -> float:
    """Session F1 with every session told right but ``undecidable`` ones, which are missed."""
    told = true_sessions - undecidable
    return 2 * told / (true_sessions + told) if true_sessions else 1.0


def _undecidable(truth: Truth, bay: str, off: list[Instant]) -> bool:
    steps = [s.arrival for s in truth.sessions if s.bay_id == bay and s.arrival > truth.start]
    steps += [s.departure for s in truth.sessions if s.bay_id == bay and s.departure is not None]
    return len(steps) <= 1 and all(any(abs(t - x) <= RAMP_MS for x in steps) for t in off)


def cold_start(directory: Path, *, skip_s: float) -> ColdStart:
    """Replay ``directory``'s capture from ``skip_s`` in, as ``score_capture`` does, and say
    which sessions no detector could tell from what the sensors sent (see ``ColdStart``)."""
    config = load_edge_config(directory / "edge.yaml")
    start = load_truth(directory / "truth.json").start + round(skip_s * 1000)
    truth = window_truth(load_truth(directory / "truth.json"), start)
    tap = _Tap(config)
    records = _records_from(directory / "capture.jsonl", start)
    changes = tuple(replay_changes(records, config, detector=tap))
    confirm_s = _confirm_s(config)
    # Every session told right, as it happened (those near the end count only when told).
    told = sorted(
        [
            OccupancyChange(s.bay_id, s.sensor_id, "occupied", s.arrival, s.arrival)
            for s in truth.sessions
        ]
        + [
            OccupancyChange(s.bay_id, s.sensor_id, "vacant", s.departure, s.departure)
            for s in truth.sessions
            if s.departure is not None
        ],
        key=lambda c: c.ts,
    )
    total = score_sessions(told, truth, confirm_s=confirm_s, late_start=True).true_sessions
    bays = frozenset(
        bay
        for sensor, bay in config.bay_of_sensor.items()
        if _undecidable(truth, bay, tap.detect_off[sensor])
    )
    alone = dataclasses.replace(truth, sessions=[s for s in truth.sessions if s.bay_id in bays])
    undecidable = score_sessions([], alone, confirm_s=confirm_s, late_start=True).true_sessions
    return ColdStart(total, undecidable, bays, changes)
