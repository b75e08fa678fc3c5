"""A write transaction on a SQLite connection in autocommit mode (the edge's outbox, the
collector's store and spool)."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator


@contextlib.contextmanager
def immediate(db: sqlite3.Connection) -> Iterator[None]:
    """``BEGIN IMMEDIATE`` ... ``COMMIT``, or ``ROLLBACK`` when the block raises (the block's
    error goes on; a failed rollback is not reported over it)."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        roll_back(db)
        raise
    end_transaction(db)


def end_transaction(db: sqlite3.Connection) -> None:
    """``COMMIT`` the open transaction; if it fails, ``ROLLBACK`` and raise its error (a
    COMMIT that fails, on a full disk, leaves the transaction open, and every later BEGIN would
    fail too)."""
    try:
        db.execute("COMMIT")
    except BaseException:
        roll_back(db)
        raise


def roll_back(db: sqlite3.Connection) -> None:
    """``ROLLBACK`` the open transaction, if there is one (a failure to is not reported over
    the error that led here)."""
    if db.in_transaction:
        with contextlib.suppress(sqlite3.Error):
            db.execute("ROLLBACK")
