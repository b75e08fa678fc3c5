"""The street model: physics, firmware policy, faults and ground truth."""

from __future__ import annotations

import itertools
import statistics
from collections import Counter

import pytest

from kerbside.sim.firmware import MAX_KEEPALIVE_MS
from kerbside.sim.kbs1 import FLAG_BOOT, FLAG_FAULT
from kerbside.sim.street import SimConfig, SimStreet
from kerbside.sim.traffic import MIN_GAP_MS, MIN_SESSION_MS
from kerbside.sim.truth import Truth
from kerbside.sim.wire import SerialEmission
from tests.sim.simtools import detect_baseline, session_f1, valid_lines

HOUR = 3_600_000


def run(
    scenario: str, seed: int, sensors: int, hours: float = 1.0
) -> tuple[SimStreet, list[SerialEmission], Truth]:
    street = SimStreet(SimConfig(scenario=scenario, seed=seed, sensors=sensors, hours=hours))
    end = street.config.start + round(hours * HOUR)
    serial, _ = street.advance(end)
    return street, serial, street.truth(end)


@pytest.fixture(scope="module")
def noisy() -> tuple[SimStreet, list[SerialEmission], Truth]:
    return run("noisy", 7, 60)


def test_windows_do_not_change_the_result() -> None:
    one = SimStreet(SimConfig(scenario="noisy", seed=3, sensors=8, hours=1))
    many = SimStreet(SimConfig(scenario="noisy", seed=3, sensors=8, hours=1))
    start = one.config.start
    whole, _ = one.advance(start + HOUR)
    parts: list[SerialEmission] = []
    for k in range(1, 8):
        parts.extend(many.advance(start + k * HOUR // 7)[0])
    parts.sort(key=lambda e: (e.t, e.frame.sensor))
    assert [e.data for e in whole] == [e.data for e in parts]
    assert one.truth(start + HOUR) == many.truth(start + HOUR)


def test_every_clean_line_is_valid_and_every_faulty_one_is_not(noisy) -> None:  # type: ignore[no-untyped-def]
    _, serial, _ = noisy
    for e in serial:
        found = valid_lines(e.data)
        if e.fate == "ok":
            assert len(found) == 1, e
            assert found[0].group(3) == str(e.frame.seq).encode()
        elif e.fate == "duplicated":
            assert len(found) == 2
            assert found[0].group(0) == found[1].group(0)
        else:
            assert found == [], e


def test_each_port_stream_yields_exactly_the_intended_frames(noisy) -> None:  # type: ignore[no-untyped-def]
    street, serial, _ = noisy
    for port in range(len(street.port_names)):
        on_port = [e for e in serial if e.port == port]
        stream = b"".join(e.data for e in on_port)
        seqs = [(m.group(2), int(m.group(3))) for m in valid_lines(stream)]
        want = []
        for e in on_port:
            copies = {"ok": 1, "duplicated": 2}.get(e.fate, 0)
            sensor_id = street.sensors[e.frame.sensor].sensor_id.encode()
            want.extend([(sensor_id, e.frame.seq)] * copies)
        assert seqs == want


def test_fault_rates_within_tolerance(noisy) -> None:  # type: ignore[no-untyped-def]
    _, serial, _ = noisy
    fates = Counter(e.fate for e in serial if e.fate != "silent")
    total = sum(fates.values())
    assert total > 10_000
    rates = {"lost": 0.015, "corrupted": 0.01, "truncated": 0.005, "duplicated": 0.005}
    for fate, rate in rates.items():
        assert abs(fates[fate] / total - rate) < rate * 0.35, (fate, fates[fate], total)
    noisy_frames = sum(1 for e in serial if e.data and not e.data.startswith(b"$"))
    assert 0.01 < noisy_frames / total < 0.03


def test_send_policy_keepalive_seq_boot_and_fault(noisy) -> None:  # type: ignore[no-untyped-def]
    street, serial, truth = noisy
    by_sensor: dict[int, list[SerialEmission]] = {}
    for e in serial:
        by_sensor.setdefault(e.frame.sensor, []).append(e)
    reboots = {r.sensor_id: r.at for r in truth.reboots}
    faults = {f.sensor_id: f for f in truth.faults}
    for index, frames in by_sensor.items():
        sensor_id = street.sensors[index].sensor_id
        boots = [e for e in frames if e.frame.flags & FLAG_BOOT]
        assert len(boots) == 1
        assert boots[0].frame.seq == 0
        assert boots[0].t > reboots[sensor_id]
        for a, b in itertools.pairwise(frames):
            if b.frame.flags & FLAG_BOOT:
                continue
            assert b.t - a.t <= MAX_KEEPALIVE_MS
            assert b.frame.seq == (a.frame.seq + 1) % 65536
        fault_frames = [e.t for e in frames if e.frame.flags & FLAG_FAULT]
        if sensor_id in faults:
            span = faults[sensor_id]
            assert fault_frames
            assert all(span.start <= t < span.end for t in fault_frames)
        else:
            assert fault_frames == []
    wrapped = any(
        a.frame.seq == 65535 and b.frame.seq == 0
        for frames in by_sensor.values()
        for a, b in itertools.pairwise(frames)
    )
    assert wrapped


def test_truth_guarantees(noisy) -> None:  # type: ignore[no-untyped-def]
    street, serial, truth = noisy
    assert len(truth.sessions) > 50
    per_bay: dict[str, list[tuple[int, int | None]]] = {}
    for s in truth.sessions:
        assert s.arrival >= truth.start + 120_000
        if s.departure is not None:
            assert s.departure - s.arrival >= MIN_SESSION_MS
        per_bay.setdefault(s.bay_id, []).append((s.arrival, s.departure))
    for sessions in per_bay.values():
        for (_, dep), (arr, _) in itertools.pairwise(sessions):
            assert dep is not None
            assert arr - dep >= MIN_GAP_MS
    assert truth.silent
    assert all(s.end - s.start > 900_000 for s in truth.silent)
    assert truth.faults
    bay_of = {s.sensor_id: s.bay_id for s in truth.sensors}
    for span in truth.silent + truth.faults:
        for arr, dep in per_bay.get(bay_of[span.sensor_id], []):
            end = truth.end if dep is None else dep
            assert end <= span.start - 120_000 or arr >= span.end + 120_000
    silent_ids = {s.sensor_id: s for s in truth.silent}
    for e in serial:
        span = silent_ids.get(street.sensors[e.frame.sensor].sensor_id)
        if span is not None and span.start <= e.t < span.end:
            assert e.data == b""


def test_weak_cars_and_interference_present(noisy) -> None:  # type: ignore[no-untyped-def]
    street, _, _ = noisy
    magnitudes = [
        sum(c * c for c in s.signature) ** 0.5 for bay in street.bays for s in bay.sessions
    ]
    assert min(magnitudes) >= 55
    assert max(magnitudes) <= 320
    assert any(m < 70 for m in magnitudes)


@pytest.fixture(scope="module")
def drifting() -> tuple[SimStreet, list[SerialEmission], Truth]:
    return run("drifting", 11, 30)


def test_detect_only_baseline_fails_on_drifting_but_not_on_clean(drifting) -> None:  # type: ignore[no-untyped-def]
    scores = {}
    for scenario in ("clean", "drifting"):
        street, serial, truth = run("clean", 11, 30) if scenario == "clean" else drifting
        bay_of = {s.index: s.bay_id for s in street.sensors}
        scores[scenario] = session_f1(detect_baseline(serial, bay_of), truth)
    assert scores["drifting"] <= 0.5
    assert scores["clean"] >= 0.9


def test_drifting_drifts_at_least_20_mg_an_hour_and_clean_does_not(drifting) -> None:  # type: ignore[no-untyped-def]
    many = SimStreet(SimConfig(scenario="drifting", seed=2, sensors=200, hours=1))
    assert all(m.drift_mg_per_h >= 20 for m in many.models)
    assert all(m.drift_offset_mg >= 40 for m in many.models)
    # Seen in what the sensors send: a vacant bay's field walks away over the hour.
    street, serial, truth = drifting
    checked = 0
    for index in range(len(street.sensors)):
        bay = street.sensors[index].bay_id
        busy = [
            (s.arrival - 5_000, (s.departure or truth.end) + 10_000)
            for s in truth.sessions
            if s.bay_id == bay
        ]
        vacant = [
            e.frame
            for e in serial
            if e.frame.sensor == index and not any(a <= e.t < b for a, b in busy)
        ]
        if len(vacant) < 10 or vacant[-1].t - vacant[0].t < 2_400_000:
            continue
        early, late = vacant[:5], vacant[-5:]
        moved = 0.0
        for axis in ("mx", "my", "mz"):
            before = statistics.median(getattr(f, axis) for f in early)
            after = statistics.median(getattr(f, axis) for f in late)
            moved += (after - before) ** 2
        assert moved**0.5 > 10
        checked += 1
    assert checked >= 3
    clean = SimStreet(SimConfig(scenario="clean", seed=2, sensors=20, hours=1))
    assert all(m.drift_mg_per_h == 0 for m in clean.models)
