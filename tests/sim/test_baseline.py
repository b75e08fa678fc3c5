"""The DETECT-bit baseline (over the simulator's own frames) and pure session scoring."""

from __future__ import annotations

import pytest

from kerbside.sim.baseline import BaselineChange, DetectBitBaseline
from kerbside.sim.kbs1 import FLAG_DETECT, FLAG_FAULT
from kerbside.sim.score import score_sessions
from kerbside.sim.sensor import SentFrame
from kerbside.sim.truth import Truth, TruthSession
from kerbside.sim.wire import SerialEmission, SerialFate

S = 1000


def emission(t: float, seq: int, flags: int, fate: SerialFate = "ok") -> SerialEmission:
    frame = SentFrame(round(t * S), 0, seq, flags, 0, 0, 0, 3500, 100, silent=False)
    return SerialEmission(frame.t, 0, b"", frame, fate)


def test_the_baseline_follows_the_detect_bit_alone_debounced_by_time() -> None:
    baseline = DetectBitBaseline(["BAY-1"])
    baseline.feed(
        [
            emission(0, 1, 0),
            emission(60, 2, FLAG_DETECT),  # on for 5 s only: a blip
            emission(65, 3, 0),
            emission(100, 4, FLAG_DETECT),
            emission(100.02, 4, 0, "duplicated"),  # the same seq again: ignored
            emission(105, 5, FLAG_DETECT, "lost"),  # never arrived
            emission(160, 6, FLAG_DETECT),
            emission(200, 7, 0),
            emission(300, 8, FLAG_FAULT),
        ]
    )
    assert baseline.changes(2000 * S) == [
        BaselineChange("BAY-1", "vacant", 0, 10 * S),
        BaselineChange("BAY-1", "occupied", 100 * S, 110 * S),
        BaselineChange("BAY-1", "vacant", 200 * S, 210 * S),
        BaselineChange("BAY-1", "unknown", 300 * S, 300 * S),  # FAULT; silent since: no news
    ]


def test_scoring_takes_any_detector_s_changes() -> None:
    truth = Truth(
        "clean",
        1,
        "gw",
        0,
        3600 * S,
        [],
        [TruthSession("BAY-1", "S-1", 100 * S, 200 * S)],
        [],
        [],
        [],
    )
    changes = [
        BaselineChange("BAY-1", "occupied", 101 * S, 111 * S),
        BaselineChange("BAY-1", "vacant", 203 * S, 240 * S),
    ]
    score = score_sessions(changes, truth)
    assert (score.true_sessions, score.detected_sessions, score.matched) == (1, 1, 1)
    assert score.boundary_errors_s == (1.0, 3.0)
    assert score.latencies_s == (10.0, 37.0)
    assert score.latency_p(95) == pytest.approx(35.65)
