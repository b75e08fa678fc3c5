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
        # A COMMIT that fails (a full disk) leaves the transaction open: it is ended below, or
        # every later BEGIN would fail too.
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")
        raise
