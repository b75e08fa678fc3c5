"""Several collectors on one PostgreSQL store: the SQL of zone leases, of the collectors'
heartbeats and of a zone owner's reading of the journal.

Leases are rows of ``zone_leases`` (a zone's id, or ``MAINTENANCE_LEASE``): the collector that
holds it, its epoch and when it runs out, on the database's clock (``clock_timestamp()``, read
when the row is, so a statement that waited for a lock judges by the time it got it). A
collector takes a lease that has run out, or one of its own, by raising its epoch; renews it
only while it is still its own, with the same epoch, and has not run out; releases it by making
it run out. Every unit of work written for a zone updates its lease row under the same
condition first (``check_fence``): the row's lock holds a takeover until that commit ends, and
a collector whose lease was taken finds a higher epoch there and writes nothing. The same
update notes the journal position the zone's committed effects reach (``applied_pos``), which
a new owner reads as it takes the zone: it re-executes the records up to it without repeating
their effects.

The collector keeps its own time too: it stops acting for a zone before the lease it renewed
could run out, by its monotonic clock (``cluster/leases.py``); the fence is for a collector
that was paused (or whose commit was on its way) when that moment passed.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg

from kerbside.collector.errors import LeaseLost, RacedEvent, StoreError
from kerbside.collector.store import EVERY_ZONE, Fence, JournalEntry, Snapshot, Work

Rows = Callable[[str, Sequence[Any]], list[tuple[Any, ...]]]

# SQLSTATE of kerbside_fence's refusal (pgschema makes the function)
LEASE_LOST = "KB001"
_FENCE = "SELECT kerbside_fence(%s, %b::text[], %b::bigint[], %s)"
_TAKE = (
    "WITH before AS (SELECT zone_id AS z, node_id AS was FROM zone_leases"
    " WHERE zone_id = ANY(%b::text[]))"
    " INSERT INTO zone_leases (zone_id, node_id, epoch, expires, applied_pos)"
    " SELECT z, %s, 1, clock_timestamp() + make_interval(secs => %s), 0"
    " FROM unnest(%b::text[]) AS u(z)"
    " ON CONFLICT (zone_id) DO UPDATE SET node_id = excluded.node_id,"
    " epoch = zone_leases.epoch + 1, expires = excluded.expires"
    " WHERE zone_leases.expires < clock_timestamp() OR zone_leases.node_id = excluded.node_id"
    " RETURNING zone_id, epoch, applied_pos,"
    " (SELECT was FROM before WHERE before.z = zone_leases.zone_id)"
)
# Publications a dead collector stored for a zone and never published: the zone's new owner
# sends them (a collector alive still holds its own).
_ADOPT_OUTBOX = (
    "UPDATE outbox SET node = %s WHERE node = %s AND topic = ANY(%b::text[])"
    " AND NOT EXISTS (SELECT 1 FROM cluster_nodes WHERE node_id = %s"
    " AND expires > clock_timestamp()) RETURNING id"
)
_RENEW = (
    "UPDATE zone_leases SET expires = clock_timestamp() + make_interval(secs => %s)"
    " WHERE node_id = %s AND expires > clock_timestamp()"
    " AND (zone_id, epoch) IN (SELECT * FROM unnest(%b::text[], %b::bigint[]))"
    " RETURNING zone_id"
)
_RELEASE = (
    "UPDATE zone_leases SET expires = '-infinity' WHERE node_id = %s"
    " AND (zone_id, epoch) IN (SELECT * FROM unnest(%b::text[], %b::bigint[]))"
)
_HEARTBEAT = (
    "INSERT INTO cluster_nodes (node_id, expires)"
    " VALUES (%s, clock_timestamp() + make_interval(secs => %s))"
    " ON CONFLICT (node_id) DO UPDATE SET expires = excluded.expires RETURNING node_id"
)
# A zone owner's reading: its zones' records (and the zone-less ones) in a window of positions,
# found through journal_zone (zone_id, pos), so that each collector reads its own share of the
# journal, not all of it; with the head in the same snapshot (every position up to it is
# committed), so that a window holding none of its records is passed over.
TAIL_WINDOW = 20_000
_TAIL = (
    "SELECT h.pos, j.pos, j.type, j.time, j.watermark, j.body, j.zone_id FROM commit_head h"
    " LEFT JOIN LATERAL (SELECT pos, type, time, watermark, body, zone_id FROM journal"
    " WHERE pos > %s AND pos <= %s AND (zone_id IS NULL OR zone_id = ANY(%b::text[]))"
    " ORDER BY pos LIMIT %s) j ON true"
)


def fence(cur: psycopg.Cursor[tuple[Any, ...]], fence: Fence) -> None:
    """First in a unit of work: lock and update the rows of the leases it is written under. If
    one is no longer this collector's, the database refuses the transaction (nothing is
    written) and ``refusal`` makes that ``LeaseLost``; nothing is waited for here."""
    leases = sorted(fence.epochs)
    cur.execute(_FENCE, (fence.node, leases, [fence.epochs[z] for z in leases], fence.through))


def refusal(exc: StoreError, name: str) -> StoreError:
    """A failed commit's error as what the cluster must tell apart: a lease lost, or an event
    another collector stored first."""
    cause = exc.__cause__
    if isinstance(cause, psycopg.Error) and cause.sqlstate == LEASE_LOST:
        detail = cause.diag.message_detail or ""
        lost = frozenset(lease for lease in detail.split(",") if lease)
        return LeaseLost(f"{name}: no longer this collector's: {detail}", lost)
    if (
        isinstance(cause, psycopg.errors.UniqueViolation)
        and cause.diag.constraint_name == "events_pkey"
    ):
        return RacedEvent(f"{name}: another collector stored an event of this batch first")
    return exc


def change_epochs(work: Work, count: int) -> list[int]:
    """The epoch of the lease each alert change of ``work`` was decided under (0: none)."""
    if work.fence is None or not work.alert_leases:
        return [0] * count
    epochs = work.fence.epochs
    return [epochs.get(lease, 0) for lease in work.alert_leases]


@dataclass(frozen=True, slots=True)
class Taken:
    epoch: int
    applied_pos: int  # the journal position the zone's committed effects reach
    previous: str | None = None  # the collector that held it before (None: no one)


@dataclass(frozen=True, slots=True)
class Tail:
    """What a zone owner read of the journal: its records, the position it has read through
    (records of other zones included), and whether the journal goes further."""

    records: list[tuple[JournalEntry, str | None]]
    through: int
    more: bool


@dataclass(frozen=True, slots=True)
class LeaseRow:
    lease: str
    node_id: str
    remaining_s: float  # until it runs out (negative: it has)

    @property
    def live(self) -> bool:
        return self.remaining_s > 0


class ClusterTables:
    """The cluster's statements, each on its own (autocommit), through the store's ``rows``."""

    def __init__(self, rows: Rows, node: str) -> None:
        self._rows = rows
        self.node = node

    def heartbeat(self, lease_s: float) -> list[str]:
        """Say this collector is alive for ``lease_s``; returns the collectors alive."""
        self._rows(_HEARTBEAT, (self.node, lease_s))
        return [
            str(r[0])
            for r in self._rows(
                "SELECT node_id FROM cluster_nodes WHERE expires > clock_timestamp()"
                " ORDER BY node_id",
                (),
            )
        ]

    def leave(self) -> None:
        self._rows("DELETE FROM cluster_nodes WHERE node_id = %s RETURNING node_id", (self.node,))

    def leases(self) -> list[LeaseRow]:
        return [
            LeaseRow(str(z), str(n), float(left))
            for z, n, left in self._rows(
                "SELECT zone_id, node_id, (extract(epoch FROM expires)"
                " - extract(epoch FROM clock_timestamp()))::float8 FROM zone_leases",
                (),
            )
        ]

    def take(self, leases: Collection[str], lease_s: float) -> dict[str, Taken]:
        """Those of ``leases`` that had run out (or were this collector's), now its own."""
        if not leases:
            return {}
        wanted = sorted(leases)
        return {
            str(z): Taken(int(e), int(p), None if was is None else str(was))
            for z, e, p, was in self._rows(_TAKE, (wanted, self.node, lease_s, wanted))
        }

    def adopt_outbox(self, previous: str, topics: Collection[str]) -> int:
        """Make this collector's the publications on ``topics`` that ``previous``, dead (its
        heartbeat run out), stored and never published; returns how many."""
        if previous == self.node or not topics:
            return 0
        return len(self._rows(_ADOPT_OUTBOX, (self.node, previous, sorted(topics), previous)))

    def renew(self, held: Mapping[str, int], lease_s: float) -> set[str]:
        """Those of ``held`` (lease -> epoch) still this collector's, renewed for ``lease_s``."""
        if not held:
            return set()
        leases = sorted(held)
        return {
            str(r[0])
            for r in self._rows(_RENEW, (lease_s, self.node, leases, [held[z] for z in leases]))
        }

    def release(self, held: Mapping[str, int]) -> None:
        if held:
            leases = sorted(held)
            self._rows(
                _RELEASE + " RETURNING zone_id", (self.node, leases, [held[z] for z in leases])
            )

    def tail(self, after: int, zones: Collection[str], limit: int) -> Tail:
        """Journal records after ``after`` of ``zones`` or of no zone alone, in order, each with
        its zone (None: every zone's), at most ``limit``."""
        upto = after + TAIL_WINDOW
        found = self._rows(_TAIL, (after, upto, sorted(zones), limit))
        head = int(found[0][0])
        records = [
            (JournalEntry(int(p), str(t), int(tm), int(w), str(b)), z)
            for _, p, t, tm, w, b, z in found
            if p is not None
        ]
        # a full page: read through its last; else every one of ours up to the window's end or
        # the head (all committed up to it) is read
        full = len(records) == limit
        through = records[-1][0].pos if full else max(after, min(upto, head))
        return Tail(records, through, through < head)

    def head(self) -> int:
        return int(self._rows("SELECT pos FROM commit_head", ())[0][0])

    def snapshot(self, zone_id: str) -> Snapshot | None:
        """The zone's saved rules (or those saved for every zone by a single collector)."""
        found = {
            str(z): Snapshot(int(p), str(b))
            for z, p, b in self._rows(
                "SELECT zone_id, pos, body FROM engine_snapshots WHERE zone_id = ANY(%b::text[])",
                ([zone_id, EVERY_ZONE],),
            )
        }
        return found.get(zone_id) or found.get(EVERY_ZONE)

    def applied(self, leases: Collection[str]) -> dict[str, tuple[str, int, int]]:
        """Each lease's holder, epoch and the journal position its effects reach."""
        return {
            str(z): (str(n), int(e), int(p))
            for z, n, e, p in self._rows(
                "SELECT zone_id, node_id, epoch, applied_pos FROM zone_leases"
                " WHERE zone_id = ANY(%b::text[])",
                (sorted(leases),),
            )
        }

    def gateways(self) -> dict[str, tuple[bool, int]]:
        """Gateway -> (online, last heard), for the maintenance alerts' new owner."""
        return {
            str(g): (bool(o), int(t))
            for g, o, t in self._rows("SELECT gateway_id, online, last_seen FROM gateways", ())
        }

    def open_alerts(self, kinds: Collection[str], zone_id: str | None) -> list[dict[str, Any]]:
        """Alerts of ``kinds`` open or acknowledged (of the zone, if one is given)."""
        return [
            dict(json.loads(r[0]))
            for r in self._rows(
                "SELECT record FROM alerts WHERE status IN ('open', 'acknowledged')"
                " AND kind = ANY(%b::text[]) AND (%s::text IS NULL OR zone_id = %s)"
                " ORDER BY status DESC, raised_at, alert_id",
                (list(kinds), zone_id, zone_id),
            )
        ]

    def session_alerts(
        self, bay_ids: Collection[str], kinds: Collection[str]
    ) -> list[dict[str, Any]]:
        """Alerts of ``kinds`` raised in the sessions of ``bay_ids`` still open."""
        return [
            dict(json.loads(r[0]))
            for r in self._rows(
                "SELECT a.record FROM bays b JOIN alerts a ON a.bay_id = b.bay_id"
                " AND a.raised_at >= b.session_start WHERE b.session_start IS NOT NULL"
                " AND b.bay_id = ANY(%b::text[]) AND a.kind = ANY(%b::text[])"
                " ORDER BY a.raised_at, a.alert_id",
                (sorted(bay_ids), list(kinds)),
            )
        ]

    def snapshots_cover(self, zones: Collection[str]) -> bool:
        """Every one of ``zones`` has saved rules (its own, or a single collector's)."""
        saved = {str(r[0]) for r in self._rows("SELECT zone_id FROM engine_snapshots", ())}
        return EVERY_ZONE in saved or all(zone in saved for zone in zones)

    def oldest_snapshot(self) -> int:
        """Journal records after this position are still needed to rebuild some zone."""
        value = self._rows("SELECT min(pos) FROM engine_snapshots", ())[0][0]
        return 0 if value is None else int(value)
