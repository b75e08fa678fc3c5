"""The PostgreSQL store's schema, its version (the ``schema_version`` table) and the migrations
to it.

Only ``kerbside-collector migrate`` creates or changes the schema (``migrate``): several
collectors share one database, and one of a newer release must not change it under the others
while they run. A collector opening the store checks the version (``check``) and refuses, with a
one-line hint, a database that is empty, older or newer than it.

Tables mirror the SQLite store's; text compares byte by byte (``COLLATE "C"``), as SQLite's
does, whatever the database's locale (alerts page by id, instants in bodies sort as text). Two
additions serve several collectors:

- ``commit_head``: one row holding the last journal position and the last alert change id handed
  out. A unit of work takes its ids by updating that row as its last step before ``COMMIT``, so
  the row's lock orders the commits that write journal rows or alert changes: positions are
  dense and in commit order, and a reader that has seen position N has seen every position
  below N (``postgres.py`` says why that holds, and what it costs);
- ``zone_leases``: which collector runs each zone's rules, until when (the database's clock, so
  collectors' clocks need not agree), and under which epoch: a fencing token. A collector takes
  a zone whose lease has run out by raising its epoch, renews it only while node and epoch are
  still its own, and each commit it makes for the zone updates the lease row under the same
  condition in its own transaction, rolling back when the row is no longer its own: the row's
  lock holds a takeover until that commit ends, and after a takeover an owner that was paused
  finds a higher epoch and writes nothing (``store/pgcluster.py``). ``outbox`` and
  ``counters`` rows carry the collector's node, so that each publishes its own outbox and counts
  without contending with the others.
"""

from __future__ import annotations

from collections.abc import Callable

import psycopg

from kerbside.collector.errors import StoreRefused

VERSION = 3

# Advisory lock key for migrations: two `migrate` runs at once take turns.
_MIGRATION_LOCK = 0x6B657262  # "kerb"

_TABLES_1 = """
CREATE TABLE IF NOT EXISTS commit_head (
    one boolean PRIMARY KEY DEFAULT true CHECK (one),
    pos bigint NOT NULL,
    change_id bigint NOT NULL
);
INSERT INTO commit_head (one, pos, change_id) VALUES (true, 0, 0) ON CONFLICT DO NOTHING;
CREATE TABLE IF NOT EXISTS journal (
    pos bigint PRIMARY KEY,
    type text COLLATE "C" NOT NULL,
    time bigint NOT NULL,
    watermark bigint NOT NULL,
    body text COLLATE "C" NOT NULL
);
CREATE INDEX IF NOT EXISTS journal_time ON journal (type, time);
CREATE TABLE IF NOT EXISTS events (
    event_id text COLLATE "C" PRIMARY KEY,
    pos bigint NOT NULL,
    digest text COLLATE "C" NOT NULL
);
CREATE INDEX IF NOT EXISTS events_pos ON events (pos);
CREATE TABLE IF NOT EXISTS bays (
    bay_id text COLLATE "C" PRIMARY KEY,
    state text COLLATE "C" NOT NULL,
    since bigint NOT NULL,
    gateway_id text COLLATE "C",
    session_start bigint
) WITH (fillfactor = 70);
CREATE TABLE IF NOT EXISTS bay_origins (
    bay_id text COLLATE "C" PRIMARY KEY,
    since bigint NOT NULL
);
CREATE TABLE IF NOT EXISTS state_changes (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    bay_id text COLLATE "C" NOT NULL,
    ts bigint NOT NULL,
    state text COLLATE "C" NOT NULL
);
CREATE INDEX IF NOT EXISTS state_changes_bay ON state_changes (bay_id, ts);
CREATE TABLE IF NOT EXISTS sessions (
    bay_id text COLLATE "C" NOT NULL,
    start bigint NOT NULL,
    ended bigint,
    alerts integer NOT NULL DEFAULT 0,
    PRIMARY KEY (bay_id, start)
) WITH (fillfactor = 70);
CREATE TABLE IF NOT EXISTS alerts (
    alert_id text COLLATE "C" PRIMARY KEY,
    kind text COLLATE "C" NOT NULL,
    status text COLLATE "C" NOT NULL,
    zone_id text COLLATE "C",
    bay_id text COLLATE "C",
    raised_at bigint NOT NULL,
    record text COLLATE "C" NOT NULL,
    history text COLLATE "C" NOT NULL DEFAULT '[]'
);
CREATE INDEX IF NOT EXISTS alerts_status ON alerts (status);
CREATE INDEX IF NOT EXISTS alerts_bay ON alerts (bay_id, raised_at);
CREATE INDEX IF NOT EXISTS alerts_order ON alerts (raised_at, alert_id);
CREATE TABLE IF NOT EXISTS alert_changes (
    id bigint PRIMARY KEY,
    alert_id text COLLATE "C" NOT NULL,
    record text COLLATE "C" NOT NULL
);
CREATE TABLE IF NOT EXISTS rights (
    right_id text COLLATE "C" PRIMARY KEY,
    body text COLLATE "C" NOT NULL,
    deleted boolean NOT NULL DEFAULT false,
    owner text COLLATE "C",
    bay_id text COLLATE "C" GENERATED ALWAYS AS (body::jsonb ->> 'bay_id') STORED,
    zone_id text COLLATE "C" GENERATED ALWAYS AS (body::jsonb ->> 'zone_id') STORED,
    ends text COLLATE "C" GENERATED ALWAYS AS (body::jsonb ->> 'end') STORED
);
CREATE INDEX IF NOT EXISTS rights_bay ON rights (bay_id, ends);
CREATE INDEX IF NOT EXISTS rights_zone ON rights (zone_id, ends);
CREATE TABLE IF NOT EXISTS suspensions (
    suspension_id text COLLATE "C" PRIMARY KEY,
    body text COLLATE "C" NOT NULL
);
CREATE TABLE IF NOT EXISTS gateways (
    gateway_id text COLLATE "C" PRIMARY KEY,
    online boolean NOT NULL,
    last_seen bigint NOT NULL,
    status text COLLATE "C",
    health text COLLATE "C"
);
CREATE TABLE IF NOT EXISTS sensors (
    sensor_id text COLLATE "C" PRIMARY KEY,
    gateway_id text COLLATE "C",
    bay_id text COLLATE "C",
    health text COLLATE "C" NOT NULL
);
CREATE TABLE IF NOT EXISTS counters (
    name text COLLATE "C" NOT NULL,
    node text COLLATE "C" NOT NULL DEFAULT '',
    value bigint NOT NULL,
    PRIMARY KEY (name, node)
);
CREATE TABLE IF NOT EXISTS kv (
    key text COLLATE "C" PRIMARY KEY,
    value text COLLATE "C" NOT NULL
);
CREATE TABLE IF NOT EXISTS officer_sessions (
    id_sha256 text COLLATE "C" PRIMARY KEY,
    name text COLLATE "C" NOT NULL,
    token_sha256 text COLLATE "C" NOT NULL,
    created bigint NOT NULL,
    expires bigint NOT NULL
);
CREATE INDEX IF NOT EXISTS officer_sessions_name ON officer_sessions (name);
CREATE TABLE IF NOT EXISTS signin_links (
    code_sha256 text COLLATE "C" PRIMARY KEY,
    name text COLLATE "C" NOT NULL,
    token_sha256 text COLLATE "C" NOT NULL,
    created bigint NOT NULL,
    expires bigint NOT NULL
);
CREATE TABLE IF NOT EXISTS outbox (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    node text COLLATE "C" NOT NULL DEFAULT '',
    topic text COLLATE "C" NOT NULL,
    payload text COLLATE "C" NOT NULL,
    qos smallint NOT NULL,
    retain boolean NOT NULL
);
CREATE INDEX IF NOT EXISTS outbox_node ON outbox (node, id);
CREATE TABLE IF NOT EXISTS engine_snapshots (
    zone_id text COLLATE "C" PRIMARY KEY,
    pos bigint NOT NULL,
    body text COLLATE "C" NOT NULL
);
CREATE TABLE IF NOT EXISTS zone_leases (
    zone_id text COLLATE "C" PRIMARY KEY,
    node_id text COLLATE "C" NOT NULL,
    epoch bigint NOT NULL,
    expires timestamptz NOT NULL
);
"""


def _statements(script: str) -> list[str]:
    return [s.strip() for s in script.split(";") if s.strip()]


def _to_1(cur: psycopg.Cursor[tuple[object, ...]]) -> None:
    for statement in _statements(_TABLES_1):
        cur.execute(statement.encode())


# The time-series spool: each commit appends the lines of its points here (one row a commit), in
# its own transaction; the writer threads read from the head and delete the rows InfluxDB has.
_TABLES_2 = """
CREATE TABLE IF NOT EXISTS timeseries_spool (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    n integer NOT NULL,
    lines text COLLATE "C" NOT NULL
);
"""


def _to_2(cur: psycopg.Cursor[tuple[object, ...]]) -> None:
    for statement in _statements(_TABLES_2):
        cur.execute(statement.encode())


# Several collectors (``cluster`` in the config): each occupancy record names its bay's zone, so
# a zone's owner reads only its zones' records (and the zone-less ones: rights, suspensions,
# officers' actions, the rules clock's ticks); a zone's lease keeps the journal position its
# owner's committed effects reach (a new owner re-executes up to it without repeating them);
# each alert change names the collector and lease epoch it was written under; the collectors
# alive, by heartbeat, share the zones between them.
_TABLES_3 = """
ALTER TABLE journal ADD COLUMN IF NOT EXISTS zone_id text COLLATE "C";
CREATE INDEX IF NOT EXISTS journal_zone ON journal (zone_id, pos);
ALTER TABLE zone_leases ADD COLUMN IF NOT EXISTS applied_pos bigint NOT NULL DEFAULT 0;
ALTER TABLE alert_changes ADD COLUMN IF NOT EXISTS node text COLLATE "C" NOT NULL DEFAULT '';
ALTER TABLE alert_changes ADD COLUMN IF NOT EXISTS epoch bigint NOT NULL DEFAULT 0;
CREATE TABLE IF NOT EXISTS cluster_nodes (
    node_id text COLLATE "C" PRIMARY KEY,
    expires timestamptz NOT NULL
);
"""


# A unit of work written under leases calls this first: it locks and updates the leases' rows
# (the journal position the zones' effects reach) while they are still the caller's, with the
# epochs it holds, else refuses the transaction (SQLSTATE KB001, the leases lost in DETAIL).
_FENCE_3 = """
CREATE OR REPLACE FUNCTION kerbside_fence(me text, leases text[], epochs bigint[], through bigint)
RETURNS void LANGUAGE plpgsql AS $fence$
DECLARE
    held text[];
BEGIN
    WITH done AS (
        UPDATE zone_leases z
        SET applied_pos = greatest(z.applied_pos, coalesce(through, z.applied_pos))
        FROM unnest(leases, epochs) AS u(lease, epoch)
        WHERE z.zone_id = u.lease AND z.epoch = u.epoch AND z.node_id = me
        RETURNING z.zone_id
    )
    SELECT coalesce(array_agg(zone_id), '{}') INTO held FROM done;
    IF cardinality(held) < cardinality(leases) THEN
        RAISE EXCEPTION 'lease no longer this collector''s' USING
            ERRCODE = 'KB001',
            DETAIL = array_to_string(
                ARRAY(SELECT unnest(leases) EXCEPT SELECT unnest(held)), ',');
    END IF;
END
$fence$
"""


def _to_3(cur: psycopg.Cursor[tuple[object, ...]]) -> None:
    for statement in _statements(_TABLES_3):
        cur.execute(statement.encode())
    cur.execute(_FENCE_3.encode())


# MIGRATIONS[n] takes a database at version n to version n + 1 (0: an empty database).
MIGRATIONS: list[Callable[[psycopg.Cursor[tuple[object, ...]]], None]] = [_to_1, _to_2, _to_3]
assert len(MIGRATIONS) == VERSION


def found_version(cur: psycopg.Cursor[tuple[object, ...]]) -> int:
    """The schema's version, 0 for a database without one."""
    cur.execute("SELECT to_regclass('schema_version') IS NOT NULL")
    row = cur.fetchone()
    if row is None or not row[0]:
        return 0
    cur.execute("SELECT max(version) FROM schema_version")
    row = cur.fetchone()
    return 0 if row is None or row[0] is None else int(str(row[0]))


def newer_refusal(name: str, found: int) -> StoreRefused:
    return StoreRefused(
        f"{name}: store schema version {found} is newer than this collector's ({VERSION});"
        " run the collector that wrote it"
    )


def migrate(conn: psycopg.Connection[tuple[object, ...]], name: str) -> int:
    """Create or upgrade the schema in one transaction (idempotent); returns the version it was.
    ``conn`` is in autocommit mode."""
    with conn.transaction(), conn.cursor() as cur:
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
        found = found_version(cur)
        if found > VERSION:
            raise newer_refusal(name, found)
        if found == VERSION:
            return found
        cur.execute("CREATE TABLE IF NOT EXISTS schema_version (version integer NOT NULL)")
        for step in MIGRATIONS[found:]:
            step(cur)
        cur.execute("DELETE FROM schema_version")
        cur.execute("INSERT INTO schema_version (version) VALUES (%s)", (VERSION,))
    return found


def check(conn: psycopg.Connection[tuple[object, ...]], name: str) -> None:
    """Refuse a database whose schema is not this collector's version."""
    with conn.cursor() as cur:
        found = found_version(cur)
    if found > VERSION:
        raise newer_refusal(name, found)
    if found < VERSION:
        state = "has no Kerbside schema" if found == 0 else f"has schema version {found}"
        raise StoreRefused(
            f"{name}: the database {state}, this collector needs version {VERSION}:"
            " run `kerbside-collector migrate --config <your config>` first"
        )
