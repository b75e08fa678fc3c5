"""The reads and sign-ins whose SQL is the same in SQLite and PostgreSQL, written once.

Statements here mark their parameters ``?`` (SQLite's style); the PostgreSQL adapter turns each
mark into psycopg's ``%s``. An adapter supplies the two ways in: ``_read`` (one statement, its
rows) and ``_write_together`` (statements in one transaction, the rows they touched).
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from typing import Any, ClassVar

from kerbside.collector.signin import OfficerSession, SignInLink
from kerbside.collector.store import StoredRight
from kerbside.core.instants import Instant

Statement = tuple[str, Sequence[Any]]


class SqlReads(ABC):
    """What both SQL adapters read the same way (``SqliteStore``, ``PostgresReads``)."""

    # the sessions table's column for a session's end (``end`` is reserved in PostgreSQL)
    _SESSION_END: ClassVar[str]
    # the tables a session may be in (SQLite keeps its newest apart: see its store)
    _SESSION_TABLES: ClassVar[tuple[str, ...]] = ("sessions",)

    @abstractmethod
    def _read(
        self, sql: str, params: Sequence[Any] = (), what: str = "read failed"
    ) -> list[tuple[Any, ...]]:
        """The rows of one statement (parameters marked ``?``); ``what`` names a failure."""

    @abstractmethod
    def _write_together(self, statements: Sequence[Statement]) -> int:
        """Run ``statements`` (parameters marked ``?``) in one transaction; the rows they
        touched, all told."""

    def _first(self, sql: str, params: Sequence[Any] = ()) -> Any:
        rows = self._read(sql, params)
        return rows[0][0] if rows else None

    def sessions(
        self, bay_id: str, start: Instant | None, end: Instant | None, limit: int, after: int | None
    ) -> list[tuple[Instant, Instant | None, int]]:
        """Sessions of a bay overlapping ``[start, end)``, oldest first, after ``after``."""
        ended = self._SESSION_END
        where = "bay_id = ?"
        params: list[Any] = [bay_id]
        if start is not None:
            where += f" AND ({ended} IS NULL OR {ended} > ?)"
            params.append(start)
        if end is not None:
            where += " AND start < ?"
            params.append(end)
        if after is not None:
            where += " AND start > ?"
            params.append(after)
        # one statement over the tables: it reads them as one state of the store, and a session
        # is in one of them, so that merged in start order they give each session once
        sql = " UNION ALL ".join(
            f"SELECT start, {ended}, alerts FROM {table} WHERE {where}"  # noqa: S608 - fixed names
            for table in self._SESSION_TABLES
        )
        sql += " ORDER BY start LIMIT ?"
        rows = self._read(sql, [*params * len(self._SESSION_TABLES), limit])
        return [(int(a), None if b is None else int(b), int(c)) for a, b, c in rows]

    def alert(self, alert_id: str) -> dict[str, Any] | None:
        text = self._first("SELECT record FROM alerts WHERE alert_id = ?", (alert_id,))
        return None if text is None else dict(json.loads(text))

    def alert_with_history(self, alert_id: str) -> tuple[dict[str, Any], list[Any]] | None:
        rows = self._read("SELECT record, history FROM alerts WHERE alert_id = ?", (alert_id,))
        if not rows:
            return None
        return dict(json.loads(rows[0][0])), list(json.loads(rows[0][1]))

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
    ) -> list[dict[str, Any]]:
        """Alerts ordered by (raised_at, alert_id), after the ``after`` key."""
        sql = "SELECT record FROM alerts WHERE 1=1"
        params: list[Any] = []
        for column, value in (
            ("status", status),
            ("zone_id", zone_id),
            ("kind", kind),
            ("bay_id", bay_id),
        ):
            if value is not None:
                sql += f" AND {column} = ?"
                params.append(value)
        if kinds is not None:
            names = list(kinds)
            if not names:
                return []
            sql += f" AND kind IN ({','.join('?' * len(names))})"
            params.extend(names)
        if after is not None:
            sql += " AND (raised_at, alert_id) > (?, ?)"
            params.extend(after)
        sql += " ORDER BY raised_at, alert_id LIMIT ?"
        params.append(limit)
        return [dict(json.loads(r[0])) for r in self._read(sql, params)]

    def alert_changes_since(self, after: int, limit: int) -> list[tuple[int, dict[str, Any]]]:
        return [
            (int(i), dict(json.loads(r)))
            for i, r in self._read(
                "SELECT id, record FROM alert_changes WHERE id > ? ORDER BY id LIMIT ?",
                (after, limit),
            )
        ]

    def count_alerts(self, status: str) -> int:
        return int(self._first("SELECT count(*) FROM alerts WHERE status = ?", (status,)))

    def right(self, right_id: str) -> StoredRight | None:
        rows = self._read("SELECT body, deleted, owner FROM rights WHERE right_id = ?", (right_id,))
        if not rows:
            return None
        body, deleted, owner = rows[0]
        return StoredRight(dict(json.loads(body)), bool(deleted), owner)

    def count_events(self) -> int:
        return int(self._first("SELECT count(*) FROM events"))

    def watermark(self) -> Instant | None:
        value = self._first("SELECT value FROM kv WHERE key = 'watermark'")
        return None if value is None else int(value)

    # -- officers' sign-in (signin.py): single statements, outside the units of work -----------

    def put_officer_session(self, session: OfficerSession) -> None:
        self._write_together([(
            "INSERT INTO officer_sessions (id_sha256, name, token_sha256, created, expires)"
            " VALUES (?, ?, ?, ?, ?)",
            (session.id_sha256, session.name, session.token_sha256, session.created,
             session.expires),
        )])  # fmt: skip

    def officer_session(self, id_sha256: str) -> OfficerSession | None:
        rows = self._read(
            "SELECT name, token_sha256, created, expires FROM officer_sessions WHERE id_sha256 = ?",
            (id_sha256,),
        )
        return None if not rows else OfficerSession(id_sha256, *rows[0])

    def end_officer_session(self, id_sha256: str) -> None:
        self._write_together([("DELETE FROM officer_sessions WHERE id_sha256 = ?", (id_sha256,))])

    def end_officer_sessions(self, name: str) -> int:
        return self._write_together([
            ("DELETE FROM officer_sessions WHERE name = ?", (name,)),
            ("DELETE FROM signin_links WHERE name = ?", (name,)),
        ])  # fmt: skip

    def put_signin_link(self, link: SignInLink) -> None:
        self._write_together([(
            "INSERT INTO signin_links (code_sha256, name, token_sha256, created, expires)"
            " VALUES (?, ?, ?, ?, ?)",
            (link.code_sha256, link.name, link.token_sha256, link.created, link.expires),
        )])  # fmt: skip

    def take_signin_link(self, code_sha256: str) -> SignInLink | None:
        # One statement: of two collectors (or two taps) redeeming one code, one gets the row.
        rows = self._read(
            "DELETE FROM signin_links WHERE code_sha256 = ?"
            " RETURNING name, token_sha256, created, expires",
            (code_sha256,),
            "write failed",
        )
        return None if not rows else SignInLink(code_sha256, *rows[0])

    def prune_sign_ins(self, now: Instant) -> int:
        return self._write_together([
            ("DELETE FROM officer_sessions WHERE expires <= ?", (now,)),
            ("DELETE FROM signin_links WHERE expires <= ?", (now,)),
        ])  # fmt: skip
