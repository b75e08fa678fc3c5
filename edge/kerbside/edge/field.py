"""The field physics the detector reasons with: what a magnetometer's readings say about its bay.

A magnetometer under a bay reads the earth's field plus slow drift (temperature, age) plus,
while a car stands over it, that car's signature (tens to hundreds of mG in some direction). A
sensor sends on a >20 mG move, on a DETECT flip, and otherwise at least once a minute, so a
reading stands for the field until the next one: levels are weighted by how long each reading
held, not by how many there were. Per sensor, ``BayField`` keeps:

- while vacant, a *baseline*: a time-weighted average of the vacant readings, with a bounded
  memory (``tau``) so it follows drift and small neighbour steps but ignores the second or two of
  a passing car or of a car pulling in;
- while occupied, the *occupied level* (same averaging) and the car's *signature* (occupied level
  minus the baseline at arrival, refined while the car settles). Drift shifts both levels alike,
  so the vacant field to expect now is ``occupied level - signature``: a departure is the field
  returning near it, wherever drift (or a neighbour's car that came or went meanwhile) has moved
  it.

An arrival is a reading a car's whole signature (``on_mg``) away from the baseline; a departure
a reading as far from the occupied level, nearer the vacant level expected now than the occupied
one, and within its radius. A neighbour's car moves the field less than either: its share is
followed by the levels, never taken for a change. No I/O, no clock: times come in.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from kerbside.core.instants import Instant
from kerbside.edge.model import State

Vector = tuple[float, float, float]

dist = math.dist
_ZERO: Vector = (0.0, 0.0, 0.0)
_SAME_WAY = 0.7  # cosine of the widest angle (45 degrees) between two steps one way


@dataclass(frozen=True, slots=True)
class Tuning:
    """Thresholds of the raw-field detector (physics, not configuration)."""

    on_mg: float = 45.0  # a car's whole signature: weakest ~55; a neighbour's share < 30
    onset_mg: float = 15.0  # a reading this far off the current level may be a change beginning
    backdate_s: float = 10.0  # how far back a change's onset may lie (a car pulls in in seconds)
    off_fraction: float = 0.5  # departure radius: this share of the signature (at least on_mg)
    tau_s: float = 600.0  # memory of the baseline and occupied level
    settle_s: float = 300.0  # the signature is refined for this long after an arrival
    relevel_after_s: float = 60.0  # a car's level is known after this long, and as many s held
    # A car passing in the lane, a couple of metres from the sensor, moves its field 35-90 mG
    # for 1-4 s, in one step at one sample a second: a change in one step no bigger than this,
    # held no longer than that, may be one whose end frame was lost.
    passing_mg: float = 100.0
    blip_s: float = 5.0
    # A departure in one step that lands this near the vacant level expected now is a car
    # leaving: a passing car would have to cancel the parked car's signature to a sensor's step.
    landed_mg: float = 25.0
    report_mg: float = 20.0  # a sensor sends on a move of more than this since its last frame
    moved_mg: float = 25.0  # a move a sensor would have reported, with noise
    # DETECT is trusted for a first level once at least this many confirmed steps on the street
    # were seen and the share of them leaving DETECT unchanged, (flat + 1) / (steps + 2), is at
    # most this (8 steps with none flat; 18 with one...): a decision taken on it is final.
    trust_steps: int = 8
    trust_flat: float = 0.1
    # First levels held (DETECT on, not trusted) are believed empty once this many held ones
    # were shown by later steps to be empty at least this often. (Empty first levels show
    # themselves sooner than cars do, a car coming and going, so the first few say little.)
    empty_levels: int = 6
    empty_share: float = 1.0


class Level:
    """A time-weighted mean with bounded memory: each reading weighs how long it held."""

    __slots__ = ("tau", "weight", "x", "y", "z")

    def __init__(self, field: Vector, tau: float, held_s: float = 0.0) -> None:
        self.x, self.y, self.z = field
        self.weight = min(held_s, tau)
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


def level_of(readings: list[tuple[Vector, int]]) -> tuple[Vector, int]:
    """The reading at the heart of a run (weighted medoid: held time as weight) and its weight.

    A passing car or a maneuvering one may be the latest reading, or the longest held so far;
    the medoid is the level the run keeps coming back to."""
    best, best_cost = readings[-1], math.inf
    for candidate in readings:
        cost = sum(max(held, 1) * dist(candidate[0], other) for other, held in readings)
        if cost < best_cost:
            best, best_cost = candidate, cost
    weight = sum(held for other, held in readings if dist(other, best[0]) < 20.0)
    return best[0], weight


class BayField:
    """One sensor's learned levels and the belief they hold (``mode``): the physics of a bay.

    ``mode`` is what the field says the bay is (``unknown`` until a first level is known), not
    what was published. ``guarded``, in the methods that take it: a first level is still being
    tested (see ``radius``)."""

    __slots__ = (
        "arrival_base",
        "arrived_at",
        "base",
        "mode",
        "occ",
        "provisional",
        "signature",
        "target",
        "tuning",
    )

    def __init__(self, tuning: Tuning) -> None:
        self.tuning = tuning
        self.mode: State = "unknown"
        self.base: Level | None = None
        self.occ: Level | None = None
        self.arrival_base: Vector | None = None
        self.signature: Vector | None = None
        self.arrived_at: Instant = 0
        # The level was set from readings none of which has been seen to stand yet: the frames
        # lost after them may have finished the car's pulling in or out (see reaches_target).
        self.provisional = False
        self.target: Vector | None = None  # the vacant level a departure was heading for

    def forget(self) -> None:
        self.mode = "unknown"
        self.base = self.occ = None
        self.arrival_base = self.signature = None

    def level(self) -> Level | None:
        """The level of the state believed now."""
        return self.base if self.mode == "vacant" else self.occ

    def expected_vacant(self) -> Vector | None:
        sig, occ = self.signature, self.occ
        if sig is None or occ is None:
            return None
        return (occ.x - sig[0], occ.y - sig[1], occ.z - sig[2])

    def radius(self, guarded: bool) -> float:
        """How near the expected vacant level a departure must land. ``guarded``: a return that
        decides a held first level must come back to that level itself, not just nearer it than
        to a car (a next car may also be nearer)."""
        on = self.tuning.on_mg
        if guarded:
            return on
        size = dist(self.signature, _ZERO) if self.signature is not None else 0.0
        return max(on, self.tuning.off_fraction * size)

    def classify(self, field: Vector, guarded: bool, fresh: bool) -> State:
        """What one reading says the bay is, against the levels believed now. ``fresh``: it is
        the first reading since the level believed was set."""
        t = self.tuning
        on = t.on_mg
        if self.mode == "vacant" and self.base is not None:
            to_base = dist(field, self.base.vector)
            if to_base >= on:
                return "occupied"
            # The vacant level after a departure is its last reading, which a sensor's step may
            # have left short of the level the car's going was heading for: until a reading
            # shows where the field is, one a whole signature from that level, and a step from
            # the one believed, is a car too (the next car, pulling in before a keep-alive).
            target = self.target
            far = (
                fresh and target is not None and dist(field, target) >= on and to_base >= t.moved_mg
            )
            return "occupied" if far else "vacant"
        if self.mode == "occupied" and self.occ is not None:
            to_occ = dist(field, self.occ.vector)
            expect = self.expected_vacant()
            if expect is None:  # no baseline was known at arrival: any big step away departs
                return "vacant" if to_occ >= on else "occupied"
            to_vacant = dist(field, expect)
            # A car leaving takes its whole signature away at once (a neighbour's moves less):
            # a big step from the occupied level, ending near the vacant level expected now; or
            # a reading on that level, though the sensor's own step (it reports a move only past
            # it) left a weak car's going short of a whole signature.
            left = to_vacant < to_occ and (
                (to_occ >= on and to_vacant < self.radius(guarded))
                or (to_vacant < t.landed_mg and to_occ >= to_vacant + t.report_mg)
            )
            return "vacant" if left else "occupied"
        # Nothing known yet (just started): take the first level as the empty bay's.
        return "vacant"

    def looks_inverted(
        self, field: Vector, t: Instant, verified: bool, guarded: bool, stood: bool
    ) -> bool:
        """Whether a reading says the belief started upside down (a car parked at start).

        Then the first "arrival" was that car leaving, and its "signature" points back to the car.
        The next car gives a level far from both the occupied level and the expected vacant one:
        the level taken for occupied was the empty bay all along. Held for the confirmation time,
        this re-levels the sensor. Once a departure has returned to its arrival's baseline
        (``verified``) the belief is known the right way up and this never applies. ``stood``:
        the reading repeats the one before it, seconds later: a level, not a change on its way.
        """
        if verified or self.mode != "occupied" or self.occ is None:
            return False
        known = self.tuning.relevel_after_s
        if t - self.arrived_at < known * 1000 or self.occ.weight < known:
            # The car may still be settling, or its level rests on a few readings (frames were
            # lost): a passing car could move it. Its level is not known well yet.
            return False
        expect = self.expected_vacant()
        if expect is None:
            return False
        on, occ = self.tuning.on_mg, self.occ.vector
        to_occ, to_vacant = dist(field, occ), dist(field, expect)
        # On the way between the two levels is a car leaving (its last frames lost), not a
        # new car: that would read far off the line between them. Unless the field is still there
        # seconds later: a car leaving is gone in seconds, and the sensor then reads the empty bay.
        between = not stood and to_occ + to_vacant <= dist(occ, expect) + self.tuning.moved_mg
        return to_occ >= on and to_vacant >= self.radius(guarded) and not between

    def step_size(self, field: Vector) -> float:
        """How far a reading lies from the level believed now (how big a change it would be)."""
        level = self.level()
        return math.inf if level is None else dist(field, level.vector)

    def continues(self, before: Vector, field: Vector) -> bool:
        """Whether ``field`` lies further along the way ``before`` had left the level believed
        now: a change going on (a car pulling in or out), not one going somewhere else."""
        level = self.level()
        if level is None:
            return False
        o = level.vector
        a = (before[0] - o[0], before[1] - o[1], before[2] - o[2])
        b = (field[0] - o[0], field[1] - o[1], field[2] - o[2])
        na, nb = dist(a, _ZERO), dist(b, _ZERO)
        dot = a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
        return nb > na and dot >= _SAME_WAY * na * nb

    def landed(self, field: Vector) -> bool:
        """Whether a reading lies on the vacant level expected now, to a sensor's step."""
        expect = self.expected_vacant()
        return expect is not None and dist(field, expect) <= self.tuning.landed_mg

    def commit(self, field: Vector, seconds: float, now: Instant) -> None:
        """Fold a reading that held ``seconds`` into the level of the state believed now."""
        self.provisional = False
        if self.mode == "vacant" and self.base is not None:
            self.base.add(field, seconds)
        elif self.mode == "occupied" and self.occ is not None:
            self.occ.add(field, seconds)
            if now - self.arrived_at <= self.tuning.settle_s * 1000:
                self.refine_signature()

    def refine_signature(self) -> None:
        if self.arrival_base is None or self.occ is None:
            self.signature = None
            return
        o, b = self.occ, self.arrival_base
        self.signature = (o.x - b[0], o.y - b[1], o.z - b[2])

    def settle(self, state: State, field: Vector, held_s: float, at: Instant) -> None:
        """The bay is now ``state``, at a level ``field`` that has held ``held_s``."""
        tau = self.tuning.tau_s
        self.provisional = True
        if state == "vacant":
            self.target = self.expected_vacant()
            self.base = Level(field, tau, held_s)
            self.occ = None
        else:
            base = self.base
            self.arrival_base = base.vector if base is not None else None
            self.occ = Level(field, tau, held_s)
            self.arrived_at = at
            self.refine_signature()
        self.mode = state

    def reaches_target(self, field: Vector) -> bool:
        """While the vacant level is provisional (no reading has been seen to stand at it yet):
        if it stopped short of the vacant level the departure was heading for, and ``field`` is
        there, the lost frames after it finished the car's pulling out (it takes seconds, a
        frame a second): the level is where the car's going ended. Whether it re-levelled."""
        target, base = self.target, self.base
        if self.mode != "vacant" or target is None or base is None:
            return False
        short = dist(base.vector, target)
        # There: within half of what the level fell short by (a reading only a little nearer
        # may be noise, or a next car half-way in, when the target itself fell short).
        if short < self.tuning.onset_mg or dist(field, target) >= min(short / 2, self.tuning.on_mg):
            return False
        self.base = Level(field, self.tuning.tau_s, 0.0)
        self.provisional = False
        return True

    def invert(self) -> None:
        """The level believed occupied was the empty bay (see ``looks_inverted``)."""
        self.base = self.occ
        self.mode = "vacant"
