"""The durable queue of time-series lines: a table in the collector's SQLite store file.

Only the writer thread touches it, through a connection of its own. Lines wait here, in order,
until InfluxDB has accepted them (or rejected them for good); an outage or a restart only makes
the table longer. The table is bounded: past ``max_lines`` the oldest lines are dropped and
counted (``kerbside-collector backfill`` rewrites a period from the store).
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Sequence
from pathlib import Path

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS timeseries_spool (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    line TEXT NOT NULL
)
"""


class Spool:
    """FIFO of lines with ids; not thread-safe (one owner thread)."""

    def __init__(self, path: str | Path, max_lines: int = 2_000_000) -> None:
        self.path = str(path)
        self.max_lines = max_lines
        # The collector's loop writes the same file; waiting for its short transactions is fine
        # here (we are off the loop), and WAL lets its readers and ours go on meanwhile.
        self._db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
        if self.path != ":memory:":
            self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(_SCHEMA)
        row = self._db.execute("SELECT count(*) FROM timeseries_spool").fetchone()
        self._depth: int = int(row[0])
        self.dropped = 0

    @property
    def depth(self) -> int:
        return self._depth

    def append(self, lines: Sequence[str]) -> int:
        """Add lines at the tail in one transaction; returns how many old lines were dropped."""
        if not lines:
            return 0
        dropped = 0
        with self._transaction():
            self._db.executemany(
                "INSERT INTO timeseries_spool(line) VALUES (?)", ((line,) for line in lines)
            )
            excess = self._depth + len(lines) - self.max_lines
            if excess > 0:
                self._db.execute(
                    "DELETE FROM timeseries_spool WHERE id IN "
                    "(SELECT id FROM timeseries_spool ORDER BY id LIMIT ?)",
                    (excess,),
                )
                dropped = excess
        self._depth += len(lines) - dropped
        if dropped:
            self.dropped += dropped
            log.warning(
                "time-series spool full (%d lines): dropped the %d oldest; "
                "run `kerbside-collector backfill` for the period once InfluxDB is back",
                self.max_lines,
                dropped,
            )
        return dropped

    def head(self, limit: int) -> list[tuple[int, str]]:
        """The oldest ``limit`` lines with their ids, oldest first."""
        rows = self._db.execute(
            "SELECT id, line FROM timeseries_spool ORDER BY id LIMIT ?", (limit,)
        ).fetchall()
        return [(int(r[0]), str(r[1])) for r in rows]

    def remove_through(self, last_id: int) -> None:
        """Remove every line with an id up to ``last_id`` (the batch just stored)."""
        with self._transaction():
            cursor = self._db.execute("DELETE FROM timeseries_spool WHERE id <= ?", (last_id,))
        self._depth = max(0, self._depth - cursor.rowcount)

    def close(self) -> None:
        self._db.close()

    def _transaction(self) -> _Transaction:
        return _Transaction(self._db)


class _Transaction:
    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self._db.execute("COMMIT" if exc_type is None else "ROLLBACK")
