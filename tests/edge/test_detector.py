"""Detector against hand-built frame sequences: the detector contract and the physics."""

from __future__ import annotations

import itertools
import math
import random
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kerbside.edge.config import DetectorConfig
from kerbside.edge.detector import Detector, Tuning
from kerbside.edge.model import FLAG_BOOT, FLAG_DETECT, FLAG_FAULT, Frame, OccupancyChange

S = 1000  # ms
BASE = (120.0, -300.0, 380.0)
CAR = (-90.0, 140.0, 60.0)  # a signature of ~180 mG


def add(a: tuple[float, ...], b: tuple[float, ...], k: float = 1.0) -> tuple[float, float, float]:
    return (a[0] + k * b[0], a[1] + k * b[1], a[2] + k * b[2])


@dataclass
class Sensor:
    """A hand-driven sensor: each call sends one frame with the next seq at time t (seconds)."""

    detector: Detector
    sensor_id: str = "S-1"
    seq: int = 0

    def send(
        self, t: float, field: tuple[float, ...], flags: int = 0, seq: int | None = None
    ) -> list[OccupancyChange]:
        if seq is None:
            self.seq = (self.seq + 1) & 0xFFFF
            seq = self.seq
        mx, my, mz = (round(v) for v in field)
        frame = Frame(self.sensor_id, seq, flags, mx, my, mz, 3500, 12.5)
        return self.detector.observe(frame, round(t * S))


def new(confirm: float = 10, silence: float = 900) -> tuple[Detector, Sensor]:
    config = DetectorConfig(confirm_occupied_s=confirm, confirm_vacant_s=confirm, silence_s=silence)
    detector = Detector(config, {"S-1": "BAY-1", "S-2": "BAY-2"})
    return detector, Sensor(detector)


def summary(changes: list[OccupancyChange]) -> list[tuple[str, float, float, str | None]]:
    return [(c.state, c.ts / S, c.confirmed_ts / S, c.reason) for c in changes]


def settle_vacant(sensor: Sensor, until: float = 120) -> list[OccupancyChange]:
    """Vacant readings with keep-alives every 60 s from t=0."""
    out: list[OccupancyChange] = []
    t = 0.0
    while t <= until:
        out += sensor.send(t, BASE)
        t += 60
    return out


def ramp(
    sensor: Sensor,
    t0: float,
    frm: tuple[float, ...],
    to: tuple[float, ...],
    steps: int = 3,
    flags: int = 0,
) -> list[OccupancyChange]:
    out: list[OccupancyChange] = []
    for i in range(1, steps + 1):
        point = add(frm, add(to, frm, -1), i / steps)
        out += sensor.send(t0 + i - 1, point, flags)
    return out


def test_first_confirmed_state_is_published_and_arrival_departure() -> None:
    detector, sensor = new()
    out = settle_vacant(sensor)
    assert summary(out) == [("vacant", 0, 10, None)]  # the first level: no change to doubt
    parked = add(BASE, CAR)
    out = ramp(sensor, 200, BASE, parked)  # frames at 200, 201, 202
    out += sensor.send(262, parked)  # keep-alive
    out += detector.tick(400 * S)
    assert summary(out) == [("occupied", 200, 210, None)]
    out = ramp(sensor, 1000, parked, BASE)  # off the car's level at 1000, nearer empty from 1001
    out += detector.tick(1100 * S)
    assert summary(out) == [("vacant", 1000, 1010, None)]  # held 10 s since it began


def test_confirmation_does_not_depend_on_tick_frequency() -> None:
    def run(tick_every: float | None) -> list[OccupancyChange]:
        detector, sensor = new()
        out = settle_vacant(sensor)
        parked = add(BASE, CAR)
        t = 121.0
        events = [(200.0, add(BASE, CAR, 0.5)), (201.0, parked), (261.0, parked)]
        for when, field in events:
            while tick_every is not None and t + tick_every < when:
                t += tick_every
                out += detector.tick(round(t * S))
            out += sensor.send(when, field)
            t = when
        out += detector.tick(500 * S)
        return out

    assert run(None) == run(0.25) == run(3.7) == run(60)


def test_next_deadline_names_the_confirmation_instant() -> None:
    detector, sensor = new()
    sensor.send(0, BASE)
    sensor.send(6, BASE)
    assert detector.next_deadline() == 10 * S
    assert detector.tick(10 * S - 1) == []
    assert summary(detector.tick(10 * S)) == [("vacant", 0, 10, None)]
    assert detector.next_deadline() == 906 * S  # silence


@pytest.mark.parametrize("magnitude", [35, 60, 90])
@pytest.mark.parametrize("duration", [1, 2, 4])
def test_passing_car_blips_produce_nothing(magnitude: float, duration: float) -> None:
    detector, sensor = new()
    settle_vacant(sensor)
    rng = random.Random(magnitude * 10 + duration)
    direction = [rng.gauss(0, 1) for _ in range(3)]
    norm = math.sqrt(sum(d * d for d in direction))
    blip = tuple(magnitude * d / norm for d in direction)
    out = sensor.send(300, add(BASE, blip))
    out += sensor.send(300 + duration, BASE)
    out += sensor.send(360 + duration, BASE)
    out += detector.tick(1000 * S)
    assert out == []
    assert detector.state_of("S-1") == "vacant"


def test_blip_whose_end_was_lost_is_not_a_car() -> None:
    detector, sensor = new()
    settle_vacant(sensor)
    out = sensor.send(300, add(BASE, CAR, 0.4))  # a passing car, one frame
    sensor.seq += 1  # its end frame is lost on the wire
    out += detector.tick(330 * S)  # held 30 s on one reading only: not yet
    assert out == []
    out += sensor.send(362, BASE)  # the keep-alive shows the bay empty
    out += detector.tick(1000 * S)
    assert out == []


def test_single_step_bigger_than_a_passing_car_is_confirmed_at_its_deadline() -> None:
    detector, sensor = new()
    settle_vacant(sensor)
    parked = add(BASE, CAR)  # 180 mG: more than a car in the lane gives
    out = sensor.send(300, parked)  # the whole change in one frame (a car pulling in fast)
    out += detector.tick(330 * S)
    assert summary(out) == [("occupied", 300, 310, None)]


def test_blip_during_a_pending_departure_does_not_reset_it() -> None:
    detector, sensor = new()
    settle_vacant(sensor)
    parked = add(BASE, CAR)
    ramp(sensor, 200, BASE, parked)
    sensor.send(262, parked)
    out = sensor.send(1000, parked)
    out += sensor.send(1001, BASE)  # gone, in two frames
    out += sensor.send(1005, add(BASE, (50, 0, 0)))  # a passing car
    out += sensor.send(1007, BASE)
    out += detector.tick(1500 * S)
    assert summary(out) == [("vacant", 1001, 1011, None)]


def test_irregular_timing_confirms_by_time_held() -> None:
    detector, sensor = new(confirm=30)
    settle_vacant(sensor)
    parked = add(BASE, CAR)
    out = ramp(sensor, 500, BASE, parked, steps=3)
    assert out == []
    out += detector.tick(529 * S)
    assert out == []
    out += detector.tick(531 * S)
    assert summary(out) == [("occupied", 500, 530, None)]


def test_silence_goes_unknown_at_last_frame_plus_silence() -> None:
    detector, sensor = new(silence=900)
    settle_vacant(sensor)  # last frame at 120
    assert detector.tick(1019 * S) == []
    out = detector.tick(1020 * S)
    assert summary(out) == [("unknown", 120, 1020, "sensor_silent")]
    # Back: the next confirmed state is published again.
    out = sensor.send(2000, BASE)
    out += sensor.send(2003, add(BASE, (5, 0, 0)))
    out += detector.tick(2100 * S)
    assert summary(out) == [("vacant", 2000, 2010, None)]


def test_fault_frame_is_unknown_at_once() -> None:
    detector, sensor = new()
    settle_vacant(sensor)
    out = sensor.send(400, BASE, flags=FLAG_FAULT)
    assert summary(out) == [("unknown", 400, 400, "sensor_fault")]
    out = sensor.send(401, BASE, flags=FLAG_FAULT)
    assert out == []  # still faulty: nothing new
    out = sensor.send(410, BASE)
    out += sensor.send(416, BASE)
    out += detector.tick(500 * S)
    assert summary(out) == [("vacant", 410, 420, None)]


def test_boot_and_seq_restart_are_not_changes() -> None:
    detector, sensor = new()
    settle_vacant(sensor)
    parked = add(BASE, CAR)
    ramp(sensor, 200, BASE, parked)
    sensor.send(262, parked)
    detector.tick(300 * S)
    assert detector.state_of("S-1") == "occupied"
    out = sensor.send(330, parked, flags=FLAG_BOOT | FLAG_DETECT, seq=0)
    out += sensor.send(390, parked, flags=FLAG_DETECT, seq=1)
    out += sensor.send(450, parked, seq=0)  # rebooted again, its BOOT frame lost
    out += sensor.send(510, parked, seq=1)
    out += detector.tick(600 * S)
    assert out == []
    assert detector.state_of("S-1") == "occupied"
    assert detector.stats["S-1"].lost_frames == 0


def test_duplicates_are_ignored_and_counted() -> None:
    detector, sensor = new()
    sensor.send(0, BASE)
    out = sensor.send(0.05, add(BASE, CAR), seq=sensor.seq)  # same seq: a duplicate
    out += sensor.send(6, BASE)
    out += detector.tick(100 * S)
    assert summary(out) == [("vacant", 0, 10, None)]
    assert detector.stats["S-1"].duplicates == 1
    assert detector.stats["S-1"].frames == 2


def test_a_second_reboot_is_not_taken_for_a_duplicate_of_the_first() -> None:
    """Both BOOT frames have seq 0; the second reads a car that came meanwhile. It is a frame of
    its own, and the reading of the first did not stand until the seq 1 after it."""
    detector, sensor = new()
    settle_vacant(sensor)
    out = sensor.send(200, BASE, flags=FLAG_BOOT, seq=0)
    out += sensor.send(230, add(BASE, CAR), flags=FLAG_BOOT | FLAG_DETECT, seq=0)
    out += sensor.send(290, add(BASE, CAR), flags=FLAG_DETECT, seq=1)
    out += detector.tick(400 * S)
    assert summary(out) == [("occupied", 230, 240, None)]
    stats = detector.stats["S-1"]
    assert (stats.frames, stats.duplicates, stats.last_seen) == (6, 0, 290 * S)
    # The same BOOT frame twice on the line is a duplicate as any other.
    out = sensor.send(300, add(BASE, CAR), flags=FLAG_BOOT | FLAG_DETECT, seq=0)
    out += sensor.send(300.1, add(BASE, CAR), flags=FLAG_BOOT | FLAG_DETECT, seq=0)
    assert out == []
    assert (stats.frames, stats.duplicates) == (7, 1)


def test_seq_gaps_count_lost_frames_across_the_wrap() -> None:
    detector, sensor = new()
    sensor.send(0, BASE, seq=65534)
    sensor.send(60, BASE, seq=1)  # 65535 and 0 lost
    sensor.send(120, BASE, seq=2)
    stats = detector.stats["S-1"]
    assert (stats.frames, stats.lost_frames, stats.duplicates) == (3, 2, 0)
    assert stats.last_seen == 120 * S
    assert stats.battery_mv == 3500
    assert stats.temp_c == 12.5
    assert stats.rssi is None


def test_a_restart_whose_boot_frame_was_lost_is_no_gap() -> None:
    """seq 40000, then 2 a minute later: no sensor sends 25,538 frames in a minute (one a second
    at most), but one that rebooted has sent 0 and 1 since: those two were lost."""
    detector, sensor = new()
    sensor.send(0, BASE, seq=39999)
    sensor.send(60, BASE, seq=40000)
    sensor.send(120, BASE, seq=2)
    sensor.send(180, BASE, seq=3)
    assert detector.stats["S-1"].lost_frames == 2


def test_a_seq_gap_the_time_allows_is_counted_however_big() -> None:
    detector, sensor = new(silence=86_400)
    sensor.send(0, BASE, seq=40000)
    sensor.send(3600, BASE, seq=43000)  # an hour out of range: 2,999 frames lost
    sensor.send(3660, BASE, seq=9)  # then a reboot, its first nine frames lost
    sensor.send(3720, BASE, seq=30000)  # a seq that neither follows nor restarts
    sensor.send(3780, BASE, seq=30001)
    assert detector.stats["S-1"].lost_frames == 2999 + 9


def test_a_restart_without_boot_proves_nothing_of_the_reading_before() -> None:
    """After a restart the previous reading's time is unknown: a small step then is not proven
    by the frame after it, as a frame whose seq follows would prove it."""
    detector, sensor = new()
    sensor.seq = 49990
    settle_vacant(sensor)  # seq 49991..49993
    out = sensor.send(300, add(BASE, CAR, 0.4))  # 49994: a small step
    out += sensor.send(330, BASE, seq=1)  # a reboot since, its BOOT frame lost
    out += hold(sensor, 390, 600, BASE)
    out += detector.tick(600 * S)
    assert out == []  # a passing car whose going was lost, as far as anyone can tell
    assert detector.stats["S-1"].lost_frames == 1


def arrival_with_a_late_copy(
    first_seq: int, copy_at: float | None
) -> tuple[list[OccupancyChange], tuple[int, int, int]]:
    """A car pulls in over 200-202 s; the frame of 201 s comes again at ``copy_at``, after the
    one of 202 s (a scanner reporting an advert late). The changes and (frames, lost, dups)."""
    detector, sensor = new()
    sensor.seq = first_seq
    out = settle_vacant(sensor)
    for step in (1, 2, 3):
        out += sensor.send(199 + step, add(BASE, CAR, step / 3))
    if copy_at is not None:
        out += sensor.send(copy_at, add(BASE, CAR, 2 / 3), seq=(sensor.seq - 1) & 0xFFFF)
    out += hold(sensor, 262, 400, add(BASE, CAR))
    out += detector.tick(400 * S)
    stats = detector.stats["S-1"]
    return out, (stats.frames, stats.lost_frames, stats.duplicates)


@pytest.mark.parametrize("first_seq", [0, 65530])  # 65530: the car comes across the wrap
@pytest.mark.parametrize("copy_at", [202.2, 215, 231])
def test_a_late_duplicate_is_no_reboot_and_changes_nothing(first_seq: int, copy_at: float) -> None:
    """It was taken for a reboot (5 frames lost, and one more at the next frame; across the
    wrap, for a seq that neither follows nor restarts), and its older reading, come before the
    car's deadline, held the confirmation back until it came."""
    out, (frames, lost, duplicates) = arrival_with_a_late_copy(first_seq, copy_at)
    assert out == arrival_with_a_late_copy(first_seq, None)[0]
    assert summary(out) == [("vacant", 0, 10, None), ("occupied", 200, 210, None)]
    assert (frames, lost, duplicates) == (9, 0, 1)


def test_a_frame_delivered_after_the_next_one_is_dropped_and_stays_lost() -> None:
    detector, sensor = new()
    out = settle_vacant(sensor)  # seq 1-3
    out += sensor.send(200, add(BASE, CAR, 1 / 3), seq=4)
    out += sensor.send(201, add(BASE, CAR), seq=6)
    out += sensor.send(201.3, add(BASE, CAR, 2 / 3), seq=5)  # sent before 6: stale
    sensor.seq = 6
    out += hold(sensor, 262, 400, add(BASE, CAR))
    out += detector.tick(400 * S)
    assert summary(out) == [("vacant", 0, 10, None), ("occupied", 200, 210, None)]
    stats = detector.stats["S-1"]
    assert (stats.frames, stats.lost_frames, stats.duplicates) == (8, 1, 0)
    assert stats.last_seen == 382 * S


def test_a_reboot_seconds_after_the_last_frame_without_its_boot_frame_is_still_one() -> None:
    """Its seq 2 comes within seconds of seq 4, as a late frame would; but seq 2 said something
    else before: the sensor counted up to it again. Frames 0 and 1 were lost, and the small step
    of seq 4 is not proven by the frame after it."""
    detector, sensor = new()
    out = settle_vacant(sensor)  # seq 1-3
    out += sensor.send(300, add(BASE, CAR, 0.4))  # seq 4: a small step
    out += sensor.send(305, add(BASE, (3, 0, 0)), seq=2)
    sensor.seq = 2
    out += hold(sensor, 365, 600, BASE)
    out += detector.tick(600 * S)
    assert summary(out) == [("vacant", 0, 10, None)]
    stats = detector.stats["S-1"]
    assert (stats.frames, stats.lost_frames, stats.duplicates) == (9, 2, 0)


def test_unknown_sensors_are_counted_and_ignored() -> None:
    detector, _ = new()
    stranger = Sensor(detector, "S-99")
    out = stranger.send(0, BASE)
    out += detector.tick(100 * S)
    assert out == []
    assert detector.unknown_sensors == 1
    assert "S-99" not in detector.stats


def test_drift_while_vacant_is_followed() -> None:
    detector, sensor = new()
    out: list[OccupancyChange] = []
    drift = (0.0, 30.0 / 3600, 0.0)  # 30 mG an hour: the bay stays empty for 5 h
    for minute in range(300):
        out += sensor.send(minute * 60, add(BASE, drift, minute * 60))
    out += detector.tick(301 * 60 * S)
    assert summary(out) == [("vacant", 0, 10, None)]


def test_departure_after_drift_while_parked() -> None:
    """A car parks for 4 h while the field drifts 100 mG: it leaves to a new vacant level."""
    detector, sensor = new()
    settle_vacant(sensor)
    drift = (25.0 / 3600, -15.0 / 3600, 0.0)  # ~30 mG an hour
    parked = add(BASE, CAR)
    out = ramp(sensor, 200, BASE, parked)
    t = 260.0
    while t < 200 + 4 * 3600:
        out += sensor.send(t, add(parked, drift, t))
        t += 60
    vacant_now = add(BASE, drift, t)
    out += ramp(sensor, t, add(parked, drift, t), vacant_now)
    for k in range(1, 5):
        out += sensor.send(t + 60 * k, add(vacant_now, drift, 60 * k))
    out += detector.tick(round((t + 400) * S))
    assert summary(out) == [("occupied", 200, 210, None), ("vacant", t, t + 10, None)]


def hold(
    sensor: Sensor, start: float, end: float, field: tuple[float, ...], flags: int = 0
) -> list[OccupancyChange]:
    """Keep-alives every 60 s over [start, end)."""
    out: list[OccupancyChange] = []
    t = start
    while t < end:
        out += sensor.send(t, field, flags)
        t += 60
    return out


def test_neighbour_interference_is_neither_arrival_nor_departure() -> None:
    detector, sensor = new()
    settle_vacant(sensor)
    neighbour = (18.0, 12.0, -10.0)  # a neighbour's car: ~24 mG here
    out = ramp(sensor, 300, BASE, add(BASE, neighbour))
    out += hold(sensor, 362, 1000, add(BASE, neighbour))
    parked = add(add(BASE, neighbour), CAR)
    out += ramp(sensor, 1000, add(BASE, neighbour), parked)
    out += hold(sensor, 1062, 2000, parked)
    # The neighbour leaves while our car stays; then our car leaves.
    out += ramp(sensor, 2000, parked, add(BASE, CAR))
    out += hold(sensor, 2062, 3000, add(BASE, CAR))
    out += ramp(sensor, 3000, add(BASE, CAR), BASE)
    out += hold(sensor, 3062, 3300, BASE)
    out += detector.tick(3300 * S)
    assert summary(out) == [("occupied", 1000, 1010, None), ("vacant", 3000, 3010, None)]


def test_weak_car_arrives_and_leaves() -> None:
    detector, sensor = new()
    settle_vacant(sensor)
    weak = (40.0, -30.0, 20.0)  # ~54 mG
    out = ramp(sensor, 500, BASE, add(BASE, weak), steps=2)
    out += sensor.send(561, add(BASE, weak))
    out += ramp(sensor, 900, add(BASE, weak), BASE, steps=2)
    out += sensor.send(961, BASE)
    out += detector.tick(1500 * S)
    # The first frame of each ramp is only half way: the change is seen from the second, and
    # dated from the first (it went on the same way).
    assert summary(out) == [("occupied", 500, 510, None), ("vacant", 900, 910, None)]


def test_car_parked_at_start_is_set_right_by_the_next_car() -> None:
    """Started over a parked car: the first level is taken for empty, and corrected later."""
    detector, sensor = new()
    parked = add(BASE, CAR)
    out = sensor.send(0, parked)
    out += sensor.send(60, parked)
    out += ramp(sensor, 100, parked, BASE)  # the car leaves: looks like an arrival
    out += hold(sensor, 162, 1000, BASE)
    second = (60.0, 150.0, -120.0)
    out += ramp(sensor, 1000, BASE, add(BASE, second))  # another car: far from both levels
    out += hold(sensor, 1062, 2000, add(BASE, second))
    out += ramp(sensor, 2000, add(BASE, second), BASE)  # it leaves, and the bay reads empty
    out += hold(sensor, 2062, 2500, BASE)
    out += detector.tick(2500 * S)
    assert summary(out) == [
        ("vacant", 0, 10, None),  # wrong, and unknowable at start
        ("occupied", 100, 110, None),  # the same mistake, upside down
        ("vacant", 1000, 1010, None),  # set right by the second car: no car was there before it,
        ("occupied", 1000, 1010, None),  # and this one is a session of its own
        ("vacant", 2000, 2010, None),
    ]
    out = ramp(sensor, 3000, BASE, add(BASE, CAR))  # from now on the right way up
    out += hold(sensor, 3062, 3300, add(BASE, CAR))
    assert summary(out) == [("occupied", 3000, 3010, None)]


def trusting(trust: bool) -> Sensor:
    """A sensor on a street where DETECT is trusted from the start, or never."""
    tuning = Tuning(trust_steps=0, trust_flat=1.0) if trust else Tuning(trust_steps=10**9)
    return Sensor(Detector(DetectorConfig(), {"S-1": "BAY-1"}, tuning))


def test_car_parked_at_start_with_trusted_detect_is_published_occupied() -> None:
    sensor = trusting(True)
    parked = add(BASE, CAR)
    out = sensor.send(0, parked, flags=FLAG_DETECT)
    out += hold(sensor, 60, 1000, parked, flags=FLAG_DETECT)
    out += ramp(sensor, 1000, parked, BASE)  # the car leaves, DETECT goes off
    out += hold(sensor, 1062, 1300, BASE)
    out += ramp(sensor, 1300, BASE, add(BASE, CAR))  # the next car
    out += hold(sensor, 1362, 1600, add(BASE, CAR), flags=FLAG_DETECT)
    assert summary(out) == [
        ("occupied", 0, 10, None),  # DETECT is trusted on this street
        ("vacant", 1000, 1010, None),
        ("occupied", 1300, 1310, None),
    ]


def test_car_parked_at_start_under_drift_is_held_then_published_the_right_way_up() -> None:
    """DETECT on everywhere (drift): nothing is published until the second car shows that the
    first level was a car; then the whole history comes out, back-dated, never inverted."""
    sensor = trusting(False)
    parked = add(BASE, CAR)
    out = sensor.send(0, parked, flags=FLAG_DETECT)
    out += hold(sensor, 60, 1000, parked, flags=FLAG_DETECT)
    out += ramp(sensor, 1000, parked, BASE, flags=FLAG_DETECT)  # it leaves; DETECT stays on
    out += hold(sensor, 1062, 2000, BASE, flags=FLAG_DETECT)
    assert out == []
    second = (60.0, 150.0, -120.0)
    out += ramp(sensor, 2000, BASE, add(BASE, second), flags=FLAG_DETECT)
    out += hold(sensor, 2062, 2300, add(BASE, second), flags=FLAG_DETECT)
    assert [(state, ts) for state, ts, _, _ in summary(out)] == [
        ("occupied", 0),
        ("vacant", 1000),
        ("occupied", 2000),
    ]
    assert len({c.confirmed_ts for c in out}) == 1


def test_empty_bay_under_drift_is_held_until_a_car_comes_and_goes() -> None:
    sensor = trusting(False)
    out = sensor.send(0, BASE, flags=FLAG_DETECT)
    out += hold(sensor, 60, 1000, BASE, flags=FLAG_DETECT)
    out += ramp(sensor, 1000, BASE, add(BASE, CAR), flags=FLAG_DETECT)
    out += hold(sensor, 1062, 2000, add(BASE, CAR), flags=FLAG_DETECT)
    assert out == []
    out += ramp(sensor, 2000, add(BASE, CAR), BASE, flags=FLAG_DETECT)  # back to the first level
    out += hold(sensor, 2062, 2300, BASE, flags=FLAG_DETECT)
    assert [(state, ts) for state, ts, _, _ in summary(out)] == [
        ("vacant", 0),
        ("occupied", 1000),
        ("vacant", 2000),
    ]


def test_held_first_levels_are_believed_empty_once_the_street_started_empty() -> None:
    """After enough held first levels turned out empty, a new one is believed empty at once."""
    config = DetectorConfig()
    detector = Detector(config, {f"S-{i}": f"BAY-{i}" for i in range(3)}, Tuning(empty_levels=2))
    a, b, c = (Sensor(detector, f"S-{i}") for i in range(3))
    out: list[OccupancyChange] = []
    for s, t in ((a, 0), (b, 3000)):  # one after the other: a detector's clock never goes back
        out += s.send(t, BASE, flags=FLAG_DETECT)
        out += hold(s, t + 60, t + 1000, BASE, flags=FLAG_DETECT)
        out += ramp(s, t + 1000, BASE, add(BASE, CAR), flags=FLAG_DETECT)
        out += hold(s, t + 1062, t + 2000, add(BASE, CAR), flags=FLAG_DETECT)
        out += ramp(s, t + 2000, add(BASE, CAR), BASE, flags=FLAG_DETECT)
        out += hold(s, t + 2062, t + 2300, BASE, flags=FLAG_DETECT)
    assert detector.street.first_vacant == 2
    out = c.send(6000, BASE, flags=FLAG_DETECT)
    out += hold(c, 6060, 6200, BASE, flags=FLAG_DETECT)
    assert summary([x for x in out if x.sensor_id == "S-2"]) == [("vacant", 6000, 6010, None)]


def test_events_come_out_ordered_by_confirmed_ts() -> None:
    config = DetectorConfig()
    detector = Detector(config, {f"S-{i}": f"BAY-{i}" for i in range(20)})
    rng = random.Random(7)
    sensors = [Sensor(detector, f"S-{i}") for i in range(20)]
    out: list[OccupancyChange] = []
    t = 0.0
    fields = {s.sensor_id: BASE for s in sensors}
    while t < 3 * 3600:
        t += rng.uniform(0, 3)
        sensor = rng.choice(sensors)
        if rng.random() < 0.02:
            fields[sensor.sensor_id] = add(BASE, CAR) if fields[sensor.sensor_id] == BASE else BASE
        out += sensor.send(t, fields[sensor.sensor_id])
    out += detector.tick(round((t + 3600) * S))
    confirmed = [c.confirmed_ts for c in out]
    assert confirmed == sorted(confirmed)
    assert all(c.ts <= c.confirmed_ts for c in out)


frame_steps = st.lists(
    st.tuples(
        st.floats(0, 90),  # seconds since the previous frame
        st.sampled_from(["S-1", "S-2", "S-9"]),
        st.sampled_from([(0.0, 0.0, 0.0), (1.0, 1.0, 1.0), (0.3, 0.2, -0.1), (-0.5, 0.4, 0.4)]),
        st.sampled_from([0, 0, 0, FLAG_DETECT, FLAG_BOOT, FLAG_FAULT]),
        st.booleans(),  # repeat the previous seq (a duplicate)
    ),
    max_size=60,
)


@settings(max_examples=150, deadline=None)
@given(frame_steps, st.lists(st.floats(0.05, 120), min_size=1, max_size=5))
def test_changes_do_not_depend_on_when_tick_is_called(
    steps: list[tuple[float, str, tuple[float, float, float], int, bool]],
    tick_gaps: list[float],
) -> None:
    """The determinism rule: live (ticking at any rate) and replay (never ticking) agree."""

    def run(ticking: bool) -> list[OccupancyChange]:
        config = DetectorConfig(confirm_occupied_s=10, confirm_vacant_s=10, silence_s=300)
        detector = Detector(config, {"S-1": "BAY-1", "S-2": "BAY-2"})
        sensors = {sid: Sensor(detector, sid) for sid in ("S-1", "S-2", "S-9")}
        out: list[OccupancyChange] = []
        t = 0.0
        ticked = 0.0
        gap = itertools.cycle(tick_gaps)
        for delay, sid, k, flags, repeat in steps:
            t += delay
            while ticking and ticked + (g := next(gap)) < t:
                ticked += g
                out += detector.tick(round(ticked * S))
            sensor = sensors[sid]
            seq = sensor.seq if repeat and sensor.seq else None
            field = add(BASE, (CAR[0] * k[0], CAR[1] * k[1], CAR[2] * k[2]))
            out += sensor.send(t, field, flags, seq)
        out += detector.tick(round((t + 1000) * S))
        return out

    replayed = run(False)
    assert replayed == run(True)
    confirmed = [c.confirmed_ts for c in replayed]
    assert confirmed == sorted(confirmed)
    assert all(c.ts <= c.confirmed_ts for c in replayed)
    assert all(c.bay_id in ("BAY-1", "BAY-2") for c in replayed)
