"""The collector's store: the port every adapter implements, and the values that cross it.

One write, ``commit(work)``: the effects of a batch, tick or command (journal, events, bays,
sessions, alerts and their changes, rights, suspensions, gateways, counters, the outbox of
publications, the time-series lines of its points), the rules' snapshots when due and the outbox
rows the broker has acknowledged, all in one transaction or none of it: a batch acknowledged to
the broker has its points in the spool, whatever stops the collector after. The store hands out
journal positions, alert change ids and outbox ids as it writes them and reports them back in
``Committed``.

Reads serve recovery (``recovery.py``), the API's read side (``queries.py``) and its commands.
SQL stays in the adapters: ``sqlite.py`` (one file, WAL) is the default, ``postgres.py`` the
other; ``sqlreads.py`` holds the reads written alike for both.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

from kerbside.collector.effects import Effects
from kerbside.collector.records import Right
from kerbside.collector.signin import SignInStore
from kerbside.core.instants import Instant

_ORJSON_OPTIONS = orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS


def dumps(value: Any) -> str:
    """Canonical compact JSON (the form stored and compared): keys sorted, no spaces, UTF-8.

    orjson writes it ~9x faster than json (the collector writes one per event); what orjson
    refuses (integers over 64 bits, mixed key types) goes through json in the same form."""
    try:
        return orjson.dumps(value, option=_ORJSON_OPTIONS).decode("utf-8")
    except TypeError:
        import json  # noqa: PLC0415 (rare)

        return json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False)


# The snapshot that stands for every zone: the one engine of a store written before the rules
# ran per zone.
EVERY_ZONE = "*"


@dataclass(frozen=True, slots=True)
class JournalEntry:
    pos: int
    type: str
    time: Instant
    watermark: Instant
    text: str  # the body as stored (JSON); ``body`` parses it

    @property
    def body(self) -> dict[str, Any]:
        try:
            value = orjson.loads(self.text)
        except orjson.JSONDecodeError:  # what orjson refuses that json takes (huge integers)
            import json  # noqa: PLC0415 (rare)

            value = json.loads(self.text)
        if not isinstance(value, dict):
            raise TypeError("a journal body is not a JSON object")
        return value


@dataclass(frozen=True, slots=True)
class OutboxMessage:
    id: int
    topic: str
    payload: str
    qos: int
    retain: bool


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A zone's rules as saved (JSON text) and the journal position they reflect."""

    pos: int
    text: str


# The lease of the maintenance alerts of gateways (offline, low battery) among several
# collectors: a key no zone id can be.
MAINTENANCE_LEASE = ":maintenance"


@dataclass(frozen=True, slots=True)
class Fence:
    """With several collectors: the leases a unit of work is written under. The store writes
    it only while every one of them is still this collector's, with the epoch it holds (else
    ``LeaseLost`` and nothing is written), and notes in each lease the journal position that
    the effects of its zone now reach (``through``; None leaves it)."""

    node: str
    epochs: Mapping[str, int]  # lease (zone id, or MAINTENANCE_LEASE) -> the epoch held
    through: int | None = None


@dataclass(frozen=True, slots=True)
class Work:
    """One unit of work: written in one transaction, or not at all."""

    effects: Effects
    snapshots: Mapping[str, str] | None = None  # zone -> the zone's rules (JSON), when due
    delivered: Sequence[int] = ()  # outbox rows the broker has acknowledged
    lines: Sequence[str] = ()  # time-series lines (line protocol) for the spool, in order
    # With several collectors (PostgreSQL only): the leases it is written under, the journal
    # position its snapshots reflect (else: its last position), and the lease each of
    # ``effects.alerts`` was decided under (kept with the alert change)
    fence: Fence | None = None
    snapshot_pos: int | None = None
    alert_leases: Sequence[str] = ()


@dataclass(frozen=True, slots=True)
class Committed:
    """What the store handed out while writing a unit of work."""

    last_pos: int  # the journal's last position after it
    changes: list[tuple[int, dict[str, Any]]] = field(default_factory=list)  # (change id, record)
    outbox: list[OutboxMessage] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class StoredRight:
    """A right as stored: its body (journal shape), whether it was cancelled, and its owner (the
    name of the provider token that created it; None for the council's, loaded from a journal
    file, or stored before rights had owners)."""

    body: dict[str, Any]
    cancelled: bool
    owner: str | None


BayState = tuple[str, Instant, str | None, Instant | None]  # state, since, gateway_id, session


@dataclass(frozen=True, slots=True)
class Recovered:
    """What a collector needs from the store to carry on where it stopped."""

    bays: dict[str, BayState]
    gateways: dict[str, tuple[bool, Instant]]  # gateway -> (online, last heard)
    maintenance: list[dict[str, Any]]  # maintenance alerts open or acknowledged
    session_alerts: list[dict[str, Any]]  # enforcement alerts of the sessions still open
    snapshots: dict[str, Snapshot]  # zone (or EVERY_ZONE) -> its rules
    watermark: Instant | None  # the rules' clock at the last commit


class LineSpool(Protocol):
    """The time-series spool as its writer thread sees it, on a connection of its own: lines in
    commit order, read from the head and removed once InfluxDB has them."""

    @property
    def depth(self) -> int: ...

    def grew(self, lines: int) -> None:
        """Lines were appended by someone else (the store's commits)."""

    def append(self, lines: Sequence[str]) -> int: ...

    def head(self, limit: int) -> tuple[int, list[str]]: ...

    def remove_through(self, last_id: int) -> None: ...

    def trim(self) -> int:
        """Drop the oldest lines beyond the bound; returns how many."""

    def close(self) -> None: ...


class Store(SignInStore, Protocol):
    """The port (with the officers' sign-ins). Not thread-safe: the collector's event loop owns
    it (``gateway_summaries`` and ``timelines`` excepted, which read on a connection of their own
    so the API can run them in a thread)."""

    # a commit may end in a worker thread while the loop reads and decides the next unit of
    # work (it commits on a connection of its own): see ``begin``
    commits_apart: bool

    def commit(self, work: Work) -> Committed: ...

    def begin(self, work: Work) -> Callable[[], Committed]:
        """``commit`` in two halves, for a store that commits apart: what needs the event loop's
        thread is done now (SQLite's rows are written here); the function returned ends the
        commit from a worker thread and returns what was committed. No other unit of work is
        begun before it has returned."""

    def close(self) -> None: ...

    def open_spool(self, max_lines: int, block: int) -> LineSpool:
        """The spool that ``commit`` appends ``Work.lines`` to, for another thread to drain."""

    # -- recovery and ingest -------------------------------------------------------------

    def recover(self) -> Recovered: ...

    def journal(
        self, after_pos: int = 0, types: Iterable[str] | None = None
    ) -> Iterator[JournalEntry]: ...

    def event_digests(self, event_ids: Sequence[str]) -> dict[str, str]: ...

    def outbox(self) -> list[OutboxMessage]: ...

    def last_alert_change(self) -> int: ...

    def prune(self, before: Instant, keep_from_pos: int) -> int: ...

    # -- reads for the API -----------------------------------------------------------------

    def bay_states(self, bay_ids: Sequence[str]) -> dict[str, BayState]: ...

    def state_changes(
        self, bay_ids: list[str] | None, start: Instant, end: Instant
    ) -> dict[str, list[tuple[Instant, str]]]: ...

    def timelines(
        self, bay_ids: Sequence[str], start: Instant, end: Instant
    ) -> dict[str, list[tuple[Instant, str]]]:
        """``state_changes`` of ``bay_ids``, read apart from the loop's connection: safe to call
        from a worker thread while the collector commits (the API's occupancy reads)."""

    def sessions(
        self, bay_id: str, start: Instant | None, end: Instant | None, limit: int, after: int | None
    ) -> list[tuple[Instant, Instant | None, int]]: ...

    def alert(self, alert_id: str) -> dict[str, Any] | None: ...

    def alert_with_history(self, alert_id: str) -> tuple[dict[str, Any], list[Any]] | None: ...

    def alerts(
        self,
        *,
        status: str | None = None,
        zone_id: str | None = None,
        kind: str | None = None,
        bay_id: str | None = None,
        limit: int = 100,
        after: tuple[int, str] | None = None,
        kinds: Iterable[str] | None = None,
    ) -> list[dict[str, Any]]: ...

    def alert_changes_since(self, after: int, limit: int) -> list[tuple[int, dict[str, Any]]]: ...

    def count_alerts(self, status: str) -> int: ...

    def note_bays(self, bay_ids: Iterable[str], at: Instant) -> int:
        """Record ``at`` as the origin of each bay not seen before (its own write)."""

    def bay_origins(self, bay_ids: Iterable[str] | None = None) -> dict[str, Instant]:
        """When each bay came into being: occupancy counts no time before it."""

    def right(self, right_id: str) -> StoredRight | None: ...

    def rights_for(
        self, bay_ids: Collection[str], zone_ids: Collection[str], start: Instant, end: Instant
    ) -> list[Right]:
        """Rights in force (not cancelled) of any of ``bay_ids`` or of any of ``zone_ids`` (a
        zone's blanket rights) that cover some instant of ``[start, end]``."""
        ...

    def suspensions(self) -> list[dict[str, Any]]: ...

    def counters(self) -> dict[str, int]: ...

    def count_events(self) -> int: ...

    def watermark(self) -> Instant | None: ...

    def gateway_summaries(self) -> list[dict[str, Any]]: ...
