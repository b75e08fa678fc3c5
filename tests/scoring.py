"""The edge detector over simulated streets, scored against their ground truth (for tests and
bench/): this is the one place that runs a program of one root (edge) over the output of
another (the simulator), so it lives beside the tests, not in either."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kerbside.edge.capture import BadCaptureLine, CaptureRecord, read_capture
from kerbside.edge.config import EdgeConfig, load_edge_config
from kerbside.edge.detector import Detector, Tuning
from kerbside.edge.replay import replay_changes
from kerbside.sim.baseline import DetectBitBaseline
from kerbside.sim.capture import write_capture
from kerbside.sim.score import Score, score_sessions, window_truth
from kerbside.sim.street import SimConfig, SimStreet
from kerbside.sim.truth import load_truth


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
