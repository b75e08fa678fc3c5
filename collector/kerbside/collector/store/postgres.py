"""The store in PostgreSQL (``store.url``), for collectors that must survive the loss of their
machine or share the work between several (psycopg 3): the unit of work, recovery and retention
here; the connection in ``pgconn.py``, the API's reads and the sign-ins in ``pgreads.py``, the
schema in ``pgschema.py``, the time-series spool in ``pgspool.py``.

A unit of work is one transaction, sent whole in a pipeline and waited for once, at ``COMMIT``:
first the rows of its own (state changes, bays, sessions, alerts, rights, suspensions, gateways,
sensors, the outbox, the spool's lines), then the ids: one ``UPDATE`` of the one-row
``commit_head`` hands out this commit's journal positions and alert change ids, and the journal
rows, events, alert changes and rules snapshots that carry them are written after it (the server
reads the ids from the row it has just updated), then the counters and the watermark.
``synchronous_commit`` stays on: a commit returned is on disk, so an event is acknowledged to the
broker only once it is durable.

Why the head row: positions from a sequence are handed out in the order transactions *ask*, not
the order they *commit*, so a reader of ``pos > last`` could pass a position whose transaction
commits later and never see it. The head row's lock is held from that ``UPDATE`` to the end of
``COMMIT``, so commits that write the journal or alert changes take their ids, and become
visible, one after another: positions and change ids are dense and in commit order, and a reader
(a zone's owner tailing the journal, another collector's alert stream) that has seen N has seen
everything below N. The cost: those commits are serialised from the ``UPDATE`` to the end of
their WAL flush (the journal rows and events of a batch, then the flush), so the database makes
at most one such commit per WAL flush, each with up to ``ingest.batch_max`` events; the rest of
each unit of work, before the ``UPDATE``, runs side by side with the others'. A rolled-back
transaction rolls its ``UPDATE`` back too: no position is ever skipped or handed out twice.

Rows are written in key order (bays, alerts, gateways... sorted) so that two collectors writing
the same rows lock them in the same order and cannot deadlock; the head row is taken after every
other lock but counters and the watermark, which every transaction takes last, in that order.

A lost connection fails the call in hand with ``StoreError`` (the unit of work is then not
acknowledged and is tried again); the next call connects again, so the collector carries on by
itself once the database is back.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import psycopg

from kerbside.collector.effects import AlertWrite, Effects, SessionStep, session_runs
from kerbside.collector.errors import StoreError, StoreRefused
from kerbside.collector.maintenance import KINDS as MAINTENANCE_KINDS
from kerbside.collector.rules.alerts import KINDS as ENFORCEMENT_KINDS
from kerbside.collector.store import (
    BayState,
    Committed,
    JournalEntry,
    LineSpool,
    OutboxMessage,
    Recovered,
    Snapshot,
    Work,
    dumps,
    pgcluster,
    pgschema,
)
from kerbside.collector.store.opening import public_url
from kerbside.collector.store.pgconn import Cursor, Database, columns, connect, one_line
from kerbside.collector.store.pgreads import PostgresReads
from kerbside.collector.store.spool import blocks
from kerbside.core.instants import Instant

# Channel NOTIFYed (with the last change id) by every commit that writes alert changes: any
# collector LISTENing learns of every zone's changes as they commit, in commit order.
ALERT_CHANGES_CHANNEL = "kerbside_alert_changes"
# Channel NOTIFYed (with the last position) by every commit that adds to the journal when
# several collectors share the store: each zone's owner reads its zones' new records.
JOURNAL_CHANNEL = "kerbside_journal"

JOURNAL_PAGE = 5000  # journal rows read per query (recovery and export read it all)

_SESSION_SQL = {
    SessionStep.OPEN: "INSERT INTO sessions (bay_id, start) VALUES (%s, %s) ON CONFLICT DO NOTHING",
    SessionStep.CLOSE: "UPDATE sessions SET ended = %s WHERE bay_id = %s AND start = %s",
    SessionStep.ALERT: "UPDATE sessions SET alerts = alerts + 1 WHERE bay_id = %s AND start = %s",
}
_OPEN_SESSIONS = (
    "INSERT INTO sessions (bay_id, start) SELECT * FROM unnest(%b::text[], %b::bigint[])"
    " ON CONFLICT DO NOTHING"
)
_CLOSE_SESSIONS = (
    "UPDATE sessions s SET ended = u.e FROM unnest(%b::text[], %b::bigint[], %b::bigint[])"
    " AS u(b, t, e) WHERE s.bay_id = u.b AND s.start = u.t"
)
_COUNT_ALERTS = (
    "UPDATE sessions s SET alerts = s.alerts + u.n"
    " FROM unnest(%b::text[], %b::bigint[], %b::bigint[]) AS u(b, t, n)"
    " WHERE s.bay_id = u.b AND s.start = u.t"
)
_UPSERT_BAYS = (
    "INSERT INTO bays (bay_id, state, since, gateway_id, session_start)"
    " SELECT * FROM unnest(%b::text[], %b::text[], %b::bigint[], %b::text[], %b::bigint[])"
    " ON CONFLICT (bay_id) DO UPDATE SET state = excluded.state, since = excluded.since,"
    " gateway_id = excluded.gateway_id, session_start = excluded.session_start"
)
_INSERT_STATE_CHANGES = (
    "INSERT INTO state_changes (bay_id, ts, state)"
    " SELECT b, t, s FROM unnest(%b::text[], %b::bigint[], %b::text[])"
    " WITH ORDINALITY AS u(b, t, s, o) ORDER BY o"
)
_UPSERT_ALERTS = (
    "INSERT INTO alerts (alert_id, kind, status, zone_id, bay_id, raised_at, record)"
    " SELECT * FROM unnest(%b::text[], %b::text[], %b::text[], %b::text[], %b::text[],"
    " %b::bigint[], %b::text[])"
    " ON CONFLICT (alert_id) DO UPDATE SET status = excluded.status, record = excluded.record"
)
# The history is kept as the JSON text it is served as (like the record): an entry is appended
# to the array's text rather than through jsonb, which would reorder the entry's keys.
_ADD_NOTE = (
    "UPDATE alerts SET history = CASE WHEN history = '[]' THEN '[' || %s || ']'"
    " ELSE left(history, -1) || ',' || %s || ']' END WHERE alert_id = %s"
)
_UPSERT_RIGHT = (
    "INSERT INTO rights (right_id, body, deleted, owner) VALUES (%s, %s, %s, %s)"
    " ON CONFLICT (right_id) DO UPDATE SET body = excluded.body, deleted = excluded.deleted,"
    " owner = excluded.owner"
)
_UPSERT_SUSPENSION = (
    "INSERT INTO suspensions (suspension_id, body) VALUES (%s, %s)"
    " ON CONFLICT (suspension_id) DO UPDATE SET body = excluded.body"
)
_UPSERT_GATEWAY = (
    "INSERT INTO gateways (gateway_id, online, last_seen, status, health)"
    " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (gateway_id) DO UPDATE SET"
    " online = excluded.online, last_seen = excluded.last_seen,"
    " status = COALESCE(excluded.status, gateways.status),"
    " health = COALESCE(excluded.health, gateways.health)"
)
_UPSERT_SENSOR = (
    "INSERT INTO sensors (sensor_id, gateway_id, bay_id, health) VALUES (%s, %s, %s, %s)"
    " ON CONFLICT (sensor_id) DO UPDATE SET gateway_id = excluded.gateway_id,"
    " bay_id = excluded.bay_id, health = excluded.health"
)
_INSERT_OUTBOX = (
    "INSERT INTO outbox (node, topic, payload, qos, retain)"
    " SELECT %s, t, p, q, r FROM unnest(%b::text[], %b::text[], %b::smallint[], %b::boolean[])"
    " WITH ORDINALITY AS u(t, p, q, r, o) ORDER BY o RETURNING id"
)
_TAKE_IDS = (
    "UPDATE commit_head SET pos = pos + %s, change_id = change_id + %s RETURNING pos, change_id"
)
# The rows that carry the ids read them from the head row this transaction has just updated (its
# own update is what it sees): sent at once, without waiting for the UPDATE's result.
_INSERT_JOURNAL = (
    "INSERT INTO journal (pos, type, time, watermark, body, zone_id)"
    " SELECT h.pos - %s + u.o, u.t, u.ti, u.w, u.b, u.z FROM commit_head h,"
    " unnest(%b::text[], %b::bigint[], %b::bigint[], %b::text[], %b::text[])"
    " WITH ORDINALITY AS u(t, ti, w, b, z, o)"
)
_NOTIFY_JOURNAL = "SELECT pg_notify(%s, pos::text) FROM commit_head"
_INSERT_EVENTS = (
    "INSERT INTO events (event_id, pos, digest)"
    " SELECT u.e, h.pos - %s + u.o, u.d FROM commit_head h,"
    " unnest(%b::text[], %b::bigint[], %b::text[]) AS u(e, o, d)"
)
_INSERT_CHANGES = (
    "INSERT INTO alert_changes (id, alert_id, record, node, epoch)"
    " SELECT h.change_id - %s + u.o, u.a, u.r, %s, u.e FROM commit_head h,"
    " unnest(%b::text[], %b::text[], %b::bigint[]) WITH ORDINALITY AS u(a, r, e, o)"
)
_NOTIFY_CHANGES = "SELECT pg_notify(%s, change_id::text) FROM commit_head"
_UPSERT_SNAPSHOTS = (
    "INSERT INTO engine_snapshots (zone_id, pos, body)"
    " SELECT u.z, h.pos, u.b FROM commit_head h, unnest(%b::text[], %b::text[]) AS u(z, b)"
    " ON CONFLICT (zone_id) DO UPDATE SET pos = excluded.pos, body = excluded.body"
)
# A zone's owner (several collectors) saves its zones' rules at the position they reflect.
_UPSERT_ZONE_SNAPSHOTS = (
    "INSERT INTO engine_snapshots (zone_id, pos, body)"
    " SELECT u.z, %s, u.b FROM unnest(%b::text[], %b::text[]) AS u(z, b)"
    " ON CONFLICT (zone_id) DO UPDATE SET pos = excluded.pos, body = excluded.body"
)
_ADD_COUNTERS = (
    "INSERT INTO counters (name, node, value)"
    " SELECT n, %s, v FROM unnest(%b::text[], %b::bigint[]) AS u(n, v)"
    " ON CONFLICT (name, node) DO UPDATE SET value = counters.value + excluded.value"
)
_SET_KV = (
    "INSERT INTO kv (key, value) VALUES (%s, %s)"
    " ON CONFLICT (key) DO UPDATE SET value = excluded.value"
)


def migrate(url: str, *, password: str | None = None) -> int:
    """``kerbside-collector migrate``: create or upgrade the schema; returns the version found."""
    name = public_url(url)
    try:
        with connect(url, password, "migrate") as conn:
            return pgschema.migrate(conn, name)
    except psycopg.Error as exc:
        raise StoreRefused(f"{name}: {one_line(exc, url, password)}") from exc


class PostgresStore(PostgresReads):
    """The store port over a PostgreSQL database whose schema ``migrate`` made.

    ``node`` keys what is this collector's own in a shared database: its outbox rows and its
    share of the counters (summed when read). Commits go on a connection of their own, so one
    may run in a worker thread while the event loop reads on the other."""

    commits_apart = True

    def __init__(self, url: str, *, password: str | None = None, node: str = "") -> None:
        super().__init__(url, password, node)
        self._commits = Database(url, password, node)
        # several collectors: leases, heartbeats and the zones' owners' reading of the journal
        self.cluster = pgcluster.ClusterTables(self._rows, node)
        try:
            pgschema.check(self._connection(), self.name)
            self._last_pos = self.last_journal_pos()
        except psycopg.Error as exc:
            self.close()
            # at start, a database out of reach is for someone to see to: one line, exit 2
            raise StoreRefused(f"{self.name}: cannot open: {self._described(exc)}") from exc
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        self._commits.close()
        super().close()

    def open_spool(self, max_lines: int, block: int) -> LineSpool:
        from kerbside.collector.store.pgspool import PostgresSpool  # noqa: PLC0415

        return PostgresSpool(
            lambda: connect(self._url, self._password, self.node), self.name, max_lines
        )

    # -- the unit of work -------------------------------------------------------------------------

    def begin(self, work: Work) -> Callable[[], Committed]:
        """All of the commit is for the worker thread: psycopg waits for the database without
        holding Python's lock."""
        return functools.partial(self.commit, work)

    def commit(self, work: Work) -> Committed:
        try:
            with self._commits._errors("commit failed"):
                db = self._commits._connection()
                with db.pipeline(), db.transaction(), db.cursor() as cur:
                    # Everything goes out before anything is waited for: the database works
                    # while the next statement's arrays are made. Results are read after the
                    # commit, from cursors of their own (a pipelined cursor that ran
                    # ``executemany`` may hand back another statement's result).
                    outbox, ids = self._write(cur, work)
                committed = self._committed(work, outbox, ids)
                for pending in (outbox, ids):
                    if pending is not None:
                        pending.close()
        except StoreError as exc:
            raise pgcluster.refusal(exc, self.name) from exc.__cause__
        self._last_pos = committed.last_pos
        return committed

    def _committed(self, work: Work, outbox: Cursor | None, ids: Cursor | None) -> Committed:
        effects = work.effects
        published: list[OutboxMessage] = []
        if outbox is not None:
            published = [
                OutboxMessage(row[0], topic, payload, 1, retain)
                for row, (topic, payload, retain) in zip(
                    outbox.fetchall(), effects.publications, strict=True
                )
            ]
        if ids is None:
            return Committed(self._last_pos, [], published)
        row = ids.fetchone()
        assert row is not None  # the head row is made with the schema
        last_pos, last_change = int(row[0]), int(row[1])
        first = last_change - len(effects.alerts) + 1
        changes = [(first + i, a.record) for i, a in enumerate(effects.alerts)]
        return Committed(last_pos, changes, published)

    def _write(self, cur: Cursor, work: Work) -> tuple[Cursor | None, Cursor | None]:
        """Send the unit of work; returns the cursors of the outbox's ids and of the head's."""
        effects = work.effects
        if work.fence is not None:
            # first: the lease rows' locks hold a takeover until this commit ends
            pgcluster.fence(cur, work.fence)
        if effects.state_changes:
            cur.execute(_INSERT_STATE_CHANGES, columns(effects.state_changes))
        if effects.bays:
            bays = sorted(effects.bays, key=lambda row: row[0])
            cur.execute(_UPSERT_BAYS, columns(bays))
        self._write_sessions(cur, effects)
        self._write_alerts(cur, effects)
        if effects.rights:
            cur.executemany(
                _UPSERT_RIGHT,
                [
                    (r.right_id, dumps(r.body), r.deleted, r.owner)
                    for r in sorted(effects.rights, key=lambda r: r.right_id)
                ],
            )
        if effects.suspensions:
            cur.executemany(
                _UPSERT_SUSPENSION,
                [
                    (s.suspension_id, dumps(s.body))
                    for s in sorted(effects.suspensions, key=lambda s: s.suspension_id)
                ],
            )
        if effects.gateways:
            cur.executemany(
                _UPSERT_GATEWAY,
                [
                    (
                        g.gateway_id,
                        g.online,
                        g.last_seen,
                        None if g.status is None else dumps(g.status),
                        None if g.health is None else dumps(g.health),
                    )
                    for g in sorted(effects.gateways, key=lambda g: g.gateway_id)
                ],
            )
        if effects.sensors:
            cur.executemany(
                _UPSERT_SENSOR,
                [
                    (s.sensor_id, s.gateway_id, s.bay_id, dumps(s.health))
                    for s in sorted(effects.sensors, key=lambda s: s.sensor_id)
                ],
            )
        if work.delivered:
            cur.execute(
                "DELETE FROM outbox WHERE node = %s AND id = ANY(%b::bigint[])",
                (self.node, list(work.delivered)),
            )
        if work.lines:
            cut = blocks(work.lines)
            cur.execute(
                "INSERT INTO timeseries_spool (n, lines)"
                " SELECT * FROM unnest(%b::integer[], %b::text[])",
                ([len(b) for b in cut], ["\n".join(b) for b in cut]),
            )
        outbox = None
        if effects.publications:
            topics, payloads, retains = columns(effects.publications)
            outbox = cur.connection.cursor()
            outbox.execute(
                _INSERT_OUTBOX.encode(), (self.node, topics, payloads, [1] * len(topics), retains)
            )
        ids = self._write_ordered(cur, work)
        if effects.counters:
            names = sorted(effects.counters)
            cur.execute(_ADD_COUNTERS, (self.node, names, [effects.counters[n] for n in names]))
        if effects.watermark is not None:
            cur.execute(_SET_KV, ("watermark", str(effects.watermark)))
        return outbox, ids

    def _write_ordered(self, cur: Cursor, work: Work) -> Cursor | None:
        """The rows that carry commit-ordered ids, after taking the ids (the module says why);
        returns the cursor of the head's UPDATE, or None when nothing needed ids."""
        effects = work.effects
        journal, alerts = effects.journal, effects.alerts
        if not journal and not alerts and not work.snapshots:
            return None
        ids = cur.connection.cursor()
        ids.execute(_TAKE_IDS.encode(), (len(journal), len(alerts)))
        n = len(journal)
        if journal:
            types, times, watermarks, bodies, event_ids, digests, zones = columns(journal)
            cur.execute(_INSERT_JOURNAL, (n, types, times, watermarks, bodies, zones))
            events = [
                (event_id, i, digest)
                for i, (event_id, digest) in enumerate(zip(event_ids, digests, strict=True), 1)
                if event_id is not None
            ]
            if events:
                cur.execute(_INSERT_EVENTS, (n, *columns(events)))
            if self.node:  # several collectors: the zones' owners read what was added
                cur.execute(_NOTIFY_JOURNAL, (JOURNAL_CHANNEL,))
        if alerts:
            cur.execute(
                _INSERT_CHANGES,
                (
                    len(alerts),
                    self.node,
                    [a.record["alert_id"] for a in alerts],
                    [a.text for a in alerts],
                    pgcluster.change_epochs(work, len(alerts)),
                ),
            )
            cur.execute(_NOTIFY_CHANGES, (ALERT_CHANGES_CHANNEL,))
        if work.snapshots and work.fence is not None:
            # a zone's owner saves its own zones' rules, at the position they reflect
            zones = sorted(work.snapshots)
            cur.execute(
                _UPSERT_ZONE_SNAPSHOTS,
                (work.snapshot_pos or 0, zones, [work.snapshots[z] for z in zones]),
            )
        elif work.snapshots:
            zones = list(work.snapshots)
            # zones saved no more (the site lost them, or they were saved as one) go
            cur.execute("DELETE FROM engine_snapshots WHERE zone_id <> ALL(%b::text[])", (zones,))
            cur.execute(_UPSERT_SNAPSHOTS, (zones, [work.snapshots[z] for z in zones]))
        return ids

    def _write_sessions(self, cur: Cursor, effects: Effects) -> None:
        """Three statements whatever the number of steps: the sessions opened, then the ends of
        those closed (the last end of each), then each one's alerts added up. The same as the
        steps one by one, since a session's steps come open first; steps that do not (never
        from the core) go one by one."""
        ops = effects.sessions
        if not ops:
            return
        opened: dict[tuple[str, int], None] = {}
        ends: dict[tuple[str, int], int | None] = {}
        alerts: dict[tuple[str, int], int] = {}
        for step, bay_id, start, end in ops:
            key = (bay_id, start)
            if step is SessionStep.OPEN:
                if key in ends or key in alerts:
                    self._write_steps(cur, effects)  # a step before its session's opening
                    return
                opened[key] = None
            elif step is SessionStep.CLOSE:
                ends[key] = end
            else:
                alerts[key] = alerts.get(key, 0) + 1
        if opened:
            cur.execute(_OPEN_SESSIONS, columns(sorted(opened)))
        if ends:
            cur.execute(_CLOSE_SESSIONS, columns((b, t, e) for (b, t), e in sorted(ends.items())))
        if alerts:
            cur.execute(_COUNT_ALERTS, columns((b, t, n) for (b, t), n in sorted(alerts.items())))

    def _write_steps(self, cur: Cursor, effects: Effects) -> None:
        """Session writes as ``session_runs`` groups them, one executemany a run."""
        for step, params in session_runs(effects.sessions):
            cur.executemany(_SESSION_SQL[step], params)

    def _write_alerts(self, cur: Cursor, effects: Effects) -> None:
        if effects.alerts:
            # one row per alert, its last write (one statement cannot update a row twice)
            last: dict[str, AlertWrite] = {a.record["alert_id"]: a for a in effects.alerts}
            rows = [a.row() for _, a in sorted(last.items())]
            cur.execute(_UPSERT_ALERTS, columns(rows))
        if effects.notes:
            cur.executemany(
                _ADD_NOTE,
                [(dumps(n.entry), dumps(n.entry), n.alert_id) for n in effects.notes],
            )

    # -- recovery and ingest ---------------------------------------------------------------------

    def recover(self) -> Recovered:
        with self._errors("recovery read failed"):
            db = self._connection()
            # one snapshot of the database for all of it, whoever else writes meanwhile
            with db.transaction(), db.cursor() as cur:
                cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                return self._recover(cur)

    def _recover(self, cur: Cursor) -> Recovered:
        cur.execute("SELECT bay_id, state, since, gateway_id, session_start FROM bays")
        bays: dict[str, BayState] = {r[0]: (r[1], r[2], r[3], r[4]) for r in cur.fetchall()}
        cur.execute("SELECT gateway_id, online, last_seen FROM gateways")
        gateways = {g: (bool(o), int(t)) for g, o, t in cur.fetchall()}
        cur.execute(
            "SELECT record FROM alerts WHERE status IN ('open', 'acknowledged')"
            " AND kind = ANY(%b::text[]) ORDER BY status DESC, raised_at, alert_id",
            (list(MAINTENANCE_KINDS),),
        )
        maintenance = [dict(json.loads(r[0])) for r in cur.fetchall()]
        # enforcement alerts of open sessions: those raised since the session began
        cur.execute(
            "SELECT a.record FROM bays b JOIN alerts a ON a.bay_id = b.bay_id"
            " AND a.raised_at >= b.session_start WHERE b.session_start IS NOT NULL"
            " AND a.kind = ANY(%b::text[]) ORDER BY a.raised_at, a.alert_id",
            (list(ENFORCEMENT_KINDS),),
        )
        session_alerts = [dict(json.loads(r[0])) for r in cur.fetchall()]
        cur.execute("SELECT zone_id, pos, body FROM engine_snapshots")
        snapshots = {z: Snapshot(int(p), str(b)) for z, p, b in cur.fetchall()}
        cur.execute("SELECT value FROM kv WHERE key = 'watermark'")
        row = cur.fetchone()
        watermark = None if row is None else int(row[0])
        return Recovered(bays, gateways, maintenance, session_alerts, snapshots, watermark)

    def journal(
        self, after_pos: int = 0, types: Iterable[str] | None = None
    ) -> Iterator[JournalEntry]:
        """In pages of ``JOURNAL_PAGE``, each its own query: the caller may commit between."""
        sql = "SELECT pos, type, time, watermark, body FROM journal WHERE pos > %s"
        kinds = None if types is None else list(types)
        if kinds is not None:
            sql += " AND type = ANY(%b::text[])"
        sql += f" ORDER BY pos LIMIT {JOURNAL_PAGE}"
        while True:
            params: list[Any] = [after_pos] if kinds is None else [after_pos, kinds]
            rows = self._rows(sql, params)
            for pos, type_, time, watermark, body in rows:
                yield JournalEntry(pos, type_, time, watermark, body)
            if len(rows) < JOURNAL_PAGE:
                return
            after_pos = rows[-1][0]

    def event_digests(self, event_ids: Sequence[str]) -> dict[str, str]:
        """The digests of those of ``event_ids`` already stored."""
        return {
            str(e): str(d)
            for e, d in self._rows(
                "SELECT event_id, digest FROM events WHERE event_id = ANY(%b::text[])",
                (list(event_ids),),
            )
        }

    def outbox(self) -> list[OutboxMessage]:
        return [
            OutboxMessage(int(i), t, p, int(q), bool(r))
            for i, t, p, q, r in self._rows(
                "SELECT id, topic, payload, qos, retain FROM outbox WHERE node = %s ORDER BY id",
                (self.node,),
            )
        ]

    def last_alert_change(self) -> int:
        return int(self._one("SELECT change_id FROM commit_head"))

    def last_journal_pos(self) -> int:
        return int(self._one("SELECT pos FROM commit_head"))

    def prune(self, before: Instant, keep_from_pos: int) -> int:
        """Delete occupancy records, events, state changes and closed sessions older than
        ``before``; never journal entries the rules still need (``pos >= keep_from_pos``)."""
        with self._errors("pruning failed"):
            db = self._connection()
            with db.transaction(), db.cursor() as cur:
                cur.execute(
                    "DELETE FROM events WHERE pos IN (SELECT pos FROM journal WHERE"
                    " type = 'occupancy' AND time < %s AND pos < %s)",
                    (before, keep_from_pos),
                )
                cur.execute(
                    "DELETE FROM journal WHERE type = 'occupancy' AND time < %s AND pos < %s",
                    (before, keep_from_pos),
                )
                removed = cur.rowcount
                # the rules clock's ticks (several collectors), once no zone needs them
                cur.execute(
                    "DELETE FROM journal WHERE type = 'tick' AND time < %s AND pos < %s",
                    (before, keep_from_pos),
                )
                cur.execute(
                    "DELETE FROM state_changes WHERE ts < %s AND id NOT IN"
                    " (SELECT max(id) FROM state_changes GROUP BY bay_id)",
                    (before,),
                )
                cur.execute(
                    "DELETE FROM sessions WHERE ended IS NOT NULL AND ended < %s", (before,)
                )
                cur.execute(
                    "DELETE FROM alert_changes c USING alerts a WHERE a.alert_id = c.alert_id"
                    " AND a.status IN ('cleared', 'resolved') AND a.raised_at < %s",
                    (before,),
                )
        return int(removed)
