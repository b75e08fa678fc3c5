"""The bay detector: valid frames in, confirmed occupancy changes out (SPEC section 4). No I/O.

Physics. A magnetometer under a bay reads the earth's field plus slow drift (temperature, age)
plus, while a car stands over it, that car's signature (tens to hundreds of mG in some direction).
A sensor sends on a >20 mG move, on a DETECT flip, and otherwise once a minute, so a reading
stands for the field until the next one. The detector therefore keeps, per sensor:

- while vacant, a *baseline*: a time-weighted average of the vacant readings (each weighted by how
  long it held), with a bounded memory (``tau``) so it follows drift and small neighbour steps but
  ignores the second or two of a passing car or of a car pulling in;
- while occupied, the *occupied level* (same averaging) and the car's *signature* (occupied level
  minus the baseline at arrival, refined while the car settles). Drift shifts both levels alike,
  so the vacant field to expect now is ``occupied level - signature``: a departure is the field
  returning near it, wherever drift (or a neighbour's car that came or went meanwhile) has moved it.

An arrival is a reading far (``on_mg``) from the baseline; a departure a reading nearer the
expected vacant field than the occupied level and within its radius. The new state must then hold
for ``confirm_*_s`` of time: a contrary reading before that cancels it. Confirmation happens at the
exact instant ``start + confirm`` (not when a caller happens to tick), so live and replay agree.

Just after start nothing is known: the first level is taken as the empty bay's (the DETECT bit
cannot say, since drift fools it). If a car was parked then, the belief starts upside down; it is
set right at the next arrival (see ``_relevel_if_inverted``). DETECT is not used at all.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Mapping
from dataclasses import dataclass

from kerbside.core.instants import Instant
from kerbside.edge.config import DetectorConfig
from kerbside.edge.model import Frame, OccupancyChange, State, UnknownReason

Vector = tuple[float, float, float]

_CANDIDATE = 0
_SILENCE = 1


@dataclass(frozen=True, slots=True)
class Tuning:
    """Thresholds of the raw-field detector (physics, not configuration)."""

    on_mg: float = 40.0  # arrival: this far from the baseline (weakest car ~55, neighbours < 30)
    onset_mg: float = 15.0  # a reading this far off the current level may be a change beginning
    backdate_s: float = 10.0  # how far back a change's onset may lie (a car pulls in in seconds)
    off_fraction: float = 0.5  # departure radius: this share of the signature (at least on_mg)
    tau_s: float = 600.0  # memory of the baseline and occupied level
    settle_s: float = 300.0  # the signature is refined for this long after an arrival


@dataclass(slots=True)
class SensorStats:
    """What health reports per sensor (cumulative since the detector started)."""

    sensor_id: str
    bay_id: str
    frames: int = 0
    lost_frames: int = 0
    duplicates: int = 0
    last_seen: Instant | None = None
    battery_mv: int | None = None
    temp_c: float | None = None
    rssi: int | None = None


class _Level:
    """A time-weighted mean with bounded memory: each reading weighs how long it held."""

    __slots__ = ("tau", "weight", "x", "y", "z")

    def __init__(self, field: Vector, tau: float) -> None:
        self.x, self.y, self.z = field
        self.weight = 0.0
        self.tau = tau

    def add(self, field: Vector, seconds: float) -> None:
        if seconds <= 0:
            return
        total = self.weight + seconds
        share = seconds / total
        self.x += (field[0] - self.x) * share
        self.y += (field[1] - self.y) * share
        self.z += (field[2] - self.z) * share
        self.weight = min(total, self.tau)

    @property
    def vector(self) -> Vector:
        return (self.x, self.y, self.z)


def _dist(a: Vector, b: Vector) -> float:
    return math.sqrt((a[0] - b[0]) ** 2 + (a[1] - b[1]) ** 2 + (a[2] - b[2]) ** 2)


class _Track:
    """Everything the detector knows about one sensor."""

    __slots__ = (
        "arrival_base",
        "arrived_at",
        "base",
        "bay_id",
        "cand_gen",
        "cand_start",
        "cand_state",
        "last_class",
        "last_field",
        "last_seq",
        "last_t",
        "last_valid",
        "mode",
        "occ",
        "off_since",
        "published",
        "sensor_id",
        "signature",
        "silence_gen",
        "stats",
        "verified",
    )

    def __init__(self, sensor_id: str, bay_id: str) -> None:
        self.sensor_id = sensor_id
        self.bay_id = bay_id
        self.stats = SensorStats(sensor_id, bay_id)
        self.mode: State = "unknown"  # the physical belief: vacant/occupied once known
        self.published: tuple[State, UnknownReason | None] = ("unknown", None)
        self.base: _Level | None = None
        self.occ: _Level | None = None
        self.arrival_base: Vector | None = None
        self.signature: Vector | None = None
        self.arrived_at: Instant = 0
        self.last_field: Vector | None = None
        self.last_class: State = "unknown"
        self.last_t: Instant = 0
        self.last_seq: int | None = None
        self.last_valid: Instant | None = None
        self.cand_state: State | None = None
        self.cand_start: Instant = 0
        self.cand_gen = 0
        self.silence_gen = 0
        self.off_since: Instant | None = None  # first reading of the streak off the current level
        self.verified = False  # a departure back to the arrival's baseline has been seen


class Detector:
    """Per-bay occupancy from sensor frames. See the module docstring for the physics.

    ``observe(frame, now)`` and ``tick(now)`` return changes ordered by ``confirmed_ts``;
    ``next_deadline()`` says when ``tick`` next has something to do. ``stats`` holds the health
    counters per configured sensor; ``unknown_sensors`` counts frames from any other sensor.
    """

    def __init__(
        self,
        config: DetectorConfig,
        bay_of_sensor: Mapping[str, str],
        tuning: Tuning | None = None,
    ) -> None:
        self._confirm: dict[State, int] = {
            "occupied": round(config.confirm_occupied_s * 1000),
            "vacant": round(config.confirm_vacant_s * 1000),
        }
        self._silence_ms = round(config.silence_s * 1000)
        self._tuning = tuning or Tuning()
        self._tracks = {sid: _Track(sid, bay) for sid, bay in bay_of_sensor.items()}
        self.stats: dict[str, SensorStats] = {sid: t.stats for sid, t in self._tracks.items()}
        self.unknown_sensors = 0
        self._heap: list[tuple[Instant, int, int, str, int]] = []
        self._order = 0
        self._now: Instant | None = None

    # ---- public API -------------------------------------------------------------------------

    def observe(self, frame: Frame, now: Instant) -> list[OccupancyChange]:
        now = self._clock(now)
        out = self._fire(now)
        track = self._tracks.get(frame.sensor_id)
        if track is None:
            self.unknown_sensors += 1
            return out
        stats = track.stats
        if track.last_seq is not None and frame.seq == track.last_seq:
            stats.duplicates += 1
            return out
        if track.last_seq is not None and not frame.boot:
            gap = (frame.seq - track.last_seq) & 0xFFFF
            if gap < 0x8000:  # further "back" is a restart whose BOOT frame was lost
                stats.lost_frames += gap - 1
        track.last_seq = frame.seq
        stats.frames += 1
        stats.last_seen = now
        stats.battery_mv = frame.battery_mv
        stats.temp_c = frame.temp_c
        track.last_valid = now
        track.silence_gen += 1
        self._push(now + self._silence_ms, _SILENCE, track.sensor_id, track.silence_gen)
        if frame.fault:
            track.cand_state = None
            track.cand_gen += 1
            self._publish(track, "unknown", "sensor_fault", now, now, out)
            return out
        field: Vector = (float(frame.mx), float(frame.my), float(frame.mz))
        self._commit_previous(track, now)
        self._relevel_if_inverted(track, field)
        cls = self._classify(track, field)
        self._note_onset(track, field, now)
        track.last_field = field
        track.last_class = cls
        track.last_t = now
        if cls == track.mode and track.published == (cls, None):
            if track.cand_state is not None:
                track.cand_state = None
                track.cand_gen += 1
        elif track.cand_state != cls:
            track.cand_state = cls
            onset = track.off_since if cls != track.mode else None
            backdate = round(self._tuning.backdate_s * 1000)
            track.cand_start = onset if onset is not None and now - onset <= backdate else now
            track.cand_gen += 1
            self._push(now + self._confirm[cls], _CANDIDATE, track.sensor_id, track.cand_gen)
        out.extend(self._fire(now))  # a zero confirm time confirms at once
        return out

    def tick(self, now: Instant) -> list[OccupancyChange]:
        return self._fire(self._clock(now))

    def next_deadline(self) -> Instant | None:
        heap = self._heap
        while heap:
            deadline, _, kind, sensor_id, gen = heap[0]
            track = self._tracks[sensor_id]
            if gen == (track.cand_gen if kind == _CANDIDATE else track.silence_gen):
                return deadline
            heapq.heappop(heap)
        return None

    def note_rssi(self, sensor_id: str, rssi: int | None) -> None:
        """Record a radio sensor's signal strength for health (the BLE source calls this)."""
        track = self._tracks.get(sensor_id)
        if track is not None:
            track.stats.rssi = rssi

    def state_of(self, sensor_id: str) -> State:
        """The state last published for a sensor's bay (``unknown`` before the first)."""
        return self._tracks[sensor_id].published[0]

    # ---- internals ---------------------------------------------------------------------------

    def _clock(self, now: Instant) -> Instant:
        # A caller's clock stepping back must not reorder events: time here never goes back.
        if self._now is not None and now < self._now:
            return self._now
        self._now = now
        return now

    def _push(self, deadline: Instant, kind: int, sensor_id: str, gen: int) -> None:
        self._order += 1
        heapq.heappush(self._heap, (deadline, self._order, kind, sensor_id, gen))

    def _fire(self, now: Instant) -> list[OccupancyChange]:
        out: list[OccupancyChange] = []
        heap = self._heap
        while heap and heap[0][0] <= now:
            deadline, _, kind, sensor_id, gen = heapq.heappop(heap)
            track = self._tracks[sensor_id]
            if kind == _CANDIDATE:
                if gen == track.cand_gen and track.cand_state is not None:
                    self._confirm_candidate(track, deadline, out)
            elif gen == track.silence_gen and track.last_valid is not None:
                track.cand_state = None
                track.cand_gen += 1
                self._publish(track, "unknown", "sensor_silent", track.last_valid, deadline, out)
        return out

    def _publish(  # noqa: PLR0917 - a change's fields, in the order of OccupancyChange
        self,
        track: _Track,
        state: State,
        reason: UnknownReason | None,
        ts: Instant,
        confirmed_ts: Instant,
        out: list[OccupancyChange],
    ) -> None:
        if track.published == (state, reason):
            return
        track.published = (state, reason)
        out.append(OccupancyChange(track.bay_id, track.sensor_id, state, ts, confirmed_ts, reason))

    def _confirm_candidate(self, track: _Track, at: Instant, out: list[OccupancyChange]) -> None:
        state = track.cand_state
        assert state is not None
        track.cand_state = None
        field = track.last_field
        assert field is not None
        tau = self._tuning.tau_s
        if state != track.mode:
            # The latest reading starts the new level; the old level is kept for nothing.
            if state == "vacant":
                track.verified = track.verified or track.signature is not None
                track.base = _Level(field, tau)
                track.occ = None
            else:
                base = track.base
                track.arrival_base = base.vector if base is not None else None
                track.occ = _Level(field, tau)
                track.arrived_at = at
                self._refine_signature(track)
            track.mode = state
            track.last_class = state
        self._publish(track, state, None, track.cand_start, at, out)

    def _refine_signature(self, track: _Track) -> None:
        if track.arrival_base is None or track.occ is None:
            track.signature = None
            return
        o, b = track.occ, track.arrival_base
        track.signature = (o.x - b[0], o.y - b[1], o.z - b[2])

    def _commit_previous(self, track: _Track, now: Instant) -> None:
        """Fold the previous reading, which held until now, into the level of the mode it fits."""
        field = track.last_field
        if field is None or track.last_class != track.mode:
            return
        seconds = (now - track.last_t) / 1000
        if track.mode == "vacant" and track.base is not None:
            track.base.add(field, seconds)
        elif track.mode == "occupied" and track.occ is not None:
            track.occ.add(field, seconds)
            if now - track.arrived_at <= self._tuning.settle_s * 1000:
                self._refine_signature(track)

    def _note_onset(self, track: _Track, field: Vector, now: Instant) -> None:
        level = track.base if track.mode == "vacant" else track.occ
        if level is None or _dist(field, level.vector) < self._tuning.onset_mg:
            track.off_since = None
        elif track.off_since is None:
            track.off_since = now

    def _relevel_if_inverted(self, track: _Track, field: Vector) -> None:
        """Fix a belief that started upside down (a car parked when the detector started).

        Then the first "arrival" was that car leaving, and its "signature" points back to the car.
        The next car gives a level far from both the occupied level and the expected vacant one:
        the level taken for occupied was the empty bay all along. Once a departure has returned
        to its arrival's baseline the belief is verified and this never applies.
        """
        if track.verified or track.mode != "occupied" or track.occ is None:
            return
        expect = self._expected_vacant(track)
        if expect is None:
            return
        on = self._tuning.on_mg
        if _dist(field, track.occ.vector) >= on and _dist(field, expect) >= self._radius(track):
            track.base = track.occ
            track.occ = None
            track.signature = None
            track.mode = "vacant"
            track.last_class = "unknown"

    def _expected_vacant(self, track: _Track) -> Vector | None:
        sig, occ = track.signature, track.occ
        if sig is None or occ is None:
            return None
        return (occ.x - sig[0], occ.y - sig[1], occ.z - sig[2])

    def _radius(self, track: _Track) -> float:
        sig = track.signature
        size = _dist(sig, (0.0, 0.0, 0.0)) if sig is not None else 0.0
        return max(self._tuning.on_mg, self._tuning.off_fraction * size)

    def _classify(self, track: _Track, field: Vector) -> State:
        on = self._tuning.on_mg
        if track.mode == "vacant" and track.base is not None:
            return "occupied" if _dist(field, track.base.vector) >= on else "vacant"
        if track.mode == "occupied" and track.occ is not None:
            to_occ = _dist(field, track.occ.vector)
            expect = self._expected_vacant(track)
            if expect is None:  # no baseline was known at arrival: any big step away departs
                return "vacant" if to_occ >= on else "occupied"
            to_vacant = _dist(field, expect)
            return (
                "vacant" if to_vacant < self._radius(track) and to_vacant < to_occ else "occupied"
            )
        # Nothing known yet (just started): take the first level as the empty bay's.
        return "vacant"
