"""The PostgreSQL store's read side: what the API asks of the store (bays, occupancy history,
sessions, alerts, rights, suspensions, counters, gateways' figures) and the officers' sign-ins,
each a statement or two outside the units of work (those whose SQL is SQLite's too are in
``sqlreads.py``). Reads the API runs in a worker thread (``timelines``, ``gateway_summaries``)
open a connection of their own.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable, Sequence
from typing import Any

import psycopg

from kerbside.collector.errors import StoreError
from kerbside.collector.gateway_stats import summarise
from kerbside.collector.records import Right, from_journal_dict
from kerbside.collector.store import BayState
from kerbside.collector.store.pgconn import Conn, Database, connect
from kerbside.collector.store.sqlreads import SqlReads, Statement
from kerbside.core.instants import Instant, format_instant

# One row per (gateway, epoch): event_id is "{gateway_id}:{epoch}:{seq}" (gateway_stats.py).
_PER_EPOCH = """
SELECT gw, substr(eid, length(gw) + 2, length(eid) - length(gw) - length(seq::text) - 2) AS epoch,
       count(*), count(DISTINCT seq), min(seq), max(seq), max(pos)
FROM (SELECT pos, b->>'gateway_id' AS gw, b->>'event_id' AS eid, (b->>'seq')::bigint AS seq
      FROM (SELECT pos, body::json AS b FROM journal WHERE type = 'occupancy') AS j) AS e
GROUP BY gw, epoch
"""


class PostgresReads(SqlReads, Database):
    """Reads and sign-ins over the store's connection (``PostgresStore`` adds the writes)."""

    _SESSION_END = "ended"

    def _read(
        self, sql: str, params: Sequence[Any] = (), what: str = "read failed"
    ) -> list[tuple[Any, ...]]:
        with self._errors(what):
            return self._connection().execute(sql.replace("?", "%s").encode(), params).fetchall()

    def _write_together(self, statements: Sequence[Statement]) -> int:
        touched = 0
        with self._errors("write failed"):
            db = self._connection()
            with db.transaction(), db.cursor() as cur:
                for sql, params in statements:
                    cur.execute(sql.replace("?", "%s").encode(), params)
                    touched += cur.rowcount
        return touched

    def bay_states(self, bay_ids: Sequence[str]) -> dict[str, BayState]:
        return {
            r[0]: (r[1], r[2], r[3], r[4])
            for r in self._rows(
                "SELECT bay_id, state, since, gateway_id, session_start FROM bays"
                " WHERE bay_id = ANY(%b::text[])",
                (list(bay_ids),),
            )
        }

    def state_changes(
        self, bay_ids: list[str] | None, start: Instant, end: Instant
    ) -> dict[str, list[tuple[Instant, str]]]:
        """Each bay's last state before ``start`` (stamped ``start``) then its changes in
        ``[start, end)``."""
        with self._errors("read failed"):
            return _state_changes(self._connection(), bay_ids, start, end)

    def timelines(
        self, bay_ids: Sequence[str], start: Instant, end: Instant
    ) -> dict[str, list[tuple[Instant, str]]]:
        """``state_changes`` on a connection of its own: the API runs it in a worker thread."""
        with self._errors("read failed"), connect(self._url, self._password, self.node) as db:
            return _state_changes(db, list(bay_ids), start, end)

    def note_bays(self, bay_ids: Iterable[str], at: Instant) -> int:
        """Record when each bay not seen before came into being: ``at``, or its first stored
        state change if earlier. Returns how many were new."""
        known = {r[0] for r in self._rows("SELECT bay_id FROM bay_origins")}
        new = [b for b in bay_ids if b not in known]
        if not new:
            return 0
        first = dict(
            self._rows(
                "SELECT bay_id, min(ts) FROM state_changes WHERE bay_id = ANY(%b::text[])"
                " GROUP BY bay_id",
                (new,),
            )
        )
        self._execute(
            "INSERT INTO bay_origins (bay_id, since)"
            " SELECT * FROM unnest(%b::text[], %b::bigint[]) ON CONFLICT DO NOTHING",
            (new, [min(at, int(first.get(b, at))) for b in new]),
        )
        return len(new)

    def bay_origins(self, bay_ids: Iterable[str] | None = None) -> dict[str, Instant]:
        """When each bay came into being (see ``note_bays``); bays of ``bay_ids`` never noted
        get their first stored state change; a bay with neither is left out."""
        out = {b: int(t) for b, t in self._rows("SELECT bay_id, since FROM bay_origins")}
        missing = [b for b in bay_ids or () if b not in out]
        if missing:
            for bay_id, first in self._rows(
                "SELECT bay_id, min(ts) FROM state_changes WHERE bay_id = ANY(%b::text[])"
                " GROUP BY bay_id",
                (missing,),
            ):
                out[bay_id] = int(first)
        return out

    def rights_for(
        self, bay_ids: Collection[str], zone_ids: Collection[str], start: Instant, end: Instant
    ) -> list[Right]:
        # Bodies hold canonical instants (format_instant), which sort as text: the indexes on
        # (place, end) find what ends after ``start``; what starts after ``end`` is left here.
        found: list[Right] = []
        for (body,) in self._rows(
            "SELECT body FROM rights WHERE (bay_id = ANY(%b::text[]) OR zone_id = ANY(%b::text[]))"
            " AND ends > %s AND NOT deleted",
            (sorted(bay_ids), sorted(zone_ids), format_instant(start)),
        ):
            right = from_journal_dict(json.loads(body))
            if isinstance(right, Right) and right.start <= end:
                found.append(right)
        return found

    def suspensions(self) -> list[dict[str, Any]]:
        return [
            dict(json.loads(r[0]))
            for r in self._rows("SELECT body FROM suspensions ORDER BY suspension_id")
        ]

    def counters(self) -> dict[str, int]:
        """Every collector's counts, added up."""
        return {
            n: int(v) for n, v in self._rows("SELECT name, sum(value) FROM counters GROUP BY name")
        }

    def gateway_summaries(self) -> list[dict[str, Any]]:
        """On a connection of its own: the API runs it in a worker thread."""
        try:
            with connect(self._url, self._password, self.node) as db:
                heard = {
                    g: (bool(o), int(t))
                    for g, o, t in db.execute(
                        "SELECT gateway_id, online, last_seen FROM gateways"
                    ).fetchall()
                }
                rows = db.execute(_PER_EPOCH.encode()).fetchall()
        except psycopg.Error as exc:
            raise StoreError(f"{self.name}: read failed: {self._described(exc)}") from exc
        return summarise(heard, rows)


def _state_changes(
    db: Conn, bay_ids: list[str] | None, start: Instant, end: Instant
) -> dict[str, list[tuple[Instant, str]]]:
    bays = None if bay_ids is None else list(bay_ids)
    out: dict[str, list[tuple[Instant, str]]] = {}
    before = db.execute(
        b"SELECT DISTINCT ON (bay_id) bay_id, state FROM state_changes WHERE ts < %s"
        b" AND (%b::text[] IS NULL OR bay_id = ANY(%b::text[]))"
        b" ORDER BY bay_id, ts DESC, id DESC",
        (start, bays, bays),
    ).fetchall()
    for bay_id, state in before:
        out.setdefault(bay_id, []).append((start, state))
    during = db.execute(
        b"SELECT bay_id, ts, state FROM state_changes WHERE ts >= %s AND ts < %s"
        b" AND (%b::text[] IS NULL OR bay_id = ANY(%b::text[])) ORDER BY bay_id, ts, id",
        (start, end, bays, bays),
    ).fetchall()
    for bay_id, ts, state in during:
        out.setdefault(bay_id, []).append((int(ts), state))
    return out
