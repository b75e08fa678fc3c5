"""The SQLite store's schema version: a file written before the schema had one (by the
collector of before the rules ran per zone) is migrated when a collector opens it, and the
collector carries on from it exactly where the old one stopped."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from kerbside.collector.config import load_config
from kerbside.collector.effects import Effects, RightRow, SessionStep
from kerbside.collector.errors import StoreError
from kerbside.collector.records import OccupancyEvent, to_journal_dict
from kerbside.collector.rules import RulesEngine
from kerbside.collector.runtime import assemble
from kerbside.collector.store import EVERY_ZONE, StoredRight, Work, dumps
from kerbside.collector.store.schema import VERSION
from kerbside.collector.store.sqlite import SqliteStore
from kerbside.core.instants import format_instant, parse_instant
from kerbside.core.site import load_site
from tests.collector.test_cycle import ROOT, Clock
from tests.helpers import FakeLink, present, write_collector_setup

T0 = parse_instant("2026-11-26T08:00:00Z")
MIN = 60_000

# What each migration added (to the version after the key), taken off a file made today to
# give the file at that version as the collector wrote it then (the code that wrote it is gone).
# The oldest files of before the versions lacked bay origins and the sign-ins too.
ADDED_AFTER = {
    0: ("DROP TABLE engine_snapshots",),
    1: ("ALTER TABLE rights DROP COLUMN owner",),
    2: ("DROP INDEX rights_bay", "DROP INDEX rights_zone"),
    3: ("DROP TABLE timeseries_spool",),
    4: ("DROP TABLE state_changes_recent",),
    5: ("DROP TABLE sessions_recent",),
}
OLDEST = ("DROP TABLE bay_origins", "DROP TABLE officer_sessions", "DROP TABLE signin_links")


def _file_at(path: Path, version: int, *, oldest: bool = False) -> None:
    """An empty store file as the collector of schema ``version`` made it."""
    SqliteStore(path).close()
    db = sqlite3.connect(path)
    for later in range(VERSION - 1, version - 1, -1):
        for statement in ADDED_AFTER[later]:
            db.execute(statement)
    for statement in OLDEST if oldest else ():
        db.execute(statement)
    db.execute(f"PRAGMA user_version = {version}")
    db.commit()
    db.close()


def _event(n: int, bay: str, state: str, ts: int) -> OccupancyEvent:
    return OccupancyEvent(f"gw-1:ep:{n}", "gw-1", n, bay, "S" + bay[1:], state, ts, ts + 10_000)


def _old_file(path: Path, site_path: Path, *, oldest: bool = False) -> str:
    """A store as the old collector left it: B001 occupied since T0 and its unpaid alert raised
    (in its saved engine, position 1), then B002's arrival journaled after that save, and an
    alert change still in the outbox. Returns the unpaid alert's id."""
    site = load_site(site_path)
    engine = RulesEngine(site)
    first, second = _event(1, "B001", "occupied", T0), _event(2, "B002", "occupied", T0 + MIN)
    engine.apply(first)
    (raised,) = [c.alert for c in engine.advance(T0 + MIN)]
    _file_at(path, 0, oldest=oldest)
    db = sqlite3.connect(path)
    rows = [
        (1, "occupancy", first.ts, T0 - 1000, dumps(to_journal_dict(first))),
        (2, "occupancy", second.ts, T0 + MIN, dumps(to_journal_dict(second))),
    ]
    db.executemany("INSERT INTO journal VALUES (?, ?, ?, ?, ?)", rows)
    db.executemany(
        "INSERT INTO events VALUES (?, ?, ?)", [("gw-1:ep:1", 1, "d1"), ("gw-1:ep:2", 2, "d2")]
    )
    db.executemany(
        "INSERT INTO bays VALUES (?, ?, ?, ?, ?)",
        [("B001", "occupied", T0, "gw-1", T0), ("B002", "occupied", T0 + MIN, "gw-1", T0 + MIN)],
    )
    record = raised.to_record()
    db.execute(
        "INSERT INTO alerts(alert_id, kind, status, zone_id, bay_id, raised_at, record)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        (raised.alert_id, "unpaid", "open", "Z1", "B001", raised.raised_at, dumps(record)),
    )
    db.execute("INSERT INTO alert_changes VALUES (1, ?, ?)", (raised.alert_id, dumps(record)))
    db.execute(
        "INSERT INTO outbox(topic, payload, qos, retain) VALUES (?, ?, 1, 0)",
        (f"{ROOT}/alerts/Z1", dumps(record)),
    )
    db.executemany(
        "INSERT INTO kv VALUES (?, ?)",
        [
            ("engine", dumps(engine.snapshot())),
            ("engine_pos", "1"),
            ("watermark", str(T0 + MIN)),
            ("journal_pos_hw", "2"),
            ("change_id_hw", "1"),
        ],
    )
    db.execute("INSERT INTO counters VALUES ('events_in', 2)")
    db.commit()
    assert db.execute("PRAGMA user_version").fetchone()[0] == 0
    db.close()
    return raised.alert_id


def _tables(path: Path) -> set[str]:
    db = sqlite3.connect(path)
    try:
        return {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    finally:
        db.close()


def test_a_file_from_before_versions_is_migrated_and_the_collector_carries_on(
    tmp_path: Path,
) -> None:
    config = load_config(write_collector_setup(tmp_path, port=1, topic_root=ROOT))
    unpaid = _old_file(config.store.path, config.site)

    store = SqliteStore(config.store.path)
    assert store.migrated_from == 0
    db = sqlite3.connect(config.store.path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == VERSION
    # the one engine's snapshot now stands for every zone; nothing else moved
    assert db.execute("SELECT zone_id, pos FROM engine_snapshots").fetchall() == [(EVERY_ZONE, 1)]
    assert db.execute("SELECT key FROM kv WHERE key LIKE 'engine%'").fetchall() == []
    db.close()
    assert store.count_events() == 2
    assert [e.pos for e in store.journal()] == [1, 2]
    assert store.counters() == {"events_in": 2}

    clock = Clock(T0 + 10 * MIN)
    link = FakeLink()
    collector = assemble(config, load_site(config.site), store, link, clock=clock)
    collector.cycle.tick()
    # the rules carried on from the saved engine and the journal after it: B001's unpaid alert
    # is known (not raised again), B002's is raised now, both overstay at 2 minutes past
    rules = collector.cycle.core.rules
    assert rules.alert(unpaid) is not None
    raised = sorted(
        (a["bay_id"], a["kind"]) for a in link.topics("/alerts/Z1") if a["status"] == "open"
    )
    assert raised.count(("B001", "unpaid")) == 1  # the one left in the outbox, sent again
    assert ("B002", "unpaid") in raised
    assert present(collector.queries.bay("B002"))["since"] == format_instant(T0 + MIN)
    assert present(collector.queries.alert(unpaid))["status"] == "open"
    # a new journal position follows the old ones, and the next save is per zone
    collector.cycle.save()
    db = sqlite3.connect(config.store.path)
    assert db.execute("SELECT zone_id FROM engine_snapshots").fetchall() == [("Z1",)]
    db.close()
    store.close()
    # opening it again migrates nothing
    assert SqliteStore(config.store.path).migrated_from == VERSION


def test_an_older_file_gains_the_tables_it_lacks(tmp_path: Path) -> None:
    """Before bay origins and sign-ins were kept, the file had neither table."""
    config = load_config(write_collector_setup(tmp_path, port=1, topic_root=ROOT))
    _old_file(config.store.path, config.site, oldest=True)
    assert "bay_origins" not in _tables(config.store.path)
    store = SqliteStore(config.store.path)
    assert {"bay_origins", "officer_sessions", "signin_links", "engine_snapshots"} <= _tables(
        config.store.path
    )
    assert store.note_bays(["B001"], T0) == 1
    assert store.bay_origins() == {"B001": T0}


def test_a_version_2_file_gains_the_rights_indexes(tmp_path: Path) -> None:
    """Version 3 finds a bay's or a zone's rights by index (the officers' cards show them)."""
    path = tmp_path / "v2.db"
    _file_at(path, 2)
    assert SqliteStore(path).migrated_from == 2
    db = sqlite3.connect(path)
    indexes = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert {"rights_bay", "rights_zone"} <= indexes
    assert db.execute("PRAGMA user_version").fetchone()[0] == VERSION
    db.close()


def test_a_version_3_file_gains_the_spool_its_commits_write_points_to(tmp_path: Path) -> None:
    """Version 4 writes a batch's time-series lines in the batch's own transaction."""
    path = tmp_path / "v3.db"
    _file_at(path, 3)
    store = SqliteStore(path)
    assert store.migrated_from == 3
    store.commit(Work(Effects(), lines=["bay_state,bay_id=B1 occupied=1i 1000"] * 3))
    spool = store.open_spool(max_lines=1000, block=100)
    assert spool.depth == 3
    assert spool.head(100)[1] == ["bay_state,bay_id=B1 occupied=1i 1000"] * 3
    spool.close()
    store.close()
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == VERSION == 6
    db.close()


def test_a_version_5_file_keeps_its_sessions_and_the_open_ones_wait_apart(
    tmp_path: Path,
) -> None:
    """Version 6 keeps the newest sessions in ``sessions_recent`` until they are closed and many:
    the open sessions of a version 5 file move there, the closed ones stay, all read as before."""
    path = tmp_path / "v5.db"
    _file_at(path, 5)
    db = sqlite3.connect(path)
    db.executemany(
        "INSERT INTO sessions(bay_id, start, end, alerts) VALUES (?, ?, ?, ?)",
        [("B1", 10, 20, 1), ("B1", 30, None, 2), ("B2", 5, 15, 0), ("B2", 25, None, 0)],
    )
    db.commit()
    db.close()
    store = SqliteStore(path)
    assert store.migrated_from == 5
    assert store.sessions("B1", None, None, 10, None) == [(10, 20, 1), (30, None, 2)]
    assert store.sessions("B2", None, None, 10, None) == [(5, 15, 0), (25, None, 0)]
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == VERSION == 6
    assert db.execute("SELECT * FROM sessions ORDER BY bay_id, start").fetchall() == [
        ("B1", 10, 20, 1),
        ("B2", 5, 15, 0),
    ]
    assert db.execute("SELECT * FROM sessions_recent ORDER BY bay_id").fetchall() == [
        ("B1", 30, None, 2),
        ("B2", 25, None, 0),
    ]
    db.close()
    # the collector carries on: closing an open session, counting an alert on a closed one
    store.commit(
        Work(
            Effects(
                sessions=(
                    (SessionStep.CLOSE, "B1", 30, 40),
                    (SessionStep.ALERT, "B2", 5, None),
                    (SessionStep.OPEN, "B1", 10, None),  # there already: no change
                )
            )
        )
    )
    assert store.sessions("B1", None, None, 10, None) == [(10, 20, 1), (30, 40, 2)]
    assert store.sessions("B2", None, None, 10, None) == [(5, 15, 1), (25, None, 0)]
    store.close()


def test_a_new_file_starts_at_the_latest_version(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "new.db")
    assert store.migrated_from == 0
    assert SqliteStore(tmp_path / "new.db").migrated_from == VERSION
    assert "engine_snapshots" in _tables(tmp_path / "new.db")


def test_a_file_from_a_newer_collector_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "newer.db"
    SqliteStore(path).close()
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version = {VERSION + 1}")
    db.commit()
    db.close()
    with pytest.raises(StoreError, match="newer than this collector"):
        SqliteStore(path)


def test_a_failed_migration_leaves_the_old_file_as_it_was(tmp_path: Path) -> None:
    config = load_config(write_collector_setup(tmp_path, port=1, topic_root=ROOT))
    _old_file(config.store.path, config.site)
    db = sqlite3.connect(config.store.path)
    db.execute("CREATE TABLE engine_snapshots (x)")  # in the way of the migration
    db.commit()
    db.close()
    with pytest.raises(StoreError):
        SqliteStore(config.store.path)
    db = sqlite3.connect(config.store.path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == 0
    assert json.loads(db.execute("SELECT value FROM kv WHERE key = 'engine'").fetchone()[0])
    db.close()


def test_rights_stored_before_they_had_owners_have_none_after_the_migration(
    tmp_path: Path,
) -> None:
    config = load_config(write_collector_setup(tmp_path, port=1, topic_root=ROOT))
    _old_file(config.store.path, config.site)
    body = {"type": "right", "right_id": "r1", "kind": "payment", "bay_id": "B001"}
    db = sqlite3.connect(config.store.path)
    db.execute("INSERT INTO rights(right_id, body, deleted) VALUES ('r1', ?, 0)", (dumps(body),))
    db.commit()
    db.close()
    store = SqliteStore(config.store.path)
    assert store.right("r1") == StoredRight(body, cancelled=False, owner=None)
    store.commit(Work(Effects(rights=(RightRow("r2", {**body, "right_id": "r2"}, False, "p"),))))
    found = store.right("r2")
    assert found is not None
    assert found.owner == "p"
