"""The durable outbox: confirmed occupancy events wait here, on disk, until the broker has them.

One SQLite file in WAL mode with three tables::

    meta(key, value)          epoch (random token made with the file), last_seq
    events(seq, payload)      the occupancy event (docs/protocols.md), JSON, exactly as published
    state(key, value)         what the agent keeps across restarts (the detector's learned levels)
                              and its status for ``kerbside-edge status`` (``save_states``)

What is fsynced when, and why that survives a power cut on an SD card:

- Creating the file: the epoch and ``last_seq = 0`` are written in one transaction under
  ``synchronous=FULL``. SQLite also fsyncs the directory when it creates the WAL file, so the
  file's name survives too.
- Appending events (``append``): the rows and the new ``last_seq`` are one transaction under
  ``synchronous=FULL``: in WAL mode the commit fsyncs the WAL before ``append`` returns, and only
  then is anything handed to MQTT. An event the broker may have seen is therefore always on disk,
  and a seq is never handed out twice (``last_seq`` is committed with the rows that use it).
- Deleting acknowledged events (``flush_acks``): batched, and committed under
  ``synchronous=NORMAL``, which does not fsync. A power cut may undo the last deletes; those
  events are then published again under the same ``event_id``, which the collector ignores.
  Nothing is lost and ids never change, and the SD card is spared one flush per PUBACK.
- Saving state (``save_states``): one transaction every health interval, under
  ``synchronous=NORMAL`` like the deletes: it is a convenience (a lost save only means an older
  one is read), so it costs the card no flush of its own.
- Checkpoints (WAL into the main file) fsync the WAL before copying and the database after, so
  a cut during a checkpoint replays the WAL on the next open.

A WAL commit is a sequential append plus one flush, which suits SD cards (no in-place rewrite of
the database on every event). All of this holds only if the card honours flush requests; cheap
cards that acknowledge writes still in their cache can lose the last second before a cut (use
an industrial or "high endurance" card; see docs/gateway.md).

Bounded by ``max_mb`` (payload bytes plus a per-row allowance): health is never queued here (it
is QoS 0 and only sent live), so when events alone fill the outbox the oldest are dropped,
counted in ``events_dropped`` and logged. Freed pages are reused by SQLite, so the file stays
near ``max_mb`` rather than shrinking.

A full disk is not the outbox's business: ``append`` raises ``OutboxError`` and writes nothing
(the agent holds the events in memory and retries); a failed delete leaves its acks pending.
"""

from __future__ import annotations

import json
import logging
import secrets
import sqlite3
from collections.abc import Sequence
from pathlib import Path

from kerbside.core.transaction import immediate
from kerbside.edge.model import OccupancyChange, event_payload

log = logging.getLogger(__name__)

ROW_OVERHEAD = 48  # bytes a row costs beyond its payload (rowid, b-tree cell, page slack)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS events (seq INTEGER PRIMARY KEY, payload BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS state (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


class OutboxError(Exception):
    """The outbox file cannot be used (not an outbox, unreadable, full disk...)."""


def read_epoch(path: str | Path) -> str | None:
    """The epoch of the outbox at ``path``, or None if there is no outbox there yet.

    Opens the file read-only and changes nothing, so it is safe while an agent is running.
    """
    file = Path(path)
    if not file.exists():
        return None
    try:
        conn = sqlite3.connect(f"{file.resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise OutboxError(f"{file}: cannot open outbox: {exc}") from exc
    try:
        row = conn.execute("SELECT value FROM meta WHERE key = 'epoch'").fetchone()
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return None
        raise OutboxError(f"{file}: cannot read outbox: {exc}") from exc
    except sqlite3.DatabaseError as exc:
        raise OutboxError(f"{file}: not an outbox: {exc}") from exc
    finally:
        conn.close()
    return None if row is None else str(row[0])


def new_epoch() -> str:
    """A random token naming one life of an outbox (6 hex digits)."""
    return secrets.token_hex(3)


class Outbox:
    """Events numbered by ``seq`` and kept on disk until acknowledged (see module docstring).

    Not thread-safe: the agent uses it from its event loop's thread only.
    """

    def __init__(self, path: str | Path, gateway_id: str, max_mb: float = 256) -> None:
        self.path = Path(path)
        self.gateway_id = gateway_id
        self.max_bytes = int(max_mb * 1024 * 1024)
        self.events_dropped = 0
        self._pending_acks: list[int] = []
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
            self.epoch, self.last_seq = self._load_or_create_meta()
            depth, stored = self._db.execute(
                "SELECT COUNT(*), COALESCE(SUM(LENGTH(payload)), 0) FROM events"
            ).fetchone()
        except (sqlite3.Error, OSError) as exc:
            raise OutboxError(f"{self.path}: cannot open outbox: {exc}") from exc
        self._depth = int(depth)
        self._stored_bytes = int(stored) + self._depth * ROW_OVERHEAD

    def _load_or_create_meta(self) -> tuple[str, int]:
        rows = dict(self._db.execute("SELECT key, value FROM meta").fetchall())
        if "epoch" in rows:
            return str(rows["epoch"]), int(rows.get("last_seq", 0))
        epoch = new_epoch()
        with immediate(self._db):
            self._db.executemany(
                "INSERT INTO meta (key, value) VALUES (?, ?)",
                [("epoch", epoch), ("last_seq", "0")],
            )
        log.info("new outbox %s with epoch %s", self.path, epoch)
        return epoch, 0

    @property
    def depth(self) -> int:
        """Events on disk not yet acknowledged by the broker."""
        return self._depth

    @property
    def stored_bytes(self) -> int:
        return self._stored_bytes

    def append(self, changes: Sequence[OccupancyChange]) -> list[tuple[int, bytes]]:
        """Number ``changes``, write them durably (fsynced on return), return (seq, payload)."""
        if not changes:
            return []
        rows: list[tuple[int, bytes]] = []
        seq = self.last_seq
        for change in changes:
            seq += 1
            body = event_payload(change, self.gateway_id, self.epoch, seq)
            rows.append((seq, json.dumps(body, separators=(",", ":")).encode()))
        size = sum(len(payload) + ROW_OVERHEAD for _, payload in rows)
        try:
            self._make_room(size)
            with immediate(self._db):
                self._db.executemany("INSERT INTO events (seq, payload) VALUES (?, ?)", rows)
                self._db.execute("UPDATE meta SET value = ? WHERE key = 'last_seq'", (str(seq),))
        except sqlite3.Error as exc:
            raise OutboxError(f"{self.path}: cannot write events: {exc}") from exc
        self.last_seq = seq
        self._depth += len(rows)
        self._stored_bytes += size
        return rows

    def _make_room(self, size: int) -> None:
        """Drop the oldest events until ``size`` more bytes fit under ``max_bytes``."""
        if self._stored_bytes + size <= self.max_bytes or self._depth == 0:
            return
        excess = self._stored_bytes + size - self.max_bytes
        dropped = freed = 0
        first = last = 0
        cursor = self._db.execute("SELECT seq, LENGTH(payload) FROM events ORDER BY seq")
        for seq, length in cursor:
            if freed >= excess:
                break
            first = first or seq
            last = seq
            freed += length + ROW_OVERHEAD
            dropped += 1
        cursor.close()
        with immediate(self._db):
            self._db.execute("DELETE FROM events WHERE seq <= ?", (last,))
        self._depth -= dropped
        self._stored_bytes -= freed
        self.events_dropped += dropped
        log.warning(
            "outbox full (max %d bytes): dropped the %d oldest events, seq %d..%d",
            self.max_bytes,
            dropped,
            first,
            last,
        )

    def read_after(self, seq: int, limit: int) -> list[tuple[int, bytes]]:
        """Up to ``limit`` stored events with a seq above ``seq``, in seq order."""
        rows = self._db.execute(
            "SELECT seq, payload FROM events WHERE seq > ? ORDER BY seq LIMIT ?", (seq, limit)
        ).fetchall()
        return [(int(s), bytes(p)) for s, p in rows]

    def ack(self, seq: int) -> None:
        """The broker has ``seq``; it is deleted at the next ``flush_acks``."""
        self._pending_acks.append(seq)

    @property
    def pending_acks(self) -> int:
        return len(self._pending_acks)

    def flush_acks(self) -> int:
        """Delete acknowledged events in one transaction, without fsync (see module docstring)."""
        if not self._pending_acks:
            return 0
        acks = self._pending_acks
        try:
            self._db.execute("PRAGMA synchronous=NORMAL")
            with immediate(self._db):
                freed = self._db.execute(
                    "SELECT COUNT(*), COALESCE(SUM(LENGTH(payload)), 0) FROM events "
                    "WHERE seq IN (SELECT value FROM json_each(?))",
                    (json.dumps(acks),),
                ).fetchone()
                self._db.execute(
                    "DELETE FROM events WHERE seq IN (SELECT value FROM json_each(?))",
                    (json.dumps(acks),),
                )
        except sqlite3.Error as exc:  # the acks stay pending: deleted at a later flush
            raise OutboxError(f"{self.path}: cannot delete acknowledged events: {exc}") from exc
        finally:
            self._db.execute("PRAGMA synchronous=FULL")
        self._pending_acks = []
        count, length = int(freed[0]), int(freed[1])
        self._depth -= count
        self._stored_bytes -= length + count * ROW_OVERHEAD
        return count

    def save_state(self, key: str, value: str) -> None:
        """Keep ``value`` under ``key`` for the next start (one transaction, replacing)."""
        try:
            with immediate(self._db):
                self._db.execute(
                    "INSERT OR REPLACE INTO state (key, value) VALUES (?, ?)", (key, value)
                )
        except sqlite3.Error as exc:
            raise OutboxError(f"{self.path}: cannot save {key}: {exc}") from exc

    def save_states(self, values: dict[str, str]) -> None:
        """Keep several values at once, without an fsync of their own (see module docstring)."""
        try:
            self._db.execute("PRAGMA synchronous=NORMAL")
            with immediate(self._db):
                self._db.executemany(
                    "INSERT OR REPLACE INTO state (key, value) VALUES (?, ?)", values.items()
                )
        except sqlite3.Error as exc:
            raise OutboxError(f"{self.path}: cannot save {', '.join(values)}: {exc}") from exc
        finally:
            self._db.execute("PRAGMA synchronous=FULL")

    def oldest_confirmed(self) -> str | None:
        """``confirmed_ts`` of the oldest event waiting, or None when none waits."""
        row = self._db.execute("SELECT payload FROM events ORDER BY seq LIMIT 1").fetchone()
        return None if row is None else _confirmed_ts(row[0])

    def load_state(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM state WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def close(self) -> None:
        """Delete what was acknowledged (if the disk lets us: else it is re-sent next time,
        under the same ids) and close the file."""
        try:
            self.flush_acks()
        except OutboxError as exc:
            log.warning("%s; those events will be sent again at the next start", exc)
        self._db.close()


def _confirmed_ts(payload: bytes) -> str | None:
    try:
        value = json.loads(payload).get("confirmed_ts")
    except (ValueError, AttributeError):
        return None
    return value if isinstance(value, str) else None
