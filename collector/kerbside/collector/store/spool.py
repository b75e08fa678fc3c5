"""The durable queue of time-series lines: a table in the collector's SQLite store file.

The store's commits append the lines of a batch's points in the batch's own transaction
(``SqliteStore.commit``); the writer thread reads and removes them through this class, on a
connection of its own. Lines wait here, in order, until InfluxDB has accepted them (or rejected
them for good); an outage, a restart or a crash only makes the table longer. A row holds a block
of lines (a commit's, up to ``SPOOL_BLOCK``), not one line: SQLite work per row is what costs,
and Python's sqlite3 hands the GIL back and forth around every row, which the collector's event
loop would feel. The table is bounded: past ``max_lines`` the oldest blocks are dropped and
counted (``kerbside-collector backfill`` rewrites a period from the store).
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Sequence
from pathlib import Path

from kerbside.core.transaction import immediate

log = logging.getLogger(__name__)

SPOOL_BLOCK = 5000  # lines in one row at most

_SCHEMA = """
CREATE TABLE IF NOT EXISTS timeseries_spool (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    n INTEGER NOT NULL,
    lines TEXT NOT NULL
)
"""


def blocks(lines: Sequence[str], size: int = SPOOL_BLOCK) -> list[Sequence[str]]:
    """``lines`` in blocks of at most ``size``, in order: a row of the spool each."""
    return [lines[k : k + size] for k in range(0, len(lines), size)]


class SpoolCount:
    """What a spool keeps count of (here and in PostgreSQL): the lines waiting, as far as it
    has been told, and those dropped past ``max_lines``."""

    def __init__(self, max_lines: int, depth: int) -> None:
        self.max_lines = max_lines
        self._depth = depth
        self.dropped = 0

    @property
    def depth(self) -> int:
        """Lines waiting."""
        return self._depth

    def grew(self, lines: int) -> None:
        """``lines`` more were appended by the store's commits (on another connection)."""
        self._depth += lines

    def _note_dropped(self, lines: int) -> None:
        self.dropped += lines
        log.warning(
            "time-series spool full (%d lines): dropped the %d oldest; "
            "run `kerbside-collector backfill` for the period once InfluxDB is back",
            self.max_lines,
            lines,
        )


class Spool(SpoolCount):
    """FIFO of line blocks with ids; not thread-safe (one owner thread)."""

    def __init__(
        self, path: str | Path, max_lines: int = 2_000_000, block: int = SPOOL_BLOCK
    ) -> None:
        self.path = str(path)
        self.block = block
        # The collector's loop writes the same file; waiting for its short transactions is fine
        # here (we are off the loop), and WAL lets its readers and ours go on meanwhile.
        self._db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
        if self.path != ":memory:":
            self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(_SCHEMA)
        row = self._db.execute("SELECT coalesce(sum(n), 0) FROM timeseries_spool").fetchone()
        super().__init__(max_lines, int(row[0]))

    def append(self, lines: Sequence[str]) -> int:
        """Add lines at the tail in one transaction; returns how many old lines were dropped."""
        if not lines:
            return 0
        with immediate(self._db):
            self._db.executemany(
                "INSERT INTO timeseries_spool(n, lines) VALUES (?, ?)",
                [(len(b), "\n".join(b)) for b in blocks(lines, self.block)],
            )
            self._depth += len(lines)
        return self.trim()

    def trim(self) -> int:
        """Drop the oldest blocks while more than ``max_lines`` wait; returns how many lines."""
        if self._depth <= self.max_lines:
            return 0
        dropped = 0
        with immediate(self._db):
            # the count again: commits on the store's connection appended what we were told of
            row = self._db.execute("SELECT coalesce(sum(n), 0) FROM timeseries_spool").fetchone()
            self._depth = int(row[0])
            while self._depth > self.max_lines:
                oldest = self._db.execute(
                    "SELECT id, n FROM timeseries_spool ORDER BY id LIMIT 1"
                ).fetchone()
                self._db.execute("DELETE FROM timeseries_spool WHERE id = ?", (oldest[0],))
                self._depth -= int(oldest[1])
                dropped += int(oldest[1])
        if dropped:
            self._note_dropped(dropped)
        return dropped

    def head(self, limit: int) -> tuple[int, list[str]]:
        """(id of the last block taken, the oldest lines): whole blocks, oldest first, up to
        ``limit`` lines (at least one block). ``(0, [])`` when empty."""
        last_id = 0
        out: list[str] = []
        cursor = self._db.execute("SELECT id, n, lines FROM timeseries_spool ORDER BY id")
        try:
            for row_id, n, text in cursor:
                if out and len(out) + int(n) > limit:
                    break
                out.extend(str(text).split("\n"))
                last_id = int(row_id)
        finally:
            cursor.close()
        if not out:
            # a commit's lines can be sent before the store's connection has told us of them
            # (``grew`` comes right after its commit): the count meets the table again here
            self._depth = 0
        return last_id, out

    def remove_through(self, last_id: int) -> None:
        """Remove every block with an id up to ``last_id`` (the batch just stored)."""
        with immediate(self._db):
            row = self._db.execute(
                "SELECT coalesce(sum(n), 0) FROM timeseries_spool WHERE id <= ?", (last_id,)
            ).fetchone()
            self._db.execute("DELETE FROM timeseries_spool WHERE id <= ?", (last_id,))
        self._depth = max(0, self._depth - int(row[0]))

    def close(self) -> None:
        self._db.close()
