"""What the collector's core decides, as values: the rows to store, the messages to publish and
the time-series points to write for one batch, tick or command.

The core returns one ``Effects``; the unit of work (``cycle.py``) hands it to the store in one
transaction and, only once that has committed, acknowledges the batch, publishes, feeds the alert
stream and writes the points. Rows written for every event are plain tuples (thousands a
second); the rarer ones are named.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, NamedTuple

from kerbside.core.instants import Instant
from kerbside.core.site import Bay

# (type, time, watermark, body as canonical JSON, event_id, digest, zone_id): the event id and
# digest only for occupancy events, which the store also keeps for de-duplication; the zone only
# for records that concern one zone alone (occupancy), so that with several collectors a zone's
# owner reads its own zones' records and the zone-less ones
JournalRow = tuple[str, Instant, Instant, str, str | None, str | None, str | None]
# (bay_id, state, since, gateway_id, session_start)
BayRow = tuple[str, str, Instant, str | None, Instant | None]
# (bay_id, ts, state)
StateChange = tuple[str, Instant, str]
# (topic, payload, retained): QoS 1, kept in the outbox until the broker has it
Publication = tuple[str, str, bool]
# (topic, payload): QoS 0 dead letters, never kept
DeadLetter = tuple[str, str]


class SessionStep(Enum):
    OPEN = "open"
    CLOSE = "close"
    ALERT = "alert"  # an enforcement alert raised in the session


# (step, bay_id, session start, session end for CLOSE else None)
SessionOp = tuple[SessionStep, str, Instant, Instant | None]


_STEPS = (SessionStep.OPEN, SessionStep.ALERT, SessionStep.CLOSE)  # a session's order
_STEP_ORDER = {step: i for i, step in enumerate(_STEPS)}


def session_runs(
    ops: Sequence[SessionOp],
) -> Iterator[tuple[SessionStep, list[tuple[Any, ...]]]]:
    """Session steps as runs of one kind (one ``executemany`` each), with the same outcome as
    the steps one by one in the order given; as parameters ``(end, bay_id, start)`` for CLOSE,
    ``(bay_id, start)`` for the others.

    Each step touches the one row of its session (bay, start), so steps of different sessions
    may change places; a session's own steps keep their order. The n-th steps of their
    sessions go together, opening, alerts, closing: a street's bays interleaved in a batch
    (one closing, another opening, ...) make a few runs, not one a step."""
    rank: dict[tuple[str, Instant], int] = {}
    groups: dict[tuple[int, int], list[tuple[Any, ...]]] = {}
    for step, bay_id, start, end in ops:
        key = (bay_id, start)
        n = rank.get(key, 0)
        rank[key] = n + 1
        params = (end, bay_id, start) if step is SessionStep.CLOSE else (bay_id, start)
        groups.setdefault((n, _STEP_ORDER[step]), []).append(params)
    for n, kind in sorted(groups):
        yield _STEPS[kind], groups[(n, kind)]


class AlertWrite(NamedTuple):
    """An alert's record after a change (its status, clearing...) and when it was raised."""

    record: dict[str, Any]
    raised_at: Instant
    text: str  # the record as canonical JSON, as stored and published

    def row(self) -> tuple[Any, ...]:
        """As the alerts table holds it: id, kind, status, zone, bay, raised_at, the record."""
        r = self.record
        return (
            r["alert_id"], r["kind"], r["status"], r.get("zone_id"), r.get("bay_id"),
            self.raised_at, self.text,
        )  # fmt: skip


class AlertNote(NamedTuple):
    """An officer's action, added to the alert's history."""

    alert_id: str
    entry: dict[str, Any]


class RightRow(NamedTuple):
    right_id: str
    body: dict[str, Any]  # journal shape
    deleted: bool
    owner: str | None = None  # the provider token's name that created it (None: the council's)


class SuspensionRow(NamedTuple):
    suspension_id: str
    body: dict[str, Any]  # journal shape


class GatewayRow(NamedTuple):
    gateway_id: str
    online: bool
    last_seen: Instant  # the collector's receive clock
    status: dict[str, Any] | None
    health: dict[str, Any] | None


class SensorRow(NamedTuple):
    sensor_id: str
    gateway_id: str
    bay_id: str | None
    health: dict[str, Any]


# -- time-series points (docs/analysts.md), written by the sink after the commit -----------


class BayStatePoint(NamedTuple):
    bay: Bay
    state: str
    ts: Instant
    gateway_id: str | None


class SessionPoint(NamedTuple):
    bay: Bay
    start: Instant
    end: Instant
    overstay_s: float
    alerts: int


class AlertPoint(NamedTuple):
    record: dict[str, Any]


class SensorPoint(NamedTuple):
    sensor_id: str
    bay_id: str | None
    gateway_id: str
    ts: Instant
    battery_mv: int | None
    temp_c: float | None
    lost_frames: int | None
    rssi: int | None


class GatewayPoint(NamedTuple):
    gateway_id: str
    online: bool
    outbox_depth: int | None
    ts: Instant


Point = BayStatePoint | SessionPoint | AlertPoint | SensorPoint | GatewayPoint


@dataclass(frozen=True, slots=True)
class Effects:
    """Everything one step of the core changes, in the order it is to be written."""

    journal: tuple[JournalRow, ...] = ()
    bays: tuple[BayRow, ...] = ()
    state_changes: tuple[StateChange, ...] = ()
    sessions: tuple[SessionOp, ...] = ()
    alerts: tuple[AlertWrite, ...] = ()
    notes: tuple[AlertNote, ...] = ()
    rights: tuple[RightRow, ...] = ()
    suspensions: tuple[SuspensionRow, ...] = ()
    gateways: tuple[GatewayRow, ...] = ()
    sensors: tuple[SensorRow, ...] = ()
    counters: Mapping[str, int] = field(default_factory=dict)
    publications: tuple[Publication, ...] = ()  # alert changes first, then bay states
    deadletters: tuple[DeadLetter, ...] = ()
    points: tuple[Point, ...] = ()
    raised: tuple[Instant, ...] = ()  # raised_at of each enforcement alert raised
    watermark: Instant | None = None  # the rules' clock after the step (None: unchanged)


class Draft:
    """The effects of one step while the core works them out (lists, appended to in place)."""

    __slots__ = (
        "alert_messages",
        "alerts",
        "bay_messages",
        "bays",
        "counters",
        "deadletters",
        "gateways",
        "journal",
        "notes",
        "points",
        "raised",
        "rights",
        "sensors",
        "sessions",
        "state_changes",
        "suspensions",
    )

    def __init__(self) -> None:
        self.journal: list[JournalRow] = []
        self.bays: dict[str, BayRow] = {}  # the last row of each bay
        self.state_changes: list[StateChange] = []
        self.sessions: list[SessionOp] = []
        self.alerts: list[AlertWrite] = []
        self.notes: list[AlertNote] = []
        self.rights: list[RightRow] = []
        self.suspensions: list[SuspensionRow] = []
        self.gateways: list[GatewayRow] = []
        self.sensors: list[SensorRow] = []
        self.counters: dict[str, int] = {}
        self.alert_messages: list[Publication] = []
        self.bay_messages: dict[str, Publication] = {}  # the last state of each bay
        self.deadletters: list[DeadLetter] = []
        self.points: list[Point] = []
        self.raised: list[Instant] = []

    def count(self, name: str, by: int = 1) -> None:
        self.counters[name] = self.counters.get(name, 0) + by

    def finish(self, watermark: Instant | None) -> Effects:
        return Effects(
            journal=tuple(self.journal),
            bays=tuple(self.bays.values()),
            state_changes=tuple(self.state_changes),
            sessions=tuple(self.sessions),
            alerts=tuple(self.alerts),
            notes=tuple(self.notes),
            rights=tuple(self.rights),
            suspensions=tuple(self.suspensions),
            gateways=tuple(self.gateways),
            sensors=tuple(self.sensors),
            counters=self.counters,
            publications=(*self.alert_messages, *self.bay_messages.values()),
            deadletters=tuple(self.deadletters),
            points=tuple(self.points),
            raised=tuple(self.raised),
            watermark=watermark,
        )


def merged(parts: list[Effects]) -> Effects:
    """The effects of several steps (zones of one collector, or pages of a zone's journal, with
    several collectors) as one unit of work: each kind of row in the order of the parts, a bay's
    row the last one's (as within a step); counters added up."""
    if len(parts) == 1:
        return parts[0]
    counters: dict[str, int] = {}
    for part in parts:
        for name, by in part.counters.items():
            counters[name] = counters.get(name, 0) + by
    marks = [p.watermark for p in parts if p.watermark is not None]
    return Effects(
        journal=tuple(r for p in parts for r in p.journal),
        bays=tuple({r[0]: r for p in parts for r in p.bays}.values()),
        state_changes=tuple(r for p in parts for r in p.state_changes),
        sessions=tuple(r for p in parts for r in p.sessions),
        alerts=tuple(r for p in parts for r in p.alerts),
        notes=tuple(r for p in parts for r in p.notes),
        rights=tuple(r for p in parts for r in p.rights),
        suspensions=tuple(r for p in parts for r in p.suspensions),
        gateways=tuple(r for p in parts for r in p.gateways),
        sensors=tuple(r for p in parts for r in p.sensors),
        counters=counters,
        publications=tuple(r for p in parts for r in p.publications),
        deadletters=tuple(r for p in parts for r in p.deadletters),
        points=tuple(r for p in parts for r in p.points),
        raised=tuple(r for p in parts for r in p.raised),
        watermark=max(marks, default=None),
    )


def empty(effects: Effects) -> bool:
    """Nothing to write or send."""
    return not (
        effects.journal
        or effects.bays
        or effects.state_changes
        or effects.sessions
        or effects.alerts
        or effects.notes
        or effects.rights
        or effects.suspensions
        or effects.gateways
        or effects.sensors
        or effects.counters
        or effects.publications
        or effects.deadletters
        or effects.points
    )
