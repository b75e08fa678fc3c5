"""Firmware builds (what each sends, and when) and the short-stay traffic mix."""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Sequence
from pathlib import Path

import pytest

from kerbside.sim.cli import main
from kerbside.sim.firmware import firmware_named
from kerbside.sim.kbs1 import FLAG_BOOT, FLAG_DETECT, FLAG_FAULT
from kerbside.sim.sensor import MOVE_MG, SentFrame
from kerbside.sim.serial_server import read_visits
from kerbside.sim.street import SimConfig, SimStreet, default_layout
from kerbside.sim.traffic import MIXES
from kerbside.sim.truth import Truth

HOUR = 3_600_000


def run(firmware: str, hours: float = 1.0, **more: object) -> tuple[SimStreet, Truth]:
    street = SimStreet(
        SimConfig(scenario="noisy", seed=4, sensors=30, hours=hours, firmware=firmware, **more)  # type: ignore[arg-type]
    )
    street.advance(street.config.start + round(hours * HOUR))
    return street, street.truth(street.config.start + round(hours * HOUR))


def sent_frames(street: SimStreet, hours: float = 1.0) -> dict[int, list[SentFrame]]:
    """What each sensor sent (whatever the line did to it), from a fresh run of the street."""
    fresh = SimStreet(street.config)
    serial, _ = fresh.advance(fresh.config.start + round(hours * HOUR))
    frames: dict[int, list[SentFrame]] = {}
    for emission in serial:
        frames.setdefault(emission.frame.sensor, []).append(emission.frame)
    return frames


def moved(a: SentFrame, b: SentFrame) -> float:
    return math.dist((a.mx, a.my, a.mz), (b.mx, b.my, b.mz))


def reasons(a: SentFrame, b: SentFrame, keepalive_ms: int) -> list[str]:
    """Why a firmware sent ``b`` after ``a`` (the protocol's reasons only)."""
    why = []
    if (a.flags ^ b.flags) & FLAG_DETECT:
        why.append("detect")
    if moved(a, b) > MOVE_MG:
        why.append("moved")
    earliest = keepalive_ms - firmware_named("basic").keepalive_jitter_ms
    if b.t - a.t >= earliest // 1000 * 1000:  # due at a whole sample, never later
        why.append("keep-alive")
    if b.flags & FLAG_BOOT:
        why.append("boot")
    return why


def test_basic_firmware_sends_only_what_the_protocol_promises() -> None:
    street, _ = run("basic")
    frames = sent_frames(street)
    periods = [model.keepalive_ms for model in street.models]
    assert all(50_000 <= p <= 60_000 for p in periods)
    assert len(set(periods)) > 5  # each sensor keeps its own time
    quiet: list[int] = []
    for index, sent in frames.items():
        for a, b in itertools.pairwise(sent):
            assert b.t - a.t <= 60_000 or b.flags & FLAG_BOOT
            assert reasons(a, b, periods[index]), (a, b)
            if reasons(a, b, periods[index]) == ["keep-alive"]:
                quiet.append(b.t - a.t)
    # Keep-alives come early by a random amount, never late.
    assert min(quiet) < max(quiet) <= 60_000


def test_repeating_firmware_repeats_a_change_and_basic_does_not() -> None:
    def repeats(firmware: str) -> int:
        street, _ = run(firmware)
        count = 0
        for index, sent in sent_frames(street).items():
            period = street.models[index].keepalive_ms
            for a, b in itertools.pairwise(sent):
                if not reasons(a, b, period) and not b.flags & FLAG_FAULT:
                    assert b.t - a.t in {1_000, 2_000, 4_000}  # +1, +2, +4, +8 s after it
                    count += 1
        return count

    assert repeats("repeating") > 1000
    assert repeats("basic") == 0


def test_both_firmwares_see_the_same_street() -> None:
    """Only what is sent differs: the vehicles, incidents and ground truth are the same."""
    _, basic = run("basic")
    _, repeating = run("repeating")
    assert basic == repeating
    assert len(basic.sessions) > 20


def test_basic_firmware_reports_a_fault_only_on_frames_it_sends_anyway() -> None:
    street, truth = run("basic", hours=2.0)
    frames = sent_frames(street, hours=2.0)
    index_of = {s.sensor_id: s.index for s in street.sensors}
    assert truth.faults
    for span in truth.faults:
        sent = frames[index_of[span.sensor_id]]
        during = [f for f in sent if span.start <= f.t < span.end]
        assert all(f.flags & FLAG_FAULT for f in during)
        assert len(during) <= 2 + (span.end - span.start) // 20_000  # not one per sample


@pytest.mark.parametrize("keepalive_s", [30, 12.5])
def test_a_shorter_keepalive_is_kept(keepalive_s: float) -> None:
    street, _ = run("basic", keepalive_s=keepalive_s)
    limit = round(keepalive_s * 1000)
    assert all(limit * 5 // 6 <= m.keepalive_ms <= limit for m in street.models)
    for sent in sent_frames(street).values():
        for a, b in itertools.pairwise(sent):
            assert b.t - a.t <= limit or b.flags & FLAG_BOOT


def test_short_stays_are_half_the_stays() -> None:
    _, truth = run("basic", hours=3.0, traffic="short-stays")
    mix = MIXES["short-stays"]
    stays = [s.departure - s.arrival for s in truth.sessions if s.departure is not None]
    short = [d for d in stays if d <= 75_000]
    assert len(stays) > 80
    assert 0.35 <= len(short) / len(stays) <= 0.65
    assert min(stays) >= mix.min_session_ms
    by_bay: dict[str, list[tuple[int, int | None]]] = {}
    for s in truth.sessions:
        by_bay.setdefault(s.bay_id, []).append((s.arrival, s.departure))
    for sessions in by_bay.values():
        for (_, left), (came, _) in itertools.pairwise(sessions):
            assert left is not None
            assert came - left >= mix.min_gap_ms


def capture(out: Path, *extra: str) -> Sequence[str]:
    args = ["capture", "--quiet", "--sensors", "6", "--hours", "0.2", *extra, str(out)]
    assert main(args) == 0
    return (out / "capture.jsonl").read_text().splitlines()


def test_capture_takes_the_firmware_and_traffic(tmp_path: Path) -> None:
    repeating = capture(tmp_path / "r")
    basic = capture(tmp_path / "b", "--firmware", "basic", "--traffic", "short-stays")
    assert len(basic) < len(repeating) * 0.8  # no repeats
    assert capture(tmp_path / "b2", "--firmware", "basic", "--traffic", "short-stays") == basic


def test_bad_firmware_arguments_are_one_line_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        main(["capture", "--firmware", "chatty", str(tmp_path)])
    assert "invalid choice" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["capture", "--keepalive-s", "90", str(tmp_path)])
    assert "must be 1..60 s" in capsys.readouterr().err
    with pytest.raises(ValueError, match="unknown firmware"):
        SimStreet(SimConfig(firmware="chatty"))


def test_visits_for_a_live_street_are_read_and_checked(tmp_path: Path) -> None:
    layout = default_layout(2, 0)
    good = tmp_path / "visits.json"
    good.write_text(json.dumps({"SIM-BAY-0002": [[70, 90], [20, 45]]}))
    assert read_visits(good, 1_000_000, layout) == {
        "SIM-BAY-0002": [(1_020_000, 1_045_000), (1_070_000, 1_090_000)]
    }
    for bad, message in [
        ({"SIM-BAY-0009": [[1, 20]]}, "no such bay"),
        ({"SIM-BAY-0001": [[30, 20]]}, "must not overlap"),
        ({"SIM-BAY-0001": [[10, 30], [35, 50]]}, "must not overlap"),
        ({"SIM-BAY-0001": [10, 30]}, "want"),
        ([[10, 30]], "must be an object"),
    ]:
        path = tmp_path / "bad.json"
        path.write_text(json.dumps(bad))
        with pytest.raises(ValueError, match=message):
            read_visits(path, 0, layout)
