"""The first level after start: an empty bay, or a car that was parked before the detector came.

Just after start nothing is known, and a car may have been parked for hours. The first level is
judged by the firmware's DETECT bit, which compares with the field stored at install:

- DETECT off: the empty bay (a car whose field exactly cancels the drift is rare): ``vacant``.
- DETECT on: a parked car, if DETECT can be trusted on this street (confirmed steps on all its
  sensors flipped DETECT nearly every time): ``occupied`` at once. Where drift has left DETECT on
  over empty bays, it says nothing: the level is believed empty, but what follows is *held*
  (recorded, not published) until the sensor's own steps tell which way it was. A car that came
  and went back to the first level shows it empty; a next car far from both levels believed so far
  shows it was a car (``BayField.looks_inverted``: the belief is re-levelled and the held history
  published the other way up). Either way the history is then published with its real ``ts``:
  late, never upside down. Once held first levels on a street have mostly turned out empty (the
  detector started on an empty street), the rest are believed empty at once.

If a first level with DETECT off was a car after all, the next car re-levels the sensor as above,
at the cost of one false session.

What a held sensor cannot tell: a car parked throughout, or one step between two levels with
DETECT on at both (a car leaving, or one arriving over an empty bay whose field drifted past the
threshold). The field is the same either way, time reversed; only DETECT compares with the empty
bay, and where drift has left it on over empty bays it says nothing. Such a bay stays held
(``unknown``), never guessed.

A silence or a fault publishes ``unknown`` at once, so the history held before it can never be
published (it was not decided; deciding it then would be a guess). The levels and the belief stay
(``release``): a sensor that comes back on the level it held takes the belief back (``resume``),
the level judged by DETECT as a first level is (``take_back``): off, it is the empty bay; on, the
belief stays held and its history starts again there, so the sensor's next steps decide it. Back
anywhere else, the bay is judged afresh.
"""

from __future__ import annotations

from dataclasses import dataclass

from kerbside.core.instants import Instant
from kerbside.edge.candidate import Candidate
from kerbside.edge.field import Level, Tuning, Vector, dist
from kerbside.edge.model import OccupancyChange, State
from kerbside.edge.track import FirstLevel, SensorTrack

_FLIP: dict[State, State] = {"vacant": "occupied", "occupied": "vacant"}


@dataclass(slots=True)
class StreetEvidence:
    """What the street's sensors have shown so far, across all of them."""

    tuning: Tuning
    # Confirmed steps where DETECT flipped / stayed: whether DETECT can be trusted on this street
    # (drift since install leaves it on over empty bays, so a car coming or going leaves it on).
    detect_flips: int = 0
    detect_flat: int = 0
    # Held first levels that later steps showed empty / a car: how busy the street was when the
    # detector started, for the first levels still held.
    first_vacant: int = 0
    first_car: int = 0

    def detect_trusted(self) -> bool:
        """Whether DETECT tells cars from empty bays on this street: at confirmed steps across
        all sensors, it flipped nearly every time."""
        steps = self.detect_flips + self.detect_flat
        t = self.tuning
        return steps >= t.trust_steps and self.detect_flat + 1 <= t.trust_flat * (steps + 2)

    def street_was_empty(self) -> bool:
        """Whether the held first levels resolved so far were nearly all empty bays: then the
        detector started on an empty street, and the rest are believed empty too."""
        resolved = self.first_vacant + self.first_car
        t = self.tuning
        return resolved >= t.empty_levels and self.first_car <= (1 - t.empty_share) * resolved

    def note_step(self, track: SensorTrack, detect: bool) -> None:
        """A confirmed step of a sensor, with DETECT's verdict on its new level."""
        if track.level_detect is not None:
            if detect != track.level_detect:
                self.detect_flips += 1
            else:
                self.detect_flat += 1
        track.level_detect = detect


def take_first_level(  # noqa: PLR0917 - a confirmation's facts, computed once by the detector
    track: SensorTrack,
    cand: Candidate,
    field: Vector,
    held_ms: int,
    at: Instant,
    street: StreetEvidence,
    out: list[OccupancyChange],
) -> None:
    """The first level since start: DETECT off, the empty bay; on, a car where DETECT is
    trusted, and otherwise believed empty but held until a step says."""
    bay = track.bay
    tau = bay.tuning.tau_s
    detect = cand.detect_level(at)
    track.level_detect = track.first_detect = detect
    track.last_class = cand.state if field is cand.last_field else "unknown"
    if detect and street.detect_trusted():
        bay.occ = Level(field, tau, held_ms / 1000)
        bay.arrived_at = at
        bay.mode = "occupied"
        track.first = FirstLevel.BELIEVED
        track.publish("occupied", None, cand.start, at, out)
        return
    bay.base = Level(field, tau, held_ms / 1000)
    bay.mode = "vacant"
    held = detect and not street.street_was_empty()
    track.first = FirstLevel.HELD if held else FirstLevel.BELIEVED
    track.publish("vacant", None, cand.start, at, out)


def resolve_by_detect(track: SensorTrack, at: Instant, out: list[OccupancyChange]) -> None:
    """DETECT is trusted now: a held first level (DETECT on) was a car, so the belief was upside
    down (if one step since, its "arrival" was the car leaving)."""
    history = track.history
    if not history or len(history) > 2 or track.first is FirstLevel.HELD_INVERTED:
        return  # no level confirmed since a silence or a fault; or steps say more: resolve
    publish_inverted(track, at, out)


def publish_inverted(track: SensorTrack, at: Instant, out: list[OccupancyChange]) -> None:
    """The held belief was upside down: a level believed empty is the car, one believed a car
    the empty bay. The history since it was held is published the other way up."""
    track.first = FirstLevel.BELIEVED
    track.drop_candidates()
    bay = track.bay
    track.last_class = "unknown"
    if bay.mode == "vacant":  # on the first level: it is the car
        bay.occ, bay.base = bay.base, None
        bay.arrived_at = at
        bay.mode = "occupied"
    else:  # the "arrival" was the car leaving; the bay is empty now
        bay.base, bay.occ = bay.occ, None
        bay.arrival_base = bay.signature = None
        bay.mode = "vacant"
    for state, ts in track.history:
        track.publish(_FLIP[state], None, ts, at, out)
    track.history = []


def resolve_as_believed(track: SensorTrack, at: Instant, out: list[OccupancyChange]) -> None:
    """The held first level was what it was believed: publish its history as recorded."""
    if track.first is FirstLevel.HELD_INVERTED:
        return  # resolve publishes it, inverted, at the re-levelling
    track.first = FirstLevel.BELIEVED
    for state, ts in track.history:
        track.publish(state, None, ts, at, out)
    track.history = []


def resolve(
    track: SensorTrack, at: Instant, street: StreetEvidence, out: list[OccupancyChange]
) -> None:
    """Publish a held history once the steps since start tell which way it was."""
    if street.detect_trusted() and track.first_detect:
        resolve_by_detect(track, at, out)
        if not track.held:
            return
    history = track.history
    if track.first is FirstLevel.HELD_INVERTED:
        # The first level was a car: every state before the re-levelling was the other one.
        track.first = FirstLevel.BELIEVED
        street.first_car += 1
        *before, _, last = history
        for state, ts in before:
            track.publish(_FLIP[state], None, ts, at, out)
        track.publish(last[0], None, last[1], at, out)
        track.history = []
    elif track.verified:
        # A departure came back to the first level: it was the empty bay.
        street.first_vacant += 1
        resolve_as_believed(track, at, out)


def release(track: SensorTrack) -> None:
    """Silence or a fault: ``unknown`` is published now, so what was held before it can never be
    published (the collector ignores an event older than a bay's latest): it is dropped. The
    levels and the belief they are held on stay: if the sensor comes back on the level it held,
    the held belief goes on, its history starting again there (see ``resume``)."""
    if not track.held:
        return
    track.history = []
    track.last_class = "unknown"
    track.onset = None


def take_back(track: SensorTrack, detect: bool, at: Instant, out: list[OccupancyChange]) -> None:
    """A held sensor's level, confirmed again after a silence or a fault (its history has begun
    again): judged by DETECT as a first level is. Off, it is the empty bay (if the belief held
    it for a car, the belief was upside down); on, the held belief goes on."""
    track.level_detect = detect
    if detect:
        return
    if track.bay.mode == "occupied":
        publish_inverted(track, at, out)
    else:
        resolve_as_believed(track, at, out)


def resume(track: SensorTrack, field: Vector) -> None:
    """A reading of a held sensor back from a silence or a fault, before its level is confirmed
    again: on the level it held, the held belief goes on; anywhere else the bay changed, or its
    field moved, while nobody saw, and the level is judged afresh, as at start."""
    bay = track.bay
    level = bay.level()
    if level is not None and dist(field, level.vector) < bay.tuning.on_mg:
        return
    track.first = FirstLevel.UNKNOWN
    bay.forget()
    track.level_detect = None
