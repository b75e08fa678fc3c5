"""A state change that readings argue for, until it is confirmed or a reading says otherwise.

A candidate goes through these phases (``CandidatePhase``):

- ``PENDING``: armed for its deadline, ``confirm_*_s`` after it began. A contrary reading before
  then that may be a passing car suspends it; any other cancels it.
- ``WAITING``: the deadline passed, but on evidence a passing car whose end frame was lost would
  also give (one small step, nothing since). The next frame decides: one whose ``seq`` follows
  proves the reading stood until it (whatever it says), so the change held and is confirmed then;
  one after lost frames confirms it only if it is still there (the lost ones may have been its
  end), and cancels it otherwise.
- ``SUSPENDED``: interrupted by a reading that lasted no longer than a passing car; the next
  reading, back where the candidate was, resumes it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from enum import Enum
from typing import NamedTuple

from kerbside.core.instants import Instant
from kerbside.edge.field import Vector, dist, level_of
from kerbside.edge.model import State

_MAX_HELD = 12  # readings of a candidate's run kept to find its level


class CandidatePhase(Enum):
    PENDING = "pending"
    WAITING = "waiting"
    SUSPENDED = "suspended"


class Reading(NamedTuple):
    """One valid frame, as the detector sees it: when, what field, and what it says. (A named
    tuple rather than a frozen dataclass: one is made per frame, and this is faster to make.)"""

    t: Instant
    field: Vector
    detect: bool  # the firmware's DETECT bit
    chained: bool  # its seq follows the previous frame's: that reading stood until this one
    state: State  # the bay's state by this reading, against the levels believed
    relevel: bool  # it says the belief started upside down (a car parked at start)
    prev_field: Vector | None  # the previous reading, if any
    prev_t: Instant
    # It repeats the previous reading, seconds later: the field was where it is at ``prev_t``
    # too (and stood still since, if ``chained``: a sensor reports any move).
    stood: bool


@dataclass(slots=True)
class Candidate:
    state: State
    relevel: bool  # a car over a bay whose belief started upside down
    start: Instant  # when the new state began: the event's ts
    since: Instant  # since when it has been seen to hold: start, unless frames were lost since
    first: Instant  # its first reading
    last: Instant  # its latest reading
    last_field: Vector
    # Its step is one a passing car could make: no bigger than one, and (a departure) not
    # landing on the vacant level expected.
    small: bool
    # The first reading of its latest run without a contrary reading in between.
    run_from: Instant
    run_field: Vector
    origin: Vector  # the level it changes from
    detect: bool  # the firmware's DETECT bit on its latest reading
    phase: CandidatePhase = CandidatePhase.PENDING
    # earlier readings of the run, each with how long it held (ms)
    held: list[tuple[Vector, int]] = dataclasses.field(default_factory=list)
    detect_ms: int = 0  # how long its earlier readings held with DETECT on
    detect_of_ms: int = 0  # ... and how long they held in all

    def detect_level(self, at: Instant) -> bool:
        """The firmware's verdict on the run, its latest reading standing until ``at``: DETECT
        on for most of the time (each reading stands until the next; a car pulling in or out
        sends several frames in a few seconds, then nothing while it stands)."""
        last = max(at - self.last, 0)
        on = self.detect_ms + (last if self.detect else 0)
        total = self.detect_of_ms + last
        return on * 2 > total if total else self.detect

    def may_be_passing_car(self, blip_ms: int, report_mg: float) -> bool:
        """Whether everything seen so far is what a passing car gives: a single small step, its
        readings since (noise, a DETECT flip, a repeat) no longer than one lasts. A change that
        built up over readings (a car pulling in or out takes the field further from where it
        was, a sensor's step at a time) is not one."""
        if not self.small or self.start < self.first:  # too big, or it had an onset
            return False
        grew = dist(self.last_field, self.origin) - dist(self.run_field, self.origin)
        return self.last - self.run_from < blip_ms and grew < report_mg

    def support(self, field: Vector, detect: bool, now: Instant, held_until: Instant) -> None:
        """Another reading in the candidate's state; the previous one held until ``held_until``."""
        stood = held_until - self.last
        self.held.append((self.last_field, stood))
        if len(self.held) > _MAX_HELD:
            del self.held[0]
        self.detect_ms += stood if self.detect else 0
        self.detect_of_ms += stood
        self.last = now
        self.last_field = field
        self.detect = detect

    def level(self, at: Instant) -> tuple[Vector, int]:
        """The run's level and how long it held (ms), the latest reading standing until ``at``."""
        return level_of([*self.held, (self.last_field, at - self.last)])
