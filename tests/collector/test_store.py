"""The collector's SQLite store: journal, dedup, bays, sessions, alerts, outbox, retention."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from kerbside.collector.effects import AlertNote, Effects, RightRow
from kerbside.collector.errors import DamagedStoreError, StoreError
from kerbside.collector.records import Right, to_journal_dict
from kerbside.collector.store import StoredRight, Work
from kerbside.collector.store.sqlite import SqliteStore
from tests.collector.store_rows import (
    alert_write,
    closed,
    counted,
    journal_row,
    opened,
    write,
)


@pytest.fixture
def store(tmp_path: Path) -> SqliteStore:
    return SqliteStore(tmp_path / "c.db")


def _alert(alert_id: str, status: str = "open", raised: str = "2026-11-26T08:00:00.000Z") -> dict:
    return {
        "v": 1,
        "alert_id": alert_id,
        "kind": "overstay",
        "status": status,
        "bay_id": "B1",
        "zone_id": "Z1",
        "raised_at": raised,
        "session_start": raised,
    }


def test_wal_mode_and_journal_order(store: SqliteStore) -> None:
    committed = write(
        store,
        journal=[
            journal_row(
                "occupancy", 20, {"event_id": "e1"}, watermark=5, event_id="e1", digest="abc"
            ),
            journal_row("right", 10, {"right_id": "r1"}, watermark=5),
        ],
    )
    a, b = committed.last_pos - 1, committed.last_pos
    assert b > a
    assert [e.body for e in store.journal()] == [{"event_id": "e1"}, {"right_id": "r1"}]
    assert [e.type for e in store.journal(after_pos=a)] == ["right"]
    assert [e.type for e in store.journal(types=["occupancy"])] == ["occupancy"]
    assert store.event_digests(["e1", "e2"]) == {"e1": "abc"}
    mode = sqlite3.connect(store.path).execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"


def test_rollback_leaves_nothing(store: SqliteStore) -> None:
    rows = [journal_row("occupancy", 1, {}, event_id="e1", digest="x")] * 2  # the same id twice
    with pytest.raises(StoreError):
        write(store, journal=rows)
    assert list(store.journal()) == []
    # and the store is usable afterwards
    committed = write(store, journal=rows[:1])
    assert [e.pos for e in store.journal()] == [committed.last_pos]


def test_duplicate_event_id_is_refused_by_the_schema(store: SqliteStore) -> None:
    write(store, journal=[journal_row("occupancy", 1, {}, event_id="e1", digest="x")])
    with pytest.raises(StoreError):
        write(store, journal=[journal_row("occupancy", 2, {}, event_id="e1", digest="y")])
    assert store.count_events() == 1


def test_state_changes_give_state_at_start_then_changes(store: SqliteStore) -> None:
    write(
        store,
        state_changes=[
            ("B1", 100, "occupied"),
            ("B1", 200, "vacant"),
            ("B1", 300, "occupied"),
            ("B2", 50, "vacant"),
        ],
    )
    got = store.state_changes(None, 150, 300)
    assert got == {"B1": [(150, "occupied"), (200, "vacant")], "B2": [(150, "vacant")]}
    assert store.state_changes(["B2"], 0, 60) == {"B2": [(50, "vacant")]}


def test_sessions_open_close_and_overlap_query(store: SqliteStore) -> None:
    write(
        store,
        sessions=[opened("B1", 100), closed("B1", 100, 200), opened("B1", 300), counted("B1", 300)],
    )
    assert store.sessions("B1", None, None, 10, None) == [(100, 200, 0), (300, None, 1)]
    assert store.sessions("B1", 250, None, 10, None) == [(300, None, 1)]
    assert store.sessions("B1", None, 150, 10, None) == [(100, 200, 0)]
    assert store.sessions("B1", None, None, 10, 100) == [(300, None, 1)]


def test_alerts_keep_history_and_paginate(store: SqliteStore) -> None:
    committed = write(
        store,
        alerts=[
            alert_write(_alert("a1"), 1000),
            alert_write(_alert("a2", raised="2026-11-26T08:00:01.000Z"), 2000),
            alert_write(_alert("a1", "cleared"), 1000),
        ],
        notes=[AlertNote("a1", {"action": "ack", "officer": "pc-1"})],
    )
    (c1, _), _, (c3, _) = committed.changes
    assert c3 > c1
    assert store.alert("a1")["status"] == "cleared"
    found = store.alert_with_history("a1")
    assert found is not None
    assert found[1] == [{"action": "ack", "officer": "pc-1"}]
    assert [a["alert_id"] for a in store.alerts(limit=1)] == ["a1"]
    assert [a["alert_id"] for a in store.alerts(after=(1000, "a1"))] == ["a2"]
    assert [a["alert_id"] for a in store.alerts(status="open")] == ["a2"]
    changes = store.alert_changes_since(c1, 10)
    assert [r["status"] for _, r in changes] == ["open", "cleared"]
    assert store.last_alert_change() == c3


def test_outbox_survives_reopen(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "c.db")
    committed = write(store, publications=[("t/a", "{}", False), ("t/b", "{}", True)])
    one = committed.outbox[0].id
    store.close()
    store = SqliteStore(tmp_path / "c.db")
    assert [m.topic for m in store.outbox()] == ["t/a", "t/b"]
    store.commit(Work(Effects(), delivered=[one]))
    assert [(m.topic, m.retain) for m in store.outbox()] == [("t/b", True)]


def test_prune_keeps_what_the_engine_needs_and_each_bays_last_state(store: SqliteStore) -> None:
    write(
        store,
        journal=[
            *(
                journal_row("occupancy", t, {"n": i}, event_id=f"e{i}", digest="d")
                for i, t in enumerate([10, 20, 30, 40], 1)
            ),
            journal_row("right", 5, {"right_id": "r"}),
        ],
        state_changes=[("B1", 10, "occupied"), ("B1", 20, "vacant")],
        sessions=[opened("B1", 10), closed("B1", 10, 20)],
    )
    removed = store.prune(before=35, keep_from_pos=3)
    assert removed == 2  # events at 10 and 20; 30 is still needed by the engine
    assert [e.body.get("n") for e in store.journal(types=["occupancy"])] == [3, 4]
    assert store.event_digests(["e1", "e3"]) == {"e3": "d"}
    assert [e.type for e in store.journal(types=["right"])] == ["right"]
    assert store.state_changes(["B1"], 100, 200) == {"B1": [(100, "vacant")]}
    assert store.sessions("B1", None, None, 10, None) == []


def test_counters_add_up(store: SqliteStore) -> None:
    write(store, counters={"rejected.not_json": 2})
    write(store, counters={"rejected.not_json": 1, "events_in": 5})
    assert store.counters() == {"rejected.not_json": 3, "events_in": 5}


def test_a_right_keeps_its_owner_through_replacement_and_cancellation(store: SqliteStore) -> None:
    body = {"type": "right", "right_id": "r1", "kind": "payment", "bay_id": "B1"}
    assert store.right("r1") is None
    write(store, rights=[RightRow("r1", body, False, "prov-a")])
    assert store.right("r1") == StoredRight(body, cancelled=False, owner="prov-a")
    longer = {**body, "end": "later"}
    write(store, rights=[RightRow("r1", longer, False, "prov-a")])
    write(store, rights=[RightRow("r1", longer, True, "prov-a")])
    assert store.right("r1") == StoredRight(longer, cancelled=True, owner="prov-a")
    # the council's rights (a journal file) have no owner
    write(store, rights=[RightRow("r2", {**body, "right_id": "r2"}, False, None)])
    found = store.right("r2")
    assert found is not None
    assert found.owner is None


def test_rights_for_a_stay_come_by_bay_and_zone(store: SqliteStore) -> None:
    def row(right_id: str, start: int, end: int, **place: str) -> RightRow:
        right = Right(right_id, "payment", place.get("bay_id"), place.get("zone_id"), start, end)
        return RightRow(right_id, to_journal_dict(right), False, None)

    write(
        store,
        rights=[
            row("own", 100, 200, bay_id="B1"),
            row("ended-before", 0, 100, bay_id="B1"),  # [start, end): not at 100
            row("starts-after", 301, 400, bay_id="B1"),
            row("other-bay", 100, 200, bay_id="B2"),
            row("blanket", 0, 1000, zone_id="Z1"),
            row("other-zone", 0, 1000, zone_id="Z2"),
            row("cancelled", 100, 200, bay_id="B1"),
        ],
    )
    write(store, rights=[RightRow("cancelled", row("x", 100, 200, bay_id="B1").body, True, None)])
    found = store.rights_for({"B1"}, {"Z1"}, 100, 300)
    assert sorted(r.right_id for r in found) == ["blanket", "own"]
    assert store.rights_for({"B1"}, set(), 300, 300) == []
    assert [r.right_id for r in store.rights_for({"B1"}, set(), 301, 301)] == ["starts-after"]
    # Found by index, not by reading every right.
    plan = store._db.execute(
        "EXPLAIN QUERY PLAN SELECT body FROM rights WHERE json_extract(body, '$.bay_id') IN (?)"
        " AND json_extract(body, '$.end') > ? AND deleted = 0",
        ("B1", "x"),
    ).fetchall()
    assert any("rights_bay" in str(step) for step in plan), plan


def test_a_file_that_is_not_a_database_is_damaged_not_merely_failing(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    path.write_bytes(b"this is not a database " * 400)
    with pytest.raises(DamagedStoreError, match=str(path)):
        SqliteStore(path)


def test_damaged_pages_are_reported_as_a_damaged_store(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    store = SqliteStore(path)
    rows = [journal_row("occupancy", i, {"n": i, "pad": "x" * 200}) for i in range(2000)]
    write(store, journal=rows)
    store.close()
    data = bytearray(path.read_bytes())
    page = 4096
    for offset in range(2 * page, len(data) - page, page):  # every page but the first two
        data[offset : offset + 64] = b"\xa5" * 64
    path.write_bytes(bytes(data))

    def open_and_read() -> None:
        store = SqliteStore(path)
        store.recover()
        list(store.journal())

    with pytest.raises(DamagedStoreError, match="restore it from a backup"):
        open_and_read()


def test_a_full_or_locked_store_is_not_called_damaged(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    SqliteStore(path).close()
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        store = SqliteStore(path)
        store._db.execute("PRAGMA busy_timeout=50")
        with pytest.raises(StoreError) as failure:
            write(store, counters={"x": 1})
        assert not isinstance(failure.value, DamagedStoreError)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
