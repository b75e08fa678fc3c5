"""The bay detector: valid frames in, confirmed occupancy changes out. No I/O, no clock.

What the detector may count on (the sensor protocol): a frame on every DETECT change or move of
more than 20 mG, and a keep-alive at least once a minute. So a reading stands for the field until
the next one, and consecutive ``seq`` numbers prove that no frame came between two readings.
Some firmware also repeats a changed reading a few seconds later; that is evidence when it comes,
never a requirement. The physics (levels, what a reading says) is in ``kerbside.edge.field``;
the candidate change and its phases in ``kerbside.edge.candidate``; the first level after start
in ``kerbside.edge.first_level``; what is kept per bay (a view for ``status``, the levels saved
across a restart) in ``kerbside.edge.memory``.

Confirmation is by time held, not by frames: a new state is confirmed once it has held
``confirm_*_s`` since it began (since its first reading, or since the onset just before it if
no frame was lost between them), at that deadline, if no reading said otherwise by then and it
is more than a passing car (35-90 mG for 1-4 s, one step at one sample a second) could give: it
built up over readings (a car pulls in or out in seconds), or a later reading showed it still
there more than a passing car lasts, or its step is bigger than a passing car's, or a departure
landed on the vacant level expected. A small step is never confirmed sooner than a passing car
lasts after its first reading. A single small step with nothing since is exactly what a passing
car looks like when the frame of its going was lost, so that one waits (``WAITING``) for the next
frame: a frame whose ``seq`` follows proves the reading stood until it, and confirms the change
then, whatever the frame says (a stay shorter than a keep-alive is never lost). A contrary
reading before the deadline cancels the change, or, if it lasts no longer than a passing car
with the field back where it was after it, suspends it. After lost frames (a seq gap, or a
reboot) the time the previous reading held is unknown: it is not folded into a level, it proves
nothing, and a reading that moved is a new change (unless it came seconds later, further the way
the change was going: a frame lost while a car pulled in).

The event's ``ts`` is the change's onset: the first reading off the old level, if that came just
before (a car starting to pull in); ``confirmed_ts`` is the exact instant the change was
confirmed, a deadline or a frame's time, never the time a caller happened to call ``tick``, so
``run`` and ``replay`` agree to the millisecond.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping
from typing import Any

from kerbside.core.instants import Instant
from kerbside.edge import first_level, memory
from kerbside.edge.arrival import Arrival
from kerbside.edge.candidate import Candidate, CandidatePhase, Reading
from kerbside.edge.config import DetectorConfig
from kerbside.edge.field import Tuning, Vector, dist
from kerbside.edge.first_level import StreetEvidence
from kerbside.edge.memory import BayView
from kerbside.edge.model import (
    FLAG_DETECT,
    FLAG_FAULT,
    Frame,
    OccupancyChange,
    State,
)
from kerbside.edge.track import FirstLevel, SensorStats, SensorTrack

__all__ = [
    "BayView",
    "CandidatePhase",
    "Detector",
    "FirstLevel",
    "SensorStats",
    "Tuning",
]

_CANDIDATE = 0
_SILENCE = 1


class Detector:
    """Per-bay occupancy from sensor frames.

    ``observe(frame, now)`` and ``tick(now)`` return changes ordered by ``confirmed_ts``;
    ``next_deadline()`` says when ``tick`` next has something to do. ``stats`` holds the health
    counters per configured sensor; ``unknown_sensors`` counts frames from any other sensor;
    ``bay(sensor_id)`` shows a bay's phase and levels.
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
        t = self._tuning = tuning or Tuning()
        self._blip_ms = round(t.blip_s * 1000)
        self._backdate_ms = round(t.backdate_s * 1000)
        self._tracks = {sid: SensorTrack(sid, bay, t) for sid, bay in bay_of_sensor.items()}
        self.stats: dict[str, SensorStats] = {s: tr.stats for s, tr in self._tracks.items()}
        self.unknown_sensors = 0
        self.street = StreetEvidence(t)
        self._heap: list[tuple[Instant, int, int, str, int]] = []
        self._order = 0
        self._now: Instant | None = None

    # ---- public API -------------------------------------------------------------------------

    def observe(self, frame: Frame, now: Instant) -> list[OccupancyChange]:
        if self._now is not None and now < self._now:
            now = self._now  # a caller's clock stepping back must not reorder events
        self._now = now
        heap = self._heap
        out = self._fire(now) if heap and heap[0][0] <= now else []
        track = self._tracks.get(frame.sensor_id)
        if track is None:
            self.unknown_sensors += 1
            return out
        chained = self._account(track, frame, now)
        if chained is None:
            return out  # a duplicate
        flags = frame.flags
        if flags & FLAG_FAULT:
            track.drop_candidates()
            first_level.release(track)
            track.publish("unknown", "sensor_fault", now, now, out)
            return out
        cand = track.cand
        if chained and cand is not None and cand.phase is CandidatePhase.WAITING:
            # The reading it waited on stood until this frame, past its deadline: it held.
            self._confirm_candidate(track, cand, now, out)
        detect = bool(flags & FLAG_DETECT)
        field: Vector = (float(frame.mx), float(frame.my), float(frame.mz))
        bay = track.bay
        held = track.held
        if held and not track.history:  # back from a silence or a fault
            first_level.resume(track, field)
            held = track.held
        fresh = bay.provisional  # no reading since the level was set
        relevelled = fresh and bay.reaches_target(field)
        last_field, last_t = track.last_field, track.last_t
        if chained and not relevelled and last_field is not None and track.last_class == bay.mode:
            # The previous reading held until now: fold it into the level it belongs to.
            bay.commit(last_field, (now - last_t) / 1000, now)
        stood = (
            last_field is not None
            and now - last_t >= self._backdate_ms
            and dist(field, last_field) <= self._tuning.moved_mg
        )
        relevel = bay.looks_inverted(field, last_t, track.verified, held, stood)
        state: State = "occupied" if relevel else bay.classify(field, held, fresh)
        level = bay.base if bay.mode == "vacant" else bay.occ
        if level is None or dist(field, level.vector) < self._tuning.onset_mg:
            track.onset = None
        else:
            # The first of a streak of readings going off the level, each further the same way,
            # seconds apart (or with frames lost in between): a change beginning (a car pulling
            # in or out), not a reading a little off the level. A keep-alive less than a step
            # on from the streak's one reading goes on with it: the field may have got there
            # just after it.
            onset = track.onset
            if (
                onset is None
                or (
                    now - onset[0] > self._backdate_ms
                    and chained
                    and not (onset[0] == last_t and dist(field, onset[1]) <= self._tuning.report_mg)
                )
                or not bay.continues(onset[1], field)
            ):
                track.onset = (now, field)
        track.last_field = field
        track.last_class = "unknown" if relevel else state  # unknown: fold into no level
        track.last_t = now
        cand = track.cand
        published = track.published
        if (
            cand is not None
            or track.suspended is not None
            or relevel
            or state != bay.mode
            or not ((held and track.history) or (published[0] == state and published[1] is None))
        ):
            reading = Reading(
                now, field, detect, chained, state, relevel, last_field, last_t, stood
            )
            self._step(track, reading, out)
        # (else: a reading on the level believed and published, nothing pending: no step)
        if track.held:
            if self.street.detect_trusted():
                first_level.resolve_by_detect(track, now, out)
            elif self.street.street_was_empty():
                first_level.resolve_as_believed(track, now, out)
        if heap and heap[0][0] <= now:
            out.extend(self._fire(now))  # a zero confirm time confirms at once
        return out

    def _account(self, track: SensorTrack, frame: Frame, now: Instant) -> bool | None:
        """Count a valid frame in the sensor's health and arm its silence; None for a frame
        dropped (a duplicate, or one delivered after a later one: its reading is older than one
        taken), else whether its seq follows the previous frame's (no frame lost, no reboot
        between)."""
        stats = track.stats
        arrival, lost = track.recent.arrive(frame, now)
        if arrival is Arrival.DUPLICATE:
            stats.duplicates += 1
            return None
        if arrival is Arrival.LATE:
            return None  # counted among the lost when the frame after it came
        stats.lost_frames += lost
        stats.frames += 1
        stats.last_seen = now
        stats.battery_mv = frame.battery_mv
        stats.temp_c = frame.temp_c
        if not track.silence_armed:
            track.silence_armed = True
            self._push(now + self._silence_ms, _SILENCE, track.sensor_id, 0)
        track.last_valid = now  # an armed silence entry moves on lazily, when it comes due
        return arrival is Arrival.NEXT

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

    def note_rssi(self, sensor_id: str, rssi: int | None) -> None:
        """Record a radio sensor's signal strength for health (the BLE source calls this)."""
        track = self._tracks.get(sensor_id)
        if track is not None:
            track.stats.rssi = rssi

    def state_of(self, sensor_id: str) -> State:
        """The state last published for a sensor's bay (``unknown`` before the first)."""
        return self._tracks[sensor_id].published[0]

    def bay(self, sensor_id: str) -> BayView:
        """What the detector holds for a configured sensor's bay (KeyError for any other)."""
        return memory.view(self._tracks[sensor_id])

    def bays(self) -> list[BayView]:
        """``bay`` of every configured sensor, in configuration order."""
        return [self.bay(sensor_id) for sensor_id in self._tracks]

    def snapshot(self, now: Instant) -> dict[str, Any]:
        """What the detector has learned per sensor (levels, state, signature), JSON-able, for
        ``restore`` after a restart. Sensors not yet known, or held, are left out."""
        return memory.snapshot(self._tracks.values(), now)

    def restore(self, data: Mapping[str, Any], now: Instant) -> int:
        """Take back what ``snapshot`` saved, if younger than ``silence_s`` (a sensor may have
        seen anything in a longer gap); the number of sensors restored. The belief is restored,
        not what was published: each bay is still ``unknown`` until its first confirmation.
        Raises ValueError, KeyError or TypeError on data that is not a snapshot."""
        saved_at = int(data["saved_at"])
        if data.get("v") != 1 or not 0 <= now - saved_at < self._silence_ms:
            return 0
        return memory.restore(self._tracks, data["sensors"], self._tuning.tau_s)

    # ---- candidates --------------------------------------------------------------------------

    def _step(self, track: SensorTrack, r: Reading, out: list[OccupancyChange]) -> None:
        """Move the candidate along for one classified reading."""
        moved = self._tuning.moved_mg
        suspended = track.suspended
        if suspended is not None:
            track.suspended = None
            if (
                r.t - track.suspended_at <= self._blip_ms
                and suspended.state == r.state
                and suspended.relevel == r.relevel
                and dist(r.field, suspended.last_field) <= moved
            ):
                # Back where it was before a reading that lasted no longer than a passing car:
                # that reading was one, and the candidate it interrupted goes on.
                suspended.phase = CandidatePhase.PENDING
                suspended.run_from, suspended.run_field = r.t, r.field
                track.cand = suspended
                self._support(track, suspended, r, track.suspended_at, out)
                if track.cand is suspended:
                    self._arm(track, suspended, r.t, out)
                return
        cand = track.cand
        bay = track.bay
        # (held: nothing is published, but the level is believed once its history began)
        believed = (track.held and bool(track.history)) or track.published == (r.state, None)
        if not r.relevel and r.state == bay.mode and believed:
            if cand is not None:
                self._interrupt(track, r.t)
            return
        # After lost frames a reading that moved is no evidence the state held: what was lost
        # may have been its end (a passing car leaving), and this reading a new change; unless
        # it came seconds later, further on the way the change was going (a frame lost while a
        # car pulled in).
        prev = r.prev_field
        broken = (
            not r.chained
            and prev is not None
            and dist(r.field, prev) > moved
            and not (r.t - r.prev_t <= self._backdate_ms and bay.continues(prev, r.field))
        )
        if cand is not None and cand.state == r.state and cand.relevel == r.relevel and not broken:
            self._support(track, cand, r, r.t, out)
            return
        if cand is not None:
            self._interrupt(track, r.t)
        # A re-levelling told by a reading that repeats the one before it (see
        # ``looks_inverted``) began by then, and has held since if no frame was lost between.
        start = since = r.t
        if r.relevel and r.stood:
            start = r.prev_t
            if r.chained:
                since = start
        # The change began at the streak's first reading off the old level, if this reading is
        # further along the way that one went (a car pulling in or out, not noise or a passing
        # car), and if that was recent, or was the reading just before frames were lost (they
        # would have shown the change going on), or is the one reading of the streak and this
        # one a keep-alive less than a step on (a move since it would have been sent). It has
        # held since then only if no frame was lost since: after a gap, only since this reading.
        onset = track.onset if r.state != bay.mode or r.relevel else None
        if onset is not None and onset[0] < r.t and bay.continues(onset[1], r.field):
            recent = r.t - onset[0] <= self._backdate_ms
            if recent or not r.chained or onset[0] == r.prev_t:
                start = onset[0]
            if recent and r.chained:
                since = onset[0]
        level = bay.level()
        cand = Candidate(
            state=r.state,
            relevel=r.relevel,
            start=start,
            since=since,
            first=r.t,
            last=r.t,
            last_field=r.field,
            small=(
                (r.state != bay.mode or r.relevel)  # a change: not a first level, nor a return
                and bay.step_size(r.field) <= self._tuning.passing_mg
                and not (r.state == "vacant" and bay.landed(r.field))
            ),
            run_from=r.t,
            run_field=r.field,
            origin=r.field if level is None else level.vector,
            detect=r.detect,
        )
        track.cand = cand
        self._arm(track, cand, r.t, out)

    def _interrupt(self, track: SensorTrack, now: Instant) -> None:
        cand = track.cand
        if cand is not None:
            cand.phase = CandidatePhase.SUSPENDED
        track.suspended = cand
        track.suspended_at = now
        track.cand = None
        track.cand_gen += 1

    def _support(
        self,
        track: SensorTrack,
        cand: Candidate,
        r: Reading,
        held_until: Instant,
        out: list[OccupancyChange],
    ) -> None:
        """Another reading in the candidate's state: maybe the evidence it was waiting for."""
        cand.support(r.field, r.detect, r.t, held_until)
        if cand.phase is CandidatePhase.WAITING and not self._may_be_passing_car(cand):
            self._confirm_candidate(track, cand, r.t, out)

    def _may_be_passing_car(self, cand: Candidate) -> bool:
        return cand.may_be_passing_car(self._blip_ms, self._tuning.report_mg)

    def _arm(
        self, track: SensorTrack, cand: Candidate, now: Instant, out: list[OccupancyChange]
    ) -> None:
        """Schedule a (new or resumed) candidate's confirmation."""
        track.cand_gen += 1
        due = cand.since + self._confirm[cand.state]
        if cand.small:  # a passing car's field is gone within blip_s of its first reading
            due = max(due, cand.first + self._blip_ms)
        if due > now or (due == now and cand.phase is CandidatePhase.PENDING):
            self._push(due, _CANDIDATE, track.sensor_id, track.cand_gen)
        elif not self._may_be_passing_car(cand):
            self._confirm_candidate(track, cand, now, out)
        else:
            cand.phase = CandidatePhase.WAITING  # for the next frame

    def _confirm_candidate(
        self, track: SensorTrack, cand: Candidate, at: Instant, out: list[OccupancyChange]
    ) -> None:
        track.drop_candidates()
        state = cand.state
        field, held = cand.level(at)
        bay = track.bay
        if bay.mode == "unknown":
            first_level.take_first_level(track, cand, field, held, at, self.street, out)
            return
        resumed = track.held and not track.history  # back on its level after silence or FAULT
        if state != bay.mode or cand.relevel:
            self.street.note_step(track, cand.detect_level(at))
        if cand.relevel:
            # The level taken for a car was the empty bay: a car over it now reads far from both.
            # The "car" believed there was none; this one is a new arrival, a session of its own.
            bay.invert()
            if track.first is FirstLevel.HELD:
                track.first = FirstLevel.HELD_INVERTED
            track.publish("vacant", None, cand.start, at, out)
        if state != bay.mode:
            if state == "vacant":
                track.verified = track.verified or bay.signature is not None
            bay.settle(state, field, held / 1000, at)
            track.onset = None  # a streak off the old level is no onset off the new one
            # The latest reading goes into the new level later, unless it was not taken as it.
            track.last_class = state if field is cand.last_field else "unknown"
        track.publish(state, None, cand.start, at, out)
        if resumed:
            first_level.take_back(track, cand.detect_level(at), at, out)
        if track.held:
            first_level.resolve(track, at, self.street, out)

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
                if self._may_be_passing_car(cand):
                    cand.phase = CandidatePhase.WAITING  # for the next frame
                else:
                    self._confirm_candidate(track, cand, deadline, out)
            elif track.silence_armed and track.last_valid is not None:
                due = track.last_valid + self._silence_ms
                if due > deadline:  # frames came since it was set: it moves on
                    self._push(due, _SILENCE, sensor_id, 0)
                    continue
                track.silence_armed = False  # until the next frame
                track.drop_candidates()
                first_level.release(track)
                track.publish("unknown", "sensor_silent", track.last_valid, deadline, out)
        return out
