"""The detector against the simulator's ground truth, on a few small streets (quick)."""

from __future__ import annotations

from pathlib import Path

import pytest

from kerbside.sim.cli import main as sim_main
from kerbside.sim.score import Score, score_baseline, score_capture

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
