"""The time-series spool in PostgreSQL: the table the store's commits append their points' lines
to (``PostgresStore.commit``), as the writer thread reads it, on a connection of its own.

Rows are read from the head in id order and deleted by the ids read, never by a range: an id is
handed out when a transaction inserts, and a transaction that took a smaller id may commit after
a reader has passed it, so "every id up to N" could delete lines no one has sent. Collectors
sharing the database each run a writer on the same table; two may send the same lines, which
InfluxDB stores once (one point per series and time). Past ``max_lines`` the oldest rows are
dropped and counted, as in the SQLite spool.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import psycopg

from kerbside.collector.errors import StoreError
from kerbside.collector.store.spool import SpoolCount, blocks

Conn = psycopg.Connection[tuple[Any, ...]]


class PostgresSpool(SpoolCount):
    """``LineSpool`` over the ``timeseries_spool`` table; one owner thread."""

    def __init__(self, connect: Callable[[], Conn], name: str, max_lines: int) -> None:
        self._connect = connect
        self._name = name
        self._db: Conn | None = None
        self._taken: list[tuple[int, int]] = []  # (id, n) of the rows the last head() read
        super().__init__(max_lines, self._count())

    def _conn(self) -> Conn:
        if self._db is None or self._db.closed:
            self._db = self._connect()
        return self._db

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        try:
            return self._conn().execute(sql.encode(), params).fetchall()
        except psycopg.Error as exc:
            raise StoreError(f"{self._name}: time-series spool: {exc}") from exc

    def _count(self) -> int:
        return int(self._rows("SELECT coalesce(sum(n), 0) FROM timeseries_spool")[0][0])

    def append(self, lines: Sequence[str]) -> int:
        if not lines:
            return 0
        cut = blocks(lines)
        self._rows(
            "INSERT INTO timeseries_spool (n, lines)"
            " SELECT * FROM unnest(%b::integer[], %b::text[]) RETURNING id",
            ([len(b) for b in cut], ["\n".join(b) for b in cut]),
        )
        self._depth += len(lines)
        return self.trim()

    def head(self, limit: int) -> tuple[int, list[str]]:
        out: list[str] = []
        self._taken = []
        # whole rows, oldest first, up to ``limit`` lines (at least one row)
        for row_id, n, text in self._rows(
            "SELECT id, n, lines FROM timeseries_spool ORDER BY id LIMIT %s", (max(1, limit),)
        ):
            if out and len(out) + int(n) > limit:
                break
            out.extend(str(text).split("\n"))
            self._taken.append((int(row_id), int(n)))
        if not out:
            self._depth = 0  # a commit's lines may be read before we are told of them
        return (self._taken[-1][0] if self._taken else 0), out

    def remove_through(self, last_id: int) -> None:
        taken = [(i, n) for i, n in self._taken if i <= last_id]
        if taken:
            self._rows(
                "DELETE FROM timeseries_spool WHERE id = ANY(%b::bigint[]) RETURNING id",
                ([i for i, _ in taken],),
            )
            self._depth = max(0, self._depth - sum(n for _, n in taken))
        self._taken = []

    def trim(self) -> int:
        if self._depth <= self.max_lines:
            return 0
        self._depth = self._count()
        excess = self._depth - self.max_lines
        if excess <= 0:
            return 0
        dropped = 0
        for row_id, n in self._rows("SELECT id, n FROM timeseries_spool ORDER BY id"):
            if dropped >= excess:
                break
            self._rows("DELETE FROM timeseries_spool WHERE id = %s RETURNING id", (row_id,))
            dropped += int(n)
        self._depth -= dropped
        self._note_dropped(dropped)
        return dropped

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
