"""The bay detector: valid frames in, confirmed occupancy changes out (docs/gateway.md). No I/O.

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

An arrival is a reading a car's whole signature (``on_mg``) away from the baseline; a departure
a reading as far from the occupied level, nearer the vacant level expected now than the occupied
one, and within its radius. A neighbour's car moves the field less than either: its share is
followed by the levels, never taken for a change.

Confirmation is by time held, not by frames: the new state must hold for ``confirm_*_s`` from its
first reading, and a contrary reading before that cancels it. Passing cars (35-90 mG for 1-4 s)
shape the rest:

- a contrary reading that lasts no longer than a passing car, with the field back where it was
  after it, suspends the pending change rather than cancelling it;
- a change seen on one reading only (a jump in one sample, exactly what a passing car looks like
  when the frame of its going was lost on the wire) is confirmed only when a later reading in the
  same state, longer after it than a passing car lasts, says it held; or, if no reading comes, a
  keep-alive and a margin after it. A change that builds up over readings (a car pulling in or
  out takes seconds) confirms on time;
- after lost frames (a seq gap), the time the previous reading held is unknown: it is not folded
  into a level, and a reading that moved is a new change, not evidence that the old one held.

The event's ``ts`` is the change's onset: the first reading off the old level, if that came just
before (a car starting to pull in); ``confirmed_ts`` is the exact instant the change was
confirmed, a deadline or a reading's time, never the time a caller happened to call ``tick``, so
``run`` and ``replay`` agree to the millisecond.

Just after start nothing is known, and a car may have been parked for hours. The first level is
judged by the firmware's DETECT bit, which compares with the field stored at install:
- DETECT off: the empty bay (a car whose field exactly cancels the drift is rare): ``vacant``.
- DETECT on: a parked car, if DETECT can be trusted on this street (confirmed steps on all its
  sensors flipped DETECT nearly every time): ``occupied`` at once. Where drift has left DETECT on
  over empty bays, it says nothing: the level is believed empty, but what follows is *held*
  (recorded, not published) until the sensor's own steps tell which way it was. A car that came
  and went back to the first level shows it empty; a next car far from both levels believed so far
  shows it was a car (``_looks_inverted``: the belief is re-levelled and the held history published
  the other way up). Either way the history is then published with its real ``ts``: late, never
  upside down. Once held first levels on a street have mostly turned out empty (the detector
  started on an empty street), the rest are believed empty at once.
If a first level with DETECT off was a car after all, the next car re-levels the sensor as above,
at the cost of one false session.
"""

from __future__ import annotations

import dataclasses
import heapq
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kerbside.core.instants import Instant
from kerbside.edge.config import DetectorConfig
from kerbside.edge.field import Level, Tuning, Vector, dist, level_of
from kerbside.edge.model import Frame, OccupancyChange, State, UnknownReason

__all__ = ["DetectBitDetector", "Detector", "SensorStats", "Tuning"]

_MAX_HELD = 12  # readings of a candidate's run kept to find its level
_CANDIDATE = 0
_SILENCE = 1


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


@dataclass(slots=True)
class _Candidate:
    """A state change that readings argue for, until it holds (or a reading says otherwise)."""

    state: State
    relevel: bool  # a car over a bay whose belief started upside down (see _looks_inverted)
    start: Instant  # when the new state began: the event's ts
    first: Instant  # its first reading
    last: Instant  # its latest reading
    last_field: Vector
    # earlier readings of the run, each with how long it held (ms)
    held: list[tuple[Vector, int]] = dataclasses.field(default_factory=list)
    waiting: bool = False  # held long enough, but only on readings spanning a passing car
    detect: bool = False  # the firmware's DETECT bit on the latest reading
    readings: int = 0  # readings of the run ...
    detects: int = 0  # ... and how many of them had DETECT on

    @property
    def detect_level(self) -> bool:
        """The firmware's verdict on the run's level: DETECT on most of its readings."""
        return self.detects * 2 > self.readings if self.readings else self.detect


class _Track:
    """Everything the detector knows about one sensor."""

    __slots__ = (
        "arrival_base",
        "arrived_at",
        "base",
        "bay_id",
        "cand",
        "cand_gen",
        "first_detect",
        "held",
        "held_inverted",
        "history",
        "last_class",
        "last_field",
        "last_seq",
        "last_t",
        "last_valid",
        "level_detect",
        "mode",
        "occ",
        "off_since",
        "published",
        "sensor_id",
        "signature",
        "silence_armed",
        "stats",
        "suspended",
        "suspended_at",
        "verified",
    )

    def __init__(self, sensor_id: str, bay_id: str) -> None:
        self.sensor_id = sensor_id
        self.bay_id = bay_id
        self.stats = SensorStats(sensor_id, bay_id)
        self.mode: State = "unknown"  # the physical belief: vacant/occupied once known
        self.published: tuple[State, UnknownReason | None] = ("unknown", None)
        self.base: Level | None = None
        self.occ: Level | None = None
        self.arrival_base: Vector | None = None
        self.signature: Vector | None = None
        self.arrived_at: Instant = 0
        self.last_field: Vector | None = None
        self.last_class: State = "unknown"
        self.last_t: Instant = 0
        self.last_seq: int | None = None
        self.last_valid: Instant | None = None
        self.cand: _Candidate | None = None
        self.cand_gen = 0
        self.suspended: _Candidate | None = None  # interrupted by a reading that may be a blip
        self.suspended_at: Instant = 0
        self.silence_armed = False  # a silence entry is in the heap
        self.off_since: Instant | None = None  # first reading of the streak off the current level
        self.verified = False  # a departure back to the arrival's baseline has been seen
        self.level_detect: bool | None = None  # DETECT's verdict on the current level
        self.first_detect = False  # DETECT's verdict on the first level since start
        # The first level had DETECT on, which drift may explain: what is believed is not yet
        # published, only recorded (state, ts), until evidence says which way it was.
        self.held = False
        self.held_inverted = False  # a re-levelling showed the first level was a car
        self.history: list[tuple[State, Instant]] = []


def _drop_candidates(track: _Track) -> None:
    track.cand = None
    track.suspended = None
    track.cand_gen += 1


class Detector:
    """Per-bay occupancy from sensor frames. See the module docstring for the physics.

    ``observe(frame, now)`` and ``tick(now)`` return changes ordered by ``confirmed_ts``;
    ``next_deadline()`` says when ``tick`` next has something to do. ``stats`` holds the health
    counters per configured sensor; ``unknown_sensors`` counts frames from any other sensor.
    """

    _holds = True  # a first level with DETECT on is held until evidence (see _first_level)

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
        t = self._tuning = tuning or Tuning()
        self._blip_ms = round(t.blip_s * 1000)
        self._corroborate_ms = round(t.corroborate_s * 1000)
        self._fallback_ms = round(t.fallback_s * 1000)
        self._backdate_ms = round(t.backdate_s * 1000)
        self._tracks = {sid: _Track(sid, bay) for sid, bay in bay_of_sensor.items()}
        self.stats: dict[str, SensorStats] = {s: tr.stats for s, tr in self._tracks.items()}
        self.unknown_sensors = 0
        self._heap: list[tuple[Instant, int, int, str, int]] = []
        self._order = 0
        self._now: Instant | None = None
        # Confirmed steps across all sensors where DETECT flipped / stayed: whether DETECT can
        # be trusted on this street (drift since install leaves it on over empty bays).
        self.detect_flips = 0
        self.detect_flat = 0
        # Held first levels that later steps showed empty / a car: how busy the street was
        # when the detector started, for the first levels still held.
        self.first_vacant = 0
        self.first_car = 0

    # ---- public API -------------------------------------------------------------------------

    def observe(self, frame: Frame, now: Instant) -> list[OccupancyChange]:
        now = self._clock(now)
        heap = self._heap
        out = self._fire(now) if heap and heap[0][0] <= now else []
        track = self._tracks.get(frame.sensor_id)
        if track is None:
            self.unknown_sensors += 1
            return out
        stats = track.stats
        if track.last_seq is not None and frame.seq == track.last_seq:
            stats.duplicates += 1
            return out
        lost = False
        if track.last_seq is not None and not frame.boot:
            gap = (frame.seq - track.last_seq) & 0xFFFF
            if gap < 0x8000:  # further "back" is a restart whose BOOT frame was lost
                stats.lost_frames += gap - 1
                lost = gap > 1
        track.last_seq = frame.seq
        stats.frames += 1
        stats.last_seen = now
        stats.battery_mv = frame.battery_mv
        stats.temp_c = frame.temp_c
        if not track.silence_armed:
            track.silence_armed = True
            self._push(now + self._silence_ms, _SILENCE, track.sensor_id, 0)
        track.last_valid = now  # an armed silence entry moves on lazily, when it comes due
        if frame.fault:
            _drop_candidates(track)
            self._release(track)
            self._publish(track, "unknown", "sensor_fault", now, now, out)
            return out
        field: Vector = (float(frame.mx), float(frame.my), float(frame.mz))
        if not lost:  # after lost frames nobody knows how long the previous reading held
            self._commit_previous(track, now)
        relevel = self._looks_inverted(track, field)
        cls: State = "occupied" if relevel else self._classify(track, field, frame.detect)
        self._note_onset(track, field, now)
        prev_field, prev_t = track.last_field, track.last_t
        track.last_field = field
        track.last_class = "unknown" if relevel else cls  # unknown: fold into no level
        track.last_t = now
        if track.cand is not None:
            track.cand.detect = frame.detect
        self._step(track, cls, relevel, field, now, lost, prev_field, prev_t, out)
        cand = track.cand
        if cand is not None:
            cand.detect = frame.detect
            cand.readings += 1
            cand.detects += frame.detect
        if track.held:
            if self._detect_trusted():
                self._resolve_by_detect(track, now, out)
            elif self._street_was_empty():
                self._resolve_as_believed(track, now, out)
        if heap[0][0] <= now:
            out.extend(self._fire(now))  # a zero confirm time confirms at once
        return out

    def tick(self, now: Instant) -> list[OccupancyChange]:
        return self._fire(self._clock(now))

    def next_deadline(self) -> Instant | None:
        heap = self._heap
        while heap:
            deadline, _, kind, sensor_id, gen = heap[0]
            track = self._tracks[sensor_id]
            if kind == _CANDIDATE and gen == track.cand_gen:
                return deadline
            if kind == _SILENCE and track.silence_armed and track.last_valid is not None:
                due = track.last_valid + self._silence_ms
                if due == deadline:
                    return deadline
                heapq.heappop(heap)
                self._push(due, _SILENCE, sensor_id, 0)  # frames came since: it moves on
                continue
            heapq.heappop(heap)
        return None

    def snapshot(self, now: Instant) -> dict[str, Any]:
        """What the detector has learned per sensor (levels, state, signature), JSON-able, for
        ``restore`` after a restart. Sensors not yet known, or held, are left out."""
        sensors: dict[str, Any] = {}
        for sid, tr in self._tracks.items():
            if tr.mode == "unknown" or tr.held:
                continue
            sensors[sid] = {
                "mode": tr.mode,
                "base": _level_json(tr.base),
                "occ": _level_json(tr.occ),
                "arrival_base": tr.arrival_base,
                "signature": tr.signature,
                "arrived_at": tr.arrived_at,
                "verified": tr.verified,
                "level_detect": tr.level_detect,
            }
        return {"v": 1, "saved_at": now, "sensors": sensors}

    def restore(self, data: Mapping[str, Any], now: Instant) -> int:
        """Take back what ``snapshot`` saved, if younger than ``silence_s`` (a sensor may have
        seen anything in a longer gap); the number of sensors restored. The belief is restored,
        not what was published: each bay is still ``unknown`` until its first confirmation.
        Raises ValueError, KeyError or TypeError on data that is not a snapshot."""
        saved_at = int(data["saved_at"])
        if data.get("v") != 1 or not 0 <= now - saved_at < self._silence_ms:
            return 0
        tau = self._tuning.tau_s
        restored = 0
        for sid, saved in dict(data["sensors"]).items():
            track = self._tracks.get(sid)
            mode = saved["mode"]
            if track is None or track.mode != "unknown" or mode not in {"vacant", "occupied"}:
                continue
            track.mode = mode
            track.base = _level_of_json(saved["base"], tau)
            track.occ = _level_of_json(saved["occ"], tau)
            track.arrival_base = _vector_of_json(saved["arrival_base"])
            track.signature = _vector_of_json(saved["signature"])
            track.arrived_at = int(saved["arrived_at"])
            track.verified = bool(saved["verified"])
            detect = saved["level_detect"]
            track.level_detect = None if detect is None else bool(detect)
            if (mode == "vacant" and track.base is None) or (
                mode == "occupied" and track.occ is None
            ):
                track.mode = "unknown"
                continue
            restored += 1
        return restored

    def note_rssi(self, sensor_id: str, rssi: int | None) -> None:
        """Record a radio sensor's signal strength for health (the BLE source calls this)."""
        track = self._tracks.get(sensor_id)
        if track is not None:
            track.stats.rssi = rssi

    def state_of(self, sensor_id: str) -> State:
        """The state last published for a sensor's bay (``unknown`` before the first)."""
        return self._tracks[sensor_id].published[0]

    # ---- candidates --------------------------------------------------------------------------

    def _step(  # noqa: PLR0917 - one reading's facts, computed once by observe
        self,
        track: _Track,
        cls: State,
        relevel: bool,
        field: Vector,
        now: Instant,
        lost: bool,
        prev_field: Vector | None,
        prev_t: Instant,
        out: list[OccupancyChange],
    ) -> None:
        """Move the candidate along for one classified reading."""
        moved = self._tuning.moved_mg
        suspended = track.suspended
        if suspended is not None:
            track.suspended = None
            if (
                now - track.suspended_at <= self._blip_ms
                and suspended.state == cls
                and suspended.relevel == relevel
                and dist(field, suspended.last_field) <= moved
            ):
                # Back where it was before a reading that lasted no longer than a passing car:
                # that reading was one, and the candidate it interrupted goes on.
                track.cand = suspended
                self._support(track, suspended, field, now, track.suspended_at, out)
                if track.cand is suspended:
                    self._arm(track, suspended, now, out)
                return
        cand = track.cand
        believed = track.held or track.published == (cls, None)  # held: nothing published yet
        if not relevel and cls == track.mode and believed:
            if cand is not None:
                self._interrupt(track, now)
            return
        # After lost frames a reading that moved is no evidence the state held: what was lost
        # may have been its end (a passing car leaving), and this reading a new change.
        broken = lost and prev_field is not None and dist(field, prev_field) > moved
        if cand is not None and cand.state == cls and cand.relevel == relevel and not broken:
            self._support(track, cand, field, now, now, out)
            return
        if cand is not None:
            self._interrupt(track, now)
        onset = track.off_since if cls != track.mode or relevel else None
        # The change began at the streak's first reading: if that is recent, or if it is the
        # reading just before frames were lost (they would have shown the change completing)
        # and this one is where it was heading, not somewhere else.
        recent = onset is not None and (
            now - onset <= self._backdate_ms or (lost and onset == prev_t and not broken)
        )
        start = onset if onset is not None and recent else now
        cand = _Candidate(cls, relevel, start, now, now, field)
        track.cand = cand
        self._arm(track, cand, now, out)

    def _interrupt(self, track: _Track, now: Instant) -> None:
        track.suspended = track.cand
        track.suspended_at = now
        track.cand = None
        track.cand_gen += 1

    def _support(  # noqa: PLR0917
        self,
        track: _Track,
        cand: _Candidate,
        field: Vector,
        now: Instant,
        held_until: Instant,
        out: list[OccupancyChange],
    ) -> None:
        """Another reading in the candidate's state: maybe the evidence it was waiting for."""
        held = held_until - cand.last
        cand.held.append((cand.last_field, held))
        if len(cand.held) > _MAX_HELD:
            del cand.held[0]
        cand.last = now
        cand.last_field = field
        if cand.waiting and self._held(cand):
            self._confirm_candidate(track, cand, now, out)

    def _arm(
        self, track: _Track, cand: _Candidate, now: Instant, out: list[OccupancyChange]
    ) -> None:
        """Schedule a (new or resumed) candidate's confirmation."""
        track.cand_gen += 1
        due = cand.first + self._confirm[cand.state]
        if due > now or (due == now and not cand.waiting):
            self._push(due, _CANDIDATE, track.sensor_id, track.cand_gen)
        elif self._held(cand):
            self._confirm_candidate(track, cand, now, out)
        else:
            cand.waiting = True
            fallback = max(now, cand.last + self._fallback_ms)
            self._push(fallback, _CANDIDATE, track.sensor_id, track.cand_gen)

    def _held(self, cand: _Candidate) -> bool:
        """Whether the readings show more than a passing car: readings spanning longer than one,
        or a change that built up over several readings (a car pulling in or out takes seconds;
        a passing car's field comes and goes at once, and its going may be a lost frame)."""
        if cand.last - cand.first >= self._corroborate_ms:
            return True
        return self._tuning.gradual_confirms and (cand.last > cand.first or cand.start < cand.first)

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
                cand = track.cand
                if gen != track.cand_gen or cand is None:
                    continue
                if cand.waiting or self._held(cand):
                    self._confirm_candidate(track, cand, deadline, out)  # held, or fallback due
                else:
                    cand.waiting = True
                    fallback = max(deadline, cand.last + self._fallback_ms)
                    self._push(fallback, _CANDIDATE, sensor_id, gen)
            elif track.silence_armed and track.last_valid is not None:
                due = track.last_valid + self._silence_ms
                if due > deadline:  # frames came since it was set: it moves on
                    self._push(due, _SILENCE, sensor_id, 0)
                    continue
                track.silence_armed = False  # until the next frame
                _drop_candidates(track)
                self._release(track)
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
        if track.held and reason is None:
            if not track.history or track.history[-1][0] != state:
                track.history.append((state, ts))
            return
        if track.published == (state, reason):
            return
        track.published = (state, reason)
        out.append(OccupancyChange(track.bay_id, track.sensor_id, state, ts, confirmed_ts, reason))

    def _confirm_candidate(
        self, track: _Track, cand: _Candidate, at: Instant, out: list[OccupancyChange]
    ) -> None:
        track.cand = None
        track.suspended = None
        track.cand_gen += 1
        state = cand.state
        field, held = level_of([*cand.held, (cand.last_field, at - cand.last)])
        tau = self._tuning.tau_s
        detect = cand.detect_level
        if track.mode == "unknown":
            self._first_level(track, cand, field, held, at, out)
            return
        if state != track.mode or cand.relevel:
            if track.level_detect is not None:
                if detect != track.level_detect:
                    self.detect_flips += 1
                else:
                    self.detect_flat += 1
            track.level_detect = detect
        if cand.relevel:
            # The level taken for a car was the empty bay: a car over it now reads far from both.
            # The "car" believed there was none; this one is a new arrival, a session of its own.
            track.base = track.occ
            track.mode = "vacant"
            track.held_inverted = track.held
            self._publish(track, "vacant", None, cand.start, at, out)
        if state != track.mode:
            if state == "vacant":
                track.verified = track.verified or track.signature is not None
                track.base = Level(field, tau, held / 1000)
                track.occ = None
            else:
                base = track.base
                track.arrival_base = base.vector if base is not None else None
                track.occ = Level(field, tau, held / 1000)
                track.arrived_at = at
                self._refine_signature(track)
            track.mode = state
            # The latest reading goes into the new level later, unless it was not taken as it.
            track.last_class = state if field is cand.last_field else "unknown"
        self._publish(track, state, None, cand.start, at, out)
        if track.held:
            self._resolve(track, at, out)

    # ---- the first level: vacant or a car parked before the start ----------------------------

    def _detect_trusted(self) -> bool:
        """Whether DETECT tells cars from empty bays on this street: at confirmed steps across
        all sensors, it flipped nearly every time (drift leaves it on over empty bays, so a car
        coming or going leaves it on too)."""
        steps = self.detect_flips + self.detect_flat
        t = self._tuning
        return steps >= t.trust_steps and self.detect_flat + 1 <= t.trust_flat * (steps + 2)

    def _street_was_empty(self) -> bool:
        """Whether the held first levels resolved so far were nearly all empty bays: then the
        detector started on an empty street, and the rest are believed empty too."""
        resolved = self.first_vacant + self.first_car
        t = self._tuning
        return resolved >= t.empty_levels and self.first_car <= (1 - t.empty_share) * resolved

    def _resolve_as_believed(self, track: _Track, at: Instant, out: list[OccupancyChange]) -> None:
        if track.held_inverted:
            return  # _resolve publishes it, inverted, at the re-levelling
        track.held = False
        for state, ts in track.history:
            self._publish(track, state, None, ts, at, out)
        track.history = []

    def _first_level(  # noqa: PLR0917
        self,
        track: _Track,
        cand: _Candidate,
        field: Vector,
        held: int,
        at: Instant,
        out: list[OccupancyChange],
    ) -> None:
        """The first level since start: an empty bay, or a car that was parked before.

        DETECT compares with the field stored at install: off, the bay is empty (a car whose
        field cancels the drift exactly is rare). On, it is a car, unless drift has moved the
        empty field that far: trusted only once this street's steps showed DETECT flips with
        cars. Otherwise the level is believed empty but nothing is published until a step says.
        """
        tau = self._tuning.tau_s
        detect = cand.detect_level
        track.level_detect = track.first_detect = detect
        track.last_class = cand.state if field is cand.last_field else "unknown"
        if detect and self._holds and self._detect_trusted():
            track.occ = Level(field, tau, held / 1000)
            track.arrived_at = at
            track.mode = "occupied"
            self._publish(track, "occupied", None, cand.start, at, out)
            return
        track.base = Level(field, tau, held / 1000)
        track.mode = "vacant"
        track.held = detect and self._holds
        self._publish(track, "vacant", None, cand.start, at, out)

    def _resolve_by_detect(self, track: _Track, at: Instant, out: list[OccupancyChange]) -> None:
        """DETECT is trusted now: a held first level (DETECT on) was a car. If the one step
        since was believed its arrival, it was its going."""
        history = track.history
        if len(history) > 2 or track.held_inverted:
            return  # steps since say more than DETECT does: _resolve decides
        track.held = False
        _drop_candidates(track)
        first = history[0][1]
        if len(history) == 1:  # still on the first level: it is the car
            track.occ, track.base = track.base, None
            track.arrived_at = at
            track.mode = "occupied"
            track.last_class = "unknown"
            self._publish(track, "occupied", None, first, at, out)
        else:  # the "arrival" was the car leaving; the bay is empty now
            track.base, track.occ = track.occ, None
            track.arrival_base = track.signature = None
            track.mode = "vacant"
            track.last_class = "unknown"
            self._publish(track, "occupied", None, first, at, out)
            self._publish(track, "vacant", None, history[1][1], at, out)
        track.history = []

    def _resolve(self, track: _Track, at: Instant, out: list[OccupancyChange]) -> None:
        """Publish a held history once the steps since start tell which way it was."""
        if self._detect_trusted() and track.first_detect:
            self._resolve_by_detect(track, at, out)
            if not track.held:
                return
        history = track.history
        if track.held_inverted:
            # The first level was a car: every state before the re-levelling was the other one.
            track.held = track.held_inverted = False
            self.first_car += 1
            flip: dict[State, State] = {"vacant": "occupied", "occupied": "vacant"}
            *before, _, last = history
            for state, ts in before:
                self._publish(track, flip[state], None, ts, at, out)
            self._publish(track, last[0], None, last[1], at, out)
            track.history = []
        elif track.verified:
            # A departure came back to the first level: it was the empty bay.
            self.first_vacant += 1
            self._resolve_as_believed(track, at, out)

    def _release(self, track: _Track) -> None:
        """Silence or a fault: what was held is too old to publish after it, and the belief it
        was held on was never shown right: the next level is judged afresh, as at start."""
        if not track.held:
            return
        track.held = track.held_inverted = False
        track.history = []
        track.mode = track.last_class = "unknown"
        track.base = track.occ = None
        track.arrival_base = track.signature = None
        track.level_detect = None
        track.off_since = None

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
        if level is None or dist(field, level.vector) < self._tuning.onset_mg:
            track.off_since = None
        elif track.off_since is None:
            track.off_since = now

    def _looks_inverted(self, track: _Track, field: Vector) -> bool:
        """Whether a reading says the belief started upside down (a car parked at start).

        Then the first "arrival" was that car leaving, and its "signature" points back to the car.
        The next car gives a level far from both the occupied level and the expected vacant one:
        the level taken for occupied was the empty bay all along. Held for the confirmation time,
        this re-levels the sensor. Once a departure has returned to its arrival's baseline the
        belief is verified and this never applies.
        """
        if track.verified or track.mode != "occupied" or track.occ is None:
            return False
        known = self._tuning.relevel_after_s
        if track.last_t - track.arrived_at < known * 1000 or track.occ.weight < known:
            # The car may still be settling, or its level rests on a few readings (frames were
            # lost): a passing car could move it. Its level is not known well yet.
            return False
        expect = self._expected_vacant(track)
        if expect is None:
            return False
        return dist(field, track.occ.vector) >= self._tuning.on_mg and dist(
            field, expect
        ) >= self._radius(track)

    def _expected_vacant(self, track: _Track) -> Vector | None:
        sig, occ = track.signature, track.occ
        if sig is None or occ is None:
            return None
        return (occ.x - sig[0], occ.y - sig[1], occ.z - sig[2])

    def _radius(self, track: _Track) -> float:
        if track.held:
            # A return that decides a held history must come back to the first level itself,
            # not just nearer it than to a car (a next car may also be nearer).
            return self._tuning.on_mg
        sig = track.signature
        size = dist(sig, (0.0, 0.0, 0.0)) if sig is not None else 0.0
        return max(self._tuning.on_mg, self._tuning.off_fraction * size)

    def _classify(self, track: _Track, field: Vector, detect: bool) -> State:
        on = self._tuning.on_mg
        if track.mode == "vacant" and track.base is not None:
            return "occupied" if dist(field, track.base.vector) >= on else "vacant"
        if track.mode == "occupied" and track.occ is not None:
            to_occ = dist(field, track.occ.vector)
            expect = self._expected_vacant(track)
            if expect is None:  # no baseline was known at arrival: any big step away departs
                return "vacant" if to_occ >= on else "occupied"
            to_vacant = dist(field, expect)
            # A car leaving takes its whole signature away at once (a neighbour's moves less):
            # a big step from the occupied level, ending near the vacant level expected now.
            left = to_occ >= on and to_vacant < to_occ and to_vacant < self._radius(track)
            return "vacant" if left else "occupied"
        # Nothing known yet (just started): take the first level as the empty bay's.
        return "vacant"


def _level_json(level: Level | None) -> list[float] | None:
    return None if level is None else [level.x, level.y, level.z, level.weight]


def _vector_of_json(value: Any) -> Vector | None:
    if value is None:
        return None
    x, y, z = (float(v) for v in value)
    return (x, y, z)


def _level_of_json(value: Any, tau: float) -> Level | None:
    if value is None:
        return None
    x, y, z, weight = (float(v) for v in value)
    return Level((x, y, z), tau, weight)


class DetectBitDetector(Detector):
    """The naive baseline, for comparison only: the firmware's DETECT bit, debounced by time.

    Same confirmation, silence and fault handling as ``Detector``; no use of the raw field.
    """

    _holds = False

    def _looks_inverted(self, track: _Track, field: Vector) -> bool:
        return False

    def _classify(self, track: _Track, field: Vector, detect: bool) -> State:
        return "occupied" if detect else "vacant"
