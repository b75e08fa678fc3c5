"""The store in one SQLite file in WAL mode, the collector's default (``store.path``).

A unit of work is one ``BEGIN IMMEDIATE`` ... ``COMMIT`` of one statement per table (not one
per row: a backlog batch is up to 2,000 events), on a connection of its own. The event loop
begins it (``begin``): it hands out the ids and writes the journal and the few rows of the
rarer tables with ``executemany``. The narrow rows every event adds (events, state changes,
bays) it only encodes as JSON, and the function ``begin`` returns writes them, one statement a
table from that JSON, and commits (the write-ahead log written and synced, a checkpoint now
and then). A worker thread runs it while the loop reads on the other connection, which sees
only what is committed, and decides the next batch: Python's sqlite3 takes the GIL back after
every row of an ``executemany``, so a worker writing rows one by one would wait on the busy
loop for each, but a statement from JSON runs in SQLite with no Python between its rows.
Journal positions, alert change ids and outbox ids are handed out here and never handed out
again, even for rows retention has deleted (their high-water marks are kept in ``kv``).
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import orjson

from kerbside.collector.effects import Effects, SessionStep, session_runs
from kerbside.collector.errors import DamagedStoreError, StoreError
from kerbside.collector.gateway_stats import gateway_summaries
from kerbside.collector.maintenance import KINDS as MAINTENANCE_KINDS
from kerbside.collector.records import Right, from_journal_dict
from kerbside.collector.rules.alerts import KINDS as ENFORCEMENT_KINDS
from kerbside.collector.store import (
    BayState,
    Committed,
    JournalEntry,
    OutboxMessage,
    Recovered,
    Snapshot,
    Work,
    dumps,
)
from kerbside.collector.store.schema import prepare
from kerbside.collector.store.spool import Spool, blocks
from kerbside.collector.store.sqlreads import SqlReads, Statement
from kerbside.core.instants import Instant, format_instant
from kerbside.core.transaction import end_transaction, immediate, roll_back

# A session is in sessions_recent from its opening until a fold moves it, closed, into sessions
# (below): never in both. An opening of one already moved changes nothing, as before; a close
# or an alert looks in sessions_recent, then in sessions for any it did not find there.
_SESSION_SQL = {
    SessionStep.OPEN: (
        "INSERT OR IGNORE INTO sessions_recent(bay_id, start, end) SELECT ?1, ?2, NULL"
        " WHERE NOT EXISTS (SELECT 1 FROM sessions WHERE bay_id = ?1 AND start = ?2)"
    ),
    SessionStep.CLOSE: "UPDATE sessions_recent SET end = ? WHERE bay_id = ? AND start = ?",
    SessionStep.ALERT: (
        "UPDATE sessions_recent SET alerts = alerts + 1 WHERE bay_id = ? AND start = ?"
    ),
}
_SESSION_FOLDED_SQL = {
    SessionStep.CLOSE: "UPDATE sessions SET end = ? WHERE bay_id = ? AND start = ?",
    SessionStep.ALERT: "UPDATE sessions SET alerts = alerts + 1 WHERE bay_id = ? AND start = ?",
}
_UPSERT_ALERT = (
    "INSERT INTO alerts(alert_id, kind, status, zone_id, bay_id, raised_at, record)"
    " VALUES (?,?,?,?,?,?,?) ON CONFLICT(alert_id) DO UPDATE SET status=excluded.status,"
    " record=excluded.record"
)
_UPSERT_GATEWAY = (
    "INSERT INTO gateways(gateway_id, online, last_seen, status, health) VALUES (?,?,?,?,?)"
    " ON CONFLICT(gateway_id) DO UPDATE SET online=excluded.online,"
    " last_seen=excluded.last_seen, status=COALESCE(excluded.status, gateways.status),"
    " health=COALESCE(excluded.health, gateways.health)"
)
_UPSERT_SENSOR = (
    "INSERT INTO sensors(sensor_id, gateway_id, bay_id, health) VALUES (?,?,?,?)"
    " ON CONFLICT(sensor_id) DO UPDATE SET gateway_id=excluded.gateway_id,"
    " bay_id=excluded.bay_id, health=excluded.health"
)
_UPSERT_KV = (
    "INSERT INTO kv(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value=excluded.value"
)


# The narrow rows every event adds (or changes), written as the commit ends, one statement a
# table from a JSON array of rows, in its order (``_bulk``): the loop only encodes them (orjson,
# in C); SQLite reading them back costs 1.1-1.3 times what binding them row by row does. Not
# the journal: json_extract parses a row's text once for each column, and a journal row carries
# its record's whole text (3.7 times). (``WHERE true`` lets ON CONFLICT follow a SELECT.)
_BULK_SQL = {
    "events": (
        "INSERT INTO events(event_id, pos, digest)"
        " SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'),"
        " json_extract(value, '$[2]')"
        " FROM json_each(?)"
    ),
    "state_changes": (
        "INSERT INTO state_changes_recent(bay_id, ts, state)"
        " SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'),"
        " json_extract(value, '$[2]')"
        " FROM json_each(?)"
    ),
    "bays": (
        "INSERT INTO bays(bay_id, state, since, gateway_id, session_start)"
        " SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'),"
        " json_extract(value, '$[2]'), json_extract(value, '$[3]'),"
        " json_extract(value, '$[4]')"
        " FROM json_each(?) WHERE true"
        " ON CONFLICT(bay_id) DO UPDATE SET state=excluded.state, since=excluded.since,"
        " gateway_id=excluded.gateway_id, session_start=excluded.session_start"
    ),
}


def _bulk(table: str, rows: Sequence[tuple[Any, ...]]) -> tuple[str, str | None]:
    """The statement that writes ``rows`` into ``table`` as the commit ends, with its JSON."""
    return _BULK_SQL[table], orjson.dumps(rows).decode()


# A bay's state changes are kept in bay order (the index state_changes_bay), so that a bay's
# timeline is one range of it. But a batch then puts a row on a page of that index for each bay
# it changes, and each such page goes whole into the write-ahead log, then into the file: with
# 1,000 bays changing, some 2 KB written an event once the index has a page a bay, as many as
# the rest of the commit. So new changes go into state_changes_recent, in the order they come
# (a batch's rows on a few pages), and move into state_changes in one statement once this many
# wait there, in the commit that takes them past it: the index's pages once for them all, where
# a batch wrote them each time. Readers read both tables in one transaction. A fold still
# rewrites most of the index (some 2.7 pages a bay after 600,000 events on 1,000 bays: inserts
# into the middle of each bay's range split and rebalance its pages), so the bytes written an
# event still grow with the store, more slowly: SQLite wrote 1.7 KB an event over the first
# 100,000 events, 3.4 KB over events 500,000-600,000.
# (tools/decide_cost.py --every shows the bytes written.)
FOLD_CHANGES = 16_384
_FOLD = (
    # in the order they came, so that ids keep telling which of two changes of an instant is last
    "INSERT INTO state_changes(bay_id, ts, state)"
    " SELECT bay_id, ts, state FROM state_changes_recent ORDER BY id",
    "DELETE FROM state_changes_recent",
)


# Sessions likewise: kept in bay order (sessions' key), a batch that opens and closes sessions
# of 1,000 bays would rewrite a page for each. So a session is written into sessions_recent,
# in the order sessions start (its key is (start, bay_id): a batch's new rows on its last
# pages, its closes on the pages of the sessions it opened lately), and once this many closed
# ones wait there they move into sessions together, in the commit that takes them past it. The
# open ones stay (one a bay at most) until they close. Readers read both tables in one
# statement.
FOLD_SESSIONS = 16_384
_FOLD_SESSIONS = (
    # (never in both tables; were one, the newer row would win rather than every commit fail)
    "INSERT OR REPLACE INTO sessions(bay_id, start, end, alerts)"
    " SELECT bay_id, start, end, alerts FROM sessions_recent WHERE end IS NOT NULL"
    " ORDER BY bay_id, start",
    "DELETE FROM sessions_recent WHERE end IS NOT NULL",
)


# The commits' connection keeps up to this many KiB of pages (SQLite's default is 2,000): the
# indexes a batch writes into at a thousand places (a bay's state changes, its sessions) stay in
# memory instead of being read back from the file for every batch.
COMMIT_CACHE_KIB = 32_768


def _connect(path: str) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    # FULL: a batch is acknowledged to the broker only after its commit is on disk.
    db.execute("PRAGMA synchronous=FULL")
    db.execute("PRAGMA busy_timeout=5000")
    return db


# SQLite's primary result codes for a file that is not a database or whose pages are damaged
_DAMAGED = frozenset({sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB})


def _failure(path: object, exc: sqlite3.Error, what: str = "") -> StoreError:
    """The store's error for a SQLite one: ``DamagedStoreError`` when the file itself is bad."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None and code & 0xFF in _DAMAGED:
        return DamagedStoreError(
            f"{path}: the store is damaged ({exc}); restore it from a backup, or move it aside"
            " to start with an empty one"
        )
    return StoreError(f"{path}: {what}{exc}")


class SqliteStore(SqlReads):
    """The store port over one SQLite database (``":memory:"`` for tests)."""

    _SESSION_END = "end"
    _SESSION_TABLES = ("sessions", "sessions_recent")

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        memory = str(path) == ":memory:"
        if not memory:
            if self.path.is_dir():
                raise StoreError(f"{path}: is a directory; give a file name in it")
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(
                    f"{path}: cannot create its directory {exc.filename}: {exc.strerror}"
                ) from exc
        try:
            self._db = _connect(str(path))
            self.migrated_from = prepare(self._db, str(path))
            # units of work on a connection of their own (in memory there is only the one)
            self._commits = self._db if memory else _connect(str(path))
            if not memory:
                self._commits.execute(f"PRAGMA cache_size=-{COMMIT_CACHE_KIB}")
            self._reset_counters()
        except sqlite3.Error as exc:
            raise _failure(path, exc) from exc
        # a commit may end in a worker thread while the loop reads and decides
        self.commits_apart = self._commits is not self._db

    def _read(
        self, sql: str, params: Sequence[Any] = (), what: str = "read failed"
    ) -> list[tuple[Any, ...]]:
        return self._db.execute(sql, params).fetchall()

    def _write_together(self, statements: Sequence[Statement]) -> int:
        with self._transaction():
            return sum(self._db.execute(sql, params).rowcount for sql, params in statements)

    def _reset_counters(self) -> None:
        hw_pos = self._first("SELECT value FROM kv WHERE key = 'journal_pos_hw'")
        hw_change = self._first("SELECT value FROM kv WHERE key = 'change_id_hw'")
        # never hand out an id again, even one whose row retention has deleted
        self._next_pos = max(self._first("SELECT MAX(pos) FROM journal") or 0, int(hw_pos or 0)) + 1
        self._next_change = (
            max(self._first("SELECT MAX(id) FROM alert_changes") or 0, int(hw_change or 0)) + 1
        )
        self._next_outbox = (self._first("SELECT MAX(id) FROM outbox") or 0) + 1
        self._recent_changes = self._first("SELECT COUNT(*) FROM state_changes_recent") or 0
        self._recent_closed = (
            self._first("SELECT COUNT(*) FROM sessions_recent WHERE end IS NOT NULL") or 0
        )

    def close(self) -> None:
        if self._commits is not self._db:
            self._commits.close()
        self._db.close()

    def open_spool(self, max_lines: int, block: int) -> Spool:
        return Spool(self.path, max_lines, block=block)

    @contextlib.contextmanager
    def _transaction(self, what: str = "") -> Iterator[None]:
        """Statements written together, or none of them; ``what`` prefixes a failure. Ids
        handed out to a failed unit of work are not handed out again: nothing saw them, and a
        gap is harmless."""
        try:
            with immediate(self._db):
                yield
        except sqlite3.Error as exc:
            raise _failure(self.path, exc, what) from exc

    # -- the unit of work ------------------------------------------------------------------

    def commit(self, work: Work) -> Committed:
        return self.begin(work)()

    def begin(self, work: Work) -> Callable[[], Committed]:
        """``work`` begun in a transaction of the commits' connection; the function returned
        writes its bulk rows and commits it (from any thread), and returns what was committed.
        If they fail, nothing of ``work`` is stored."""
        db = self._commits
        bulk: list[tuple[str, str | None]] = []
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                committed = self._write(work, bulk)
            except BaseException:
                roll_back(db)
                raise
        except sqlite3.Error as exc:
            raise _failure(self.path, exc, "commit failed: ") from exc

        def finish() -> Committed:
            try:
                try:
                    for sql, rows in bulk:
                        db.execute(sql, () if rows is None else (rows,))
                except BaseException:
                    roll_back(db)
                    raise
                end_transaction(db)
            except sqlite3.Error as exc:
                raise _failure(self.path, exc, "commit failed: ") from exc
            return committed

        return finish

    def _write(self, work: Work, bulk: list[tuple[str, str | None]]) -> Committed:
        """The rows of ``work``: written here, but for the statements added to ``bulk``, which
        write theirs as the commit ends."""
        db = self._commits
        effects = work.effects
        if effects.journal:
            first = self._next_pos
            self._next_pos += len(effects.journal)
            db.executemany(
                "INSERT INTO journal(pos, type, time, watermark, body) VALUES (?,?,?,?,?)",
                [
                    (first + i, row[0], row[1], row[2], row[3])
                    for i, row in enumerate(effects.journal)
                ],
            )
            events = [
                (row[4], first + i, row[5])
                for i, row in enumerate(effects.journal)
                if row[4] is not None
            ]
            if events:
                bulk.append(_bulk("events", events))
            db.execute(_UPSERT_KV, ("journal_pos_hw", str(self._next_pos - 1)))
        if effects.state_changes:
            bulk.append(_bulk("state_changes", effects.state_changes))
            self._recent_changes += len(effects.state_changes)
            if self._recent_changes >= FOLD_CHANGES:
                bulk.extend((sql, None) for sql in _FOLD)
                self._recent_changes = 0
        if effects.bays:
            bulk.append(_bulk("bays", effects.bays))
        self._write_sessions(effects, bulk)
        changes = self._write_alerts(effects)
        for right in effects.rights:
            db.execute(
                "INSERT INTO rights(right_id, body, deleted, owner) VALUES (?, ?, ?, ?)"
                " ON CONFLICT(right_id) DO UPDATE SET body=excluded.body,"
                " deleted=excluded.deleted, owner=excluded.owner",
                (right.right_id, dumps(right.body), int(right.deleted), right.owner),
            )
        for suspension in effects.suspensions:
            db.execute(
                "INSERT INTO suspensions(suspension_id, body) VALUES (?, ?)"
                " ON CONFLICT(suspension_id) DO UPDATE SET body=excluded.body",
                (suspension.suspension_id, dumps(suspension.body)),
            )
        if effects.gateways:
            db.executemany(
                _UPSERT_GATEWAY,
                [
                    (
                        g.gateway_id,
                        int(g.online),
                        g.last_seen,
                        None if g.status is None else dumps(g.status),
                        None if g.health is None else dumps(g.health),
                    )
                    for g in effects.gateways
                ],
            )
        if effects.sensors:
            db.executemany(
                _UPSERT_SENSOR,
                [(s.sensor_id, s.gateway_id, s.bay_id, dumps(s.health)) for s in effects.sensors],
            )
        if effects.counters:
            db.executemany(
                "INSERT INTO counters(name, value) VALUES (?, ?) ON CONFLICT(name)"
                " DO UPDATE SET value = value + excluded.value",
                list(effects.counters.items()),
            )
        if effects.watermark is not None:
            db.execute(_UPSERT_KV, ("watermark", str(effects.watermark)))
        if work.snapshots:
            pos = self._next_pos - 1
            # zones saved no more (the site lost them, or they were saved as one) go
            db.execute(
                "DELETE FROM engine_snapshots"
                " WHERE zone_id NOT IN (SELECT value FROM json_each(?))",
                (json.dumps(list(work.snapshots)),),
            )
            db.executemany(
                "INSERT INTO engine_snapshots(zone_id, pos, body) VALUES (?, ?, ?)"
                " ON CONFLICT(zone_id) DO UPDATE SET pos=excluded.pos, body=excluded.body",
                [(zone, pos, text) for zone, text in work.snapshots.items()],
            )
        if work.delivered:
            db.executemany("DELETE FROM outbox WHERE id = ?", [(i,) for i in work.delivered])
        if work.lines:
            db.executemany(
                "INSERT INTO timeseries_spool(n, lines) VALUES (?, ?)",
                [(len(block), "\n".join(block)) for block in blocks(work.lines)],
            )
        outbox: list[OutboxMessage] = []
        if effects.publications:
            first = self._next_outbox
            self._next_outbox += len(effects.publications)
            outbox = [
                OutboxMessage(first + i, topic, payload, 1, retain)
                for i, (topic, payload, retain) in enumerate(effects.publications)
            ]
            db.executemany(
                "INSERT INTO outbox(id, topic, payload, qos, retain) VALUES (?, ?, ?, ?, ?)",
                [(m.id, m.topic, m.payload, m.qos, int(m.retain)) for m in outbox],
            )
        return Committed(self._next_pos - 1, changes, outbox)

    def _write_sessions(self, effects: Effects, bulk: list[tuple[str, str | None]]) -> None:
        """Session writes as ``session_runs`` groups them, one executemany a run (two for a
        close or an alert of a session that was not in sessions_recent); the closed sessions
        moved into sessions as the commit ends if that takes them past ``FOLD_SESSIONS``."""
        db = self._commits
        for step, params in session_runs(effects.sessions):
            # a run's steps are of different sessions: a row each, if there
            found = db.executemany(_SESSION_SQL[step], params).rowcount
            if step is SessionStep.CLOSE:
                self._recent_closed += found  # (one closed again counts again: a fold sooner)
            if step is not SessionStep.OPEN and found < len(params):
                db.executemany(_SESSION_FOLDED_SQL[step], params)
        if self._recent_closed >= FOLD_SESSIONS:
            bulk.extend((sql, None) for sql in _FOLD_SESSIONS)
            self._recent_closed = 0

    def _write_alerts(self, effects: Effects) -> list[tuple[int, dict[str, Any]]]:
        db = self._commits
        if effects.alerts:
            db.executemany(_UPSERT_ALERT, [a.row() for a in effects.alerts])
            first = self._next_change
            self._next_change += len(effects.alerts)
            db.executemany(
                "INSERT INTO alert_changes(id, alert_id, record) VALUES (?,?,?)",
                [(first + i, a.record["alert_id"], a.text) for i, a in enumerate(effects.alerts)],
            )
            db.execute(_UPSERT_KV, ("change_id_hw", str(self._next_change - 1)))
        for note in effects.notes:
            db.execute(
                "UPDATE alerts SET history = json_insert(history, '$[#]', json(?))"
                " WHERE alert_id = ?",
                (dumps(note.entry), note.alert_id),
            )
        if not effects.alerts:
            return []
        first = self._next_change - len(effects.alerts)
        return [(first + i, a.record) for i, a in enumerate(effects.alerts)]

    # -- recovery and ingest -----------------------------------------------------------------

    def recover(self) -> Recovered:
        try:
            return self._recover()
        except sqlite3.Error as exc:
            raise _failure(self.path, exc, "cannot read it: ") from exc

    def _recover(self) -> Recovered:
        db = self._db
        bays: dict[str, BayState] = {
            row[0]: (row[1], row[2], row[3], row[4])
            for row in db.execute(
                "SELECT bay_id, state, since, gateway_id, session_start FROM bays"
            )
        }
        gateways = {
            g: (bool(o), int(t))
            for g, o, t in db.execute("SELECT gateway_id, online, last_seen FROM gateways")
        }
        maintenance = [
            r
            for status in ("open", "acknowledged")
            for r in self.alerts(status=status, kinds=MAINTENANCE_KINDS, limit=1 << 62)
        ]
        # enforcement alerts of open sessions: those raised since the session began (the
        # session's start is checked on the record: a bay's earlier sessions end before it)
        kinds = ",".join(f"'{k}'" for k in ENFORCEMENT_KINDS)
        session_alerts = [
            json.loads(record)
            for (record,) in db.execute(
                "SELECT a.record FROM bays b JOIN alerts a ON a.bay_id = b.bay_id"  # noqa: S608
                f" AND a.raised_at >= b.session_start WHERE b.session_start IS NOT NULL"
                f" AND a.kind IN ({kinds}) ORDER BY a.raised_at, a.alert_id"
            )
        ]
        snapshots = {
            zone: Snapshot(int(pos), str(body))
            for zone, pos, body in db.execute("SELECT zone_id, pos, body FROM engine_snapshots")
        }
        return Recovered(bays, gateways, maintenance, session_alerts, snapshots, self.watermark())

    def journal(
        self, after_pos: int = 0, types: Iterable[str] | None = None
    ) -> Iterator[JournalEntry]:
        sql = "SELECT pos, type, time, watermark, body FROM journal WHERE pos > ?"
        params: list[Any] = [after_pos]
        if types is not None:
            kinds = list(types)
            sql += f" AND type IN ({','.join('?' * len(kinds))})"
            params.extend(kinds)
        sql += " ORDER BY pos"
        # a cursor of its own: the caller may commit while it reads (export, recovery)
        try:
            rows = self._db.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise _failure(self.path, exc, "cannot read the journal: ") from exc
        for pos, type_, time, watermark, body in rows:
            yield JournalEntry(pos, type_, time, watermark, body)

    def event_digests(self, event_ids: Sequence[str]) -> dict[str, str]:
        """The digests of those of ``event_ids`` already stored (one query per 500 ids)."""
        out: dict[str, str] = {}
        for i in range(0, len(event_ids), 500):
            chunk = event_ids[i : i + 500]
            sql = f"SELECT event_id, digest FROM events WHERE event_id IN ({','.join('?' * len(chunk))})"  # noqa: S608, E501
            for event_id, digest in self._db.execute(sql, chunk):
                out[str(event_id)] = str(digest)
        return out

    def outbox(self) -> list[OutboxMessage]:
        return [
            OutboxMessage(i, t, p, q, bool(r))
            for i, t, p, q, r in self._db.execute(
                "SELECT id, topic, payload, qos, retain FROM outbox ORDER BY id"
            )
        ]

    def last_alert_change(self) -> int:
        return self._next_change - 1

    def last_journal_pos(self) -> int:
        return self._next_pos - 1

    def prune(self, before: Instant, keep_from_pos: int) -> int:
        """Delete occupancy records, events, state changes and closed sessions older than
        ``before``; never journal entries the rules still need (``pos >= keep_from_pos``)."""
        db = self._db
        with self._transaction("pruning failed: "):
            db.execute(
                "DELETE FROM events WHERE pos IN (SELECT pos FROM journal WHERE"
                " type='occupancy' AND time < ? AND pos < ?)",
                (before, keep_from_pos),
            )
            removed = db.execute(
                "DELETE FROM journal WHERE type='occupancy' AND time < ? AND pos < ?",
                (before, keep_from_pos),
            ).rowcount
            for sql in _FOLD:  # all of them in one table, which keeps each bay's last
                db.execute(sql)
            self._recent_changes = 0
            db.execute(
                "DELETE FROM state_changes WHERE ts < ? AND id NOT IN"
                " (SELECT MAX(id) FROM state_changes GROUP BY bay_id)",
                (before,),
            )
            for table in self._SESSION_TABLES:
                db.execute(f"DELETE FROM {table} WHERE end IS NOT NULL AND end < ?", (before,))  # noqa: S608 - fixed names
            self._recent_closed = self._first(
                "SELECT COUNT(*) FROM sessions_recent WHERE end IS NOT NULL"
            )
            db.execute(
                "DELETE FROM alert_changes WHERE id IN (SELECT c.id FROM alert_changes c JOIN"
                " alerts a ON a.alert_id = c.alert_id WHERE a.status IN"
                " ('cleared','resolved') AND a.raised_at < ?)",
                (before,),
            )
        return int(removed)

    # -- reads for the API -------------------------------------------------------------------

    def bay_states(self, bay_ids: Sequence[str]) -> dict[str, BayState]:
        out: dict[str, BayState] = {}
        for i in range(0, len(bay_ids), 500):
            chunk = bay_ids[i : i + 500]
            sql = (
                "SELECT bay_id, state, since, gateway_id, session_start FROM bays"  # noqa: S608
                f" WHERE bay_id IN ({','.join('?' * len(chunk))})"
            )
            for row in self._db.execute(sql, chunk):
                out[row[0]] = (row[1], row[2], row[3], row[4])
        return out

    def state_changes(
        self, bay_ids: list[str] | None, start: Instant, end: Instant
    ) -> dict[str, list[tuple[Instant, str]]]:
        """Each bay's last state before ``start`` (stamped ``start``) then its changes in
        ``[start, end)``."""
        return _state_changes(self._db, bay_ids, start, end)

    def timelines(
        self, bay_ids: Sequence[str], start: Instant, end: Instant
    ) -> dict[str, list[tuple[Instant, str]]]:
        """``state_changes`` of ``bay_ids`` read on a read-only connection of its own: safe from a
        worker thread while the loop's connection commits (WAL readers never wait for it)."""
        if str(self.path) == ":memory:":  # tests only: one connection is all there is
            return _state_changes(self._db, list(bay_ids), start, end)
        try:
            db = sqlite3.connect(f"file:{self.path.resolve()}?mode=ro", uri=True, timeout=10)
        except sqlite3.Error as exc:
            raise _failure(self.path, exc, "cannot read: ") from exc
        try:
            return _state_changes(db, list(bay_ids), start, end)
        except sqlite3.Error as exc:
            raise _failure(self.path, exc, "cannot read: ") from exc
        finally:
            db.close()

    def note_bays(self, bay_ids: Iterable[str], at: Instant) -> int:
        """Record when each bay not seen before came into being: ``at`` (the collector is
        running with a site that holds it), or its first stored state change if earlier (a
        store from before origins were kept). Returns how many were new."""
        known = {row[0] for row in self._db.execute("SELECT bay_id FROM bay_origins")}
        new = [b for b in bay_ids if b not in known]
        if not new:
            return 0
        rows = [(b, min(at, self._first_change(b) or at)) for b in new]
        with self._transaction():
            self._db.executemany(
                "INSERT OR IGNORE INTO bay_origins(bay_id, since) VALUES (?, ?)", rows
            )
        return len(rows)

    def _first_change(self, bay_id: str) -> int | None:
        first = self._first(
            "SELECT MIN(ts) FROM (SELECT MIN(ts) AS ts FROM state_changes WHERE bay_id = ?"
            " UNION ALL SELECT MIN(ts) FROM state_changes_recent WHERE bay_id = ?)",
            (bay_id, bay_id),
        )
        return None if first is None else int(first)

    def bay_origins(self, bay_ids: Iterable[str] | None = None) -> dict[str, Instant]:
        """When each bay came into being (see ``note_bays``). Bays of ``bay_ids`` that were
        never noted get their first stored state change; a bay with neither is left out."""
        out = {b: int(t) for b, t in self._db.execute("SELECT bay_id, since FROM bay_origins")}
        for bay_id in bay_ids or ():
            if bay_id not in out:
                first = self._first_change(bay_id)
                if first is not None:
                    out[bay_id] = first
        return out

    def rights_for(
        self, bay_ids: Collection[str], zone_ids: Collection[str], start: Instant, end: Instant
    ) -> list[Right]:
        # Bodies hold canonical instants (format_instant), which sort as text: the index on
        # (place, end) finds what ends after ``start``; what starts after ``end`` is left here.
        after = format_instant(start)
        found: dict[str, Right] = {}
        for place, ids in (("bay_id", bay_ids), ("zone_id", zone_ids)):
            for chunk in _chunks(sorted(ids)):
                marks = ",".join("?" * len(chunk))
                rows = self._db.execute(
                    f"SELECT body FROM rights WHERE json_extract(body, '$.{place}') IN ({marks})"  # noqa: S608 - fixed names
                    f" AND json_extract(body, '$.end') > ? AND deleted = 0",
                    (*chunk, after),
                )
                for (body,) in rows:
                    right = from_journal_dict(json.loads(body))
                    if isinstance(right, Right) and right.start <= end:
                        found[right.right_id] = right
        return list(found.values())

    def suspensions(self) -> list[dict[str, Any]]:
        return [dict(json.loads(r[0])) for r in self._db.execute("SELECT body FROM suspensions")]

    def counters(self) -> dict[str, int]:
        return {n: int(v) for n, v in self._db.execute("SELECT name, value FROM counters")}

    def gateway_summaries(self) -> list[dict[str, Any]]:
        return gateway_summaries(self.path)


def _chunks(ids: list[str], size: int = 500) -> Iterator[list[str]]:
    """At most ``size`` ids a statement (SQLite's limit on parameters)."""
    for i in range(0, len(ids), size):
        yield ids[i : i + size]


def _state_changes(
    db: sqlite3.Connection, bay_ids: list[str] | None, start: Instant, end: Instant
) -> dict[str, list[tuple[Instant, str]]]:
    """Each bay's state before ``start`` is one index lookup per bay (a search of the whole table
    per row took seconds for a few thousand bays) and a look at the recent changes; the bays go
    in as one JSON parameter. Both tables are read in one transaction: a commit that moves the
    recent changes between two reads would show them twice, or not at all."""
    with _one_read(db):
        if bay_ids is None:
            bay_ids = [
                row[0]
                for row in db.execute(
                    "SELECT bay_id FROM state_changes UNION SELECT bay_id FROM state_changes_recent"
                )
            ]
        bays = json.dumps(bay_ids)
        # of two changes at one instant, the later stored is the last: any recent one
        latest: dict[str, tuple[Instant, str]] = {}
        for bay_id, ts, state in db.execute(
            "SELECT b.value, s.ts, s.state FROM json_each(?) b JOIN state_changes s ON s.id ="
            " (SELECT id FROM state_changes WHERE bay_id = b.value AND ts < ?"
            " ORDER BY ts DESC, id DESC LIMIT 1)",
            (bays, start),
        ):
            latest[bay_id] = (ts, state)
        for bay_id, ts, state in db.execute(
            "SELECT bay_id, ts, state FROM state_changes_recent WHERE ts < ?"
            " AND bay_id IN (SELECT value FROM json_each(?)) ORDER BY ts, id",
            (start, bays),
        ):
            if bay_id not in latest or ts >= latest[bay_id][0]:
                latest[bay_id] = (ts, state)
        out: dict[str, list[tuple[Instant, str]]] = {
            bay_id: [(start, latest[bay_id][1])] for bay_id in bay_ids if bay_id in latest
        }
        for bay_id, ts, state, _table, _id in db.execute(
            "SELECT bay_id, ts, state, 0, id FROM state_changes WHERE ts >= ?1 AND ts < ?2"
            " AND bay_id IN (SELECT value FROM json_each(?3)) UNION ALL"
            " SELECT bay_id, ts, state, 1, id FROM state_changes_recent WHERE ts >= ?1"
            " AND ts < ?2 AND bay_id IN (SELECT value FROM json_each(?3)) ORDER BY 1, 2, 4, 5",
            (start, end, bays),
        ):
            out.setdefault(bay_id, []).append((ts, state))
    return out


@contextlib.contextmanager
def _one_read(db: sqlite3.Connection) -> Iterator[None]:
    """Reads that see one state of the file (a transaction, unless one is open already)."""
    if db.in_transaction:
        yield
        return
    db.execute("BEGIN")
    try:
        yield
    finally:
        db.execute("COMMIT")
