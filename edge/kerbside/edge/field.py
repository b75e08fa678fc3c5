"""The field physics the detector reasons with: levels of a magnetometer's readings.

A reading stands for the field until the next one (a sensor sends on a >20 mG move or once a
minute), so levels are weighted by how long each reading held, not by how many there were.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

Vector = tuple[float, float, float]

dist = math.dist


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
    corroborate_s: float = 5.0  # readings of a new state must span longer than a passing car
    fallback_s: float = 75.0  # ... or no reading came for a keep-alive and a margin after them
    blip_s: float = 5.0  # a passing car's field lasts at most this long (1-4 s)
    moved_mg: float = 25.0  # a move a sensor would have reported (it sends on > 20 mG)
    gradual_confirms: bool = True  # a change built up over readings needs no later evidence
    # DETECT is trusted for a first level once at least this many confirmed steps on the street
    # were seen and the share of them leaving DETECT unchanged, (flat + 1) / (steps + 2), is at
    # most this (8 steps with none flat; 18 with one...): a decision taken on it is final.
    trust_steps: int = 8
    trust_flat: float = 0.1
    # First levels held (DETECT on, not trusted) are believed empty once this many held ones
    # were shown by later steps to be empty at least this often.
    empty_levels: int = 5
    empty_share: float = 0.9


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
