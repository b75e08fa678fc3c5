"""The detector against the simulator's ground truth, on a few small streets (quick)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from kerbside.edge.model import OccupancyChange
from kerbside.sim.cli import main as sim_main
from kerbside.sim.score import Score, score_baseline, score_capture, score_sessions, window_truth
from kerbside.sim.truth import Truth, TruthSession

SEEDS = (21, 22)


def simulate(root: Path, scenario: str, seed: int) -> Path:
    out = root / f"{scenario}-{seed}"
    args = ["capture", "--quiet", "--scenario", scenario, "--seed", str(seed)]
    assert sim_main([*args, "--sensors", "12", "--hours", "2", str(out)]) == 0
    return out


@pytest.mark.parametrize(
    ("scenario", "floor"), [("clean", 0.97), ("noisy", 0.95), ("drifting", 0.95)]
)
def test_session_f1_against_ground_truth(tmp_path: Path, scenario: str, floor: float) -> None:
    ours = baseline = Score(0, 0, 0, ())
    for seed in SEEDS:
        street = simulate(tmp_path, scenario, seed)
        ours += score_capture(street)
        baseline += score_baseline(street)
    assert ours.true_sessions >= 10
    assert ours.f1 >= floor, (ours.precision, ours.recall)
    assert ours.boundary_p(95) <= 5.0
    if scenario == "drifting":  # drift fools the firmware's own DETECT bit
        assert baseline.f1 <= 0.6
        assert ours.f1 - baseline.f1 >= 0.3


@pytest.mark.parametrize(("scenario", "floor"), [("noisy", 0.97), ("drifting", 0.8)])
def test_session_f1_starting_with_cars_parked(tmp_path: Path, scenario: str, floor: float) -> None:
    """Replayed from 40 min in, with the cars parked then: nothing published upside down."""
    ours = Score(0, 0, 0, ())
    for seed in SEEDS:
        ours += score_capture(simulate(tmp_path, scenario, seed), skip_s=2400)
    assert ours.true_sessions >= 10
    assert ours.f1 >= floor, (ours.precision, ours.recall)
    assert ours.precision >= 0.95  # held until evidence: misses, but no false sessions


def test_late_start_scoring_counts_sessions_running_at_the_window_start() -> None:
    start, end = 3_600_000, 7_200_000
    truth = Truth("noisy", 1, "gw", 0, end, [], [], [], [], [])
    truth = dataclasses.replace(
        truth,
        sessions=[
            TruthSession("B1", "S1", 1_000_000, 5_000_000),  # running at the window start
            TruthSession("B2", "S2", 100_000, 3_650_000),  # gone before a reading could tell
            TruthSession("B3", "S3", 200_000, 300_000),  # over before the window
        ],
    )
    window = window_truth(truth, start)
    assert [(s.bay_id, s.arrival) for s in window.sessions] == [("B1", start), ("B2", start)]
    seen = [
        OccupancyChange("B1", "S1", "occupied", start + 50_000, start + 60_000),
        OccupancyChange("B1", "S1", "vacant", 5_000_500, 5_010_000),
    ]
    score = score_sessions(seen, window, late_start=True)
    assert (score.true_sessions, score.detected_sessions, score.matched) == (1, 1, 1)
    assert score.boundary_errors_s == (0.5,)  # the departure only: the arrival was before
    assert score_sessions(seen, window).matched == 0  # 50 s late, as a fresh start would be
