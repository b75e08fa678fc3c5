"""Everything the detector knows about one sensor, and how a change leaves it (``publish``)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from kerbside.core.instants import Instant
from kerbside.edge.arrival import RecentFrames
from kerbside.edge.candidate import Candidate
from kerbside.edge.field import BayField, Tuning, Vector
from kerbside.edge.model import OccupancyChange, State, UnknownReason


class FirstLevel(Enum):
    """How far the detector trusts what it believes about a bay since it started."""

    UNKNOWN = "unknown"  # no level confirmed yet (or a held one was let go: silence, fault)
    # The first level had DETECT on, which drift may explain: it is believed empty, and what
    # follows is recorded (state, ts), not published, until the sensor's own steps say.
    HELD = "held"
    # A re-levelling showed the held first level was a car: the history is published the other
    # way up at this confirmation.
    HELD_INVERTED = "held-inverted"
    BELIEVED = "believed"  # published as believed


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


class SensorTrack:
    __slots__ = (
        "bay",
        "bay_id",
        "cand",
        "cand_gen",
        "first",
        "first_detect",
        "history",
        "last_class",
        "last_field",
        "last_t",
        "last_valid",
        "level_detect",
        "onset",
        "published",
        "recent",
        "sensor_id",
        "silence_armed",
        "stats",
        "suspended",
        "suspended_at",
        "verified",
    )

    def __init__(self, sensor_id: str, bay_id: str, tuning: Tuning) -> None:
        self.sensor_id = sensor_id
        self.bay_id = bay_id
        self.stats = SensorStats(sensor_id, bay_id)
        self.bay = BayField(tuning)
        self.first = FirstLevel.UNKNOWN
        self.published: tuple[State, UnknownReason | None] = ("unknown", None)
        self.last_field: Vector | None = None
        self.last_class: State = "unknown"  # the level the latest reading is folded into
        self.last_t: Instant = 0
        self.recent = RecentFrames()  # where a frame stands among those before it
        self.last_valid: Instant | None = None
        self.cand: Candidate | None = None  # PENDING or WAITING
        self.cand_gen = 0  # heap entries of older candidates are stale
        self.suspended: Candidate | None = None
        self.suspended_at: Instant = 0
        self.silence_armed = False  # a silence entry is in the heap
        # The first reading of the streak off the current level (time, field): a change's onset.
        self.onset: tuple[Instant, Vector] | None = None
        self.verified = False  # a departure back to the arrival's baseline has been seen
        self.level_detect: bool | None = None  # DETECT's verdict on the current level
        self.first_detect = False  # DETECT's verdict on the first level since start
        self.history: list[tuple[State, Instant]] = []  # what a held first level recorded

    @property
    def held(self) -> bool:
        first = self.first  # identity, not a set: this is asked on every frame
        return first is FirstLevel.HELD or first is FirstLevel.HELD_INVERTED

    def drop_candidates(self) -> None:
        self.cand = None
        self.suspended = None
        self.cand_gen += 1

    def publish(
        self,
        state: State,
        reason: UnknownReason | None,
        ts: Instant,
        confirmed_ts: Instant,
        out: list[OccupancyChange],
    ) -> None:
        """Publish a change (recorded instead while held), unless it is what was published."""
        if self.held and reason is None:
            if not self.history or self.history[-1][0] != state:
                self.history.append((state, ts))
            return
        if self.published == (state, reason):
            return
        self.published = (state, reason)
        out.append(OccupancyChange(self.bay_id, self.sensor_id, state, ts, confirmed_ts, reason))
