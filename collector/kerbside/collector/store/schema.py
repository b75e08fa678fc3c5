"""The SQLite store's schema, its version (``PRAGMA user_version``) and the migrations to it.

Version 0 is a file written before the schema had a version (its tables are those of version 1
but for ``engine_snapshots``, and ``bay_origins`` and the sign-in tables in the oldest: the rules
were one engine, saved in ``kv`` under ``engine`` and ``engine_pos``). A new file is created at
the latest version; an older one is migrated in one transaction when the store opens it. A file
from a newer collector is refused rather than guessed at. Version 2 gave rights their owner;
version 3 finds them by bay and by zone.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

from kerbside.collector.errors import StoreRefused
from kerbside.core.transaction import immediate

VERSION = 6

_TABLES = """
CREATE TABLE IF NOT EXISTS journal (
    pos INTEGER PRIMARY KEY,
    type TEXT NOT NULL,
    time INTEGER NOT NULL,
    watermark INTEGER NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS journal_time ON journal(type, time);
CREATE TABLE IF NOT EXISTS events (
    event_id TEXT PRIMARY KEY,
    pos INTEGER NOT NULL,
    digest TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS bays (
    bay_id TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    since INTEGER NOT NULL,
    gateway_id TEXT,
    session_start INTEGER
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS bay_origins (
    bay_id TEXT PRIMARY KEY,
    since INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS state_changes (
    id INTEGER PRIMARY KEY,
    bay_id TEXT NOT NULL,
    ts INTEGER NOT NULL,
    state TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS state_changes_bay ON state_changes(bay_id, ts);
CREATE TABLE IF NOT EXISTS state_changes_recent (
    id INTEGER PRIMARY KEY,
    bay_id TEXT NOT NULL,
    ts INTEGER NOT NULL,
    state TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS sessions (
    bay_id TEXT NOT NULL,
    start INTEGER NOT NULL,
    end INTEGER,
    alerts INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (bay_id, start)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS sessions_recent (
    bay_id TEXT NOT NULL,
    start INTEGER NOT NULL,
    end INTEGER,
    alerts INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (start, bay_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS alerts (
    alert_id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    status TEXT NOT NULL,
    zone_id TEXT,
    bay_id TEXT,
    raised_at INTEGER NOT NULL,
    record TEXT NOT NULL,
    history TEXT NOT NULL DEFAULT '[]'
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS alerts_status ON alerts(status);
CREATE INDEX IF NOT EXISTS alerts_bay ON alerts(bay_id, raised_at);
CREATE TABLE IF NOT EXISTS alert_changes (
    id INTEGER PRIMARY KEY,
    alert_id TEXT NOT NULL,
    record TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS rights (
    right_id TEXT PRIMARY KEY,
    body TEXT NOT NULL,
    deleted INTEGER NOT NULL DEFAULT 0,
    owner TEXT
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS rights_bay
    ON rights(json_extract(body, '$.bay_id'), json_extract(body, '$.end'));
CREATE INDEX IF NOT EXISTS rights_zone
    ON rights(json_extract(body, '$.zone_id'), json_extract(body, '$.end'));
CREATE TABLE IF NOT EXISTS suspensions (
    suspension_id TEXT PRIMARY KEY,
    body TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS gateways (
    gateway_id TEXT PRIMARY KEY,
    online INTEGER NOT NULL,
    last_seen INTEGER NOT NULL,
    status TEXT,
    health TEXT
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS sensors (
    sensor_id TEXT PRIMARY KEY,
    gateway_id TEXT,
    bay_id TEXT,
    health TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS counters (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS kv (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS officer_sessions (
    id_sha256 TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    token_sha256 TEXT NOT NULL,
    created INTEGER NOT NULL,
    expires INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS officer_sessions_name ON officer_sessions(name);
CREATE TABLE IF NOT EXISTS signin_links (
    code_sha256 TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    token_sha256 TEXT NOT NULL,
    created INTEGER NOT NULL,
    expires INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY,
    topic TEXT NOT NULL,
    payload TEXT NOT NULL,
    qos INTEGER NOT NULL,
    retain INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS engine_snapshots (
    zone_id TEXT PRIMARY KEY,
    pos INTEGER NOT NULL,
    body TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS timeseries_spool (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    n INTEGER NOT NULL,
    lines TEXT NOT NULL
);
"""


def _create(db: sqlite3.Connection) -> None:
    # one statement at a time: executescript would commit the transaction
    for statement in _TABLES.split(";"):
        if statement.strip():
            db.execute(statement)


def _to_1(db: sqlite3.Connection) -> None:
    """Tables a file of before the version may lack (bay origins and sign-ins came late, rules
    snapshots per zone now); the one engine's snapshot becomes the snapshot that stands for
    every zone ("*")."""
    _create(db)
    db.execute(
        "INSERT INTO engine_snapshots(zone_id, pos, body) SELECT '*',"
        " COALESCE((SELECT CAST(value AS INTEGER) FROM kv WHERE key = 'engine_pos'), 0), value"
        " FROM kv WHERE key = 'engine'"
    )
    db.execute("DELETE FROM kv WHERE key IN ('engine', 'engine_pos')")


def _create_naming(db: sqlite3.Connection, name: str) -> None:
    """The schema's statements that name ``name`` (the tables or indexes a version added)."""
    for statement in _TABLES.split(";"):
        if name in statement:
            db.execute(statement)


def _to_2(db: sqlite3.Connection) -> None:
    """Rights gain their owner (the provider token that created them). Those stored before have
    none: only an admin may replace or cancel them."""
    columns = {row[1] for row in db.execute("PRAGMA table_info(rights)")}
    if "owner" not in columns:  # a version 0 file gained the table at version 2 in ``_to_1``
        db.execute("ALTER TABLE rights ADD COLUMN owner TEXT")


def _to_3(db: sqlite3.Connection) -> None:
    """The rights of a bay or a zone found by index (an alert's card shows the one held)."""
    _create_naming(db, "INDEX IF NOT EXISTS rights_")


def _to_4(db: sqlite3.Connection) -> None:
    """The time-series spool is written in the same transaction as the batch its lines come
    from: the store has it whether InfluxDB is configured or not (a file of a collector that
    wrote to InfluxDB has it already)."""
    _create_naming(db, "timeseries_spool")


def _to_5(db: sqlite3.Connection) -> None:
    """New state changes wait in ``state_changes_recent`` (in the order they come) and move into
    ``state_changes`` (in bay order) many at a time: see the SQLite store."""
    _create_naming(db, "state_changes_recent")


def _to_6(db: sqlite3.Connection) -> None:
    """New sessions wait in ``sessions_recent`` (in the order they start) and move into
    ``sessions`` (in bay order) many at a time once closed: see the SQLite store. The sessions
    still open move there now; the closed ones stay where they are."""
    _create_naming(db, "sessions_recent")
    db.execute(
        "INSERT INTO sessions_recent(bay_id, start, end, alerts)"
        " SELECT bay_id, start, end, alerts FROM sessions WHERE end IS NULL"
    )
    db.execute("DELETE FROM sessions WHERE end IS NULL")


# MIGRATIONS[n] takes a file at version n to version n + 1.
MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [
    _to_1,
    _to_2,
    _to_3,
    _to_4,
    _to_5,
    _to_6,
]
assert len(MIGRATIONS) == VERSION


def prepare(db: sqlite3.Connection, name: str) -> int:
    """Create or migrate the schema of ``db`` (in autocommit mode); returns the version it was."""
    found = int(db.execute("PRAGMA user_version").fetchone()[0])
    if found > VERSION:
        raise StoreRefused(
            f"{name}: store schema version {found} is newer than this collector's ({VERSION});"
            " run the collector that wrote it"
        )
    if found == VERSION:
        return found
    with immediate(db):
        legacy = db.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'journal'"
        ).fetchone()
        if found == 0 and legacy is None:
            _create(db)
        else:
            for migrate in MIGRATIONS[found:]:
                migrate(db)
        db.execute(f"PRAGMA user_version = {VERSION}")
    return found
