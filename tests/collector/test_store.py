"""The collector's SQLite store: journal, dedup, bays, sessions, alerts, outbox, retention."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from kerbside.collector.store import Store


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "c.db")


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


def test_wal_mode_and_journal_order(store: Store) -> None:
    with store.transaction():
        a = store.append_journal("occupancy", 20, 5, {"event_id": "e1"})
        b = store.append_journal("right", 10, 5, {"right_id": "r1"})
        store.add_event("e1", a, "abc")
    assert b > a
    assert [e.body for e in store.journal()] == [{"event_id": "e1"}, {"right_id": "r1"}]
    assert [e.type for e in store.journal(after_pos=a)] == ["right"]
    assert [e.type for e in store.journal(types=["occupancy"])] == ["occupancy"]
    assert store.event_digest("e1") == "abc"
    assert store.event_digest("e2") is None
    mode = sqlite3.connect(store.path).execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"


def test_rollback_leaves_nothing(store: Store) -> None:
    def write_then_fail() -> None:
        with store.transaction():
            store.append_journal("occupancy", 1, 0, {})
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        write_then_fail()
    assert store.last_journal_pos() == 0
    # and the store is usable afterwards
    with store.transaction():
        store.append_journal("occupancy", 1, 0, {})
    assert store.last_journal_pos() == 1


def test_duplicate_event_id_is_refused_by_the_schema(store: Store) -> None:
    with store.transaction():
        store.add_event("e1", 1, "x")
    with pytest.raises(sqlite3.IntegrityError), store.transaction():
        store.add_event("e1", 2, "y")
    assert store.count_events() == 1


def test_state_changes_give_state_at_start_then_changes(store: Store) -> None:
    with store.transaction():
        store.add_state_change("B1", 100, "occupied")
        store.add_state_change("B1", 200, "vacant")
        store.add_state_change("B1", 300, "occupied")
        store.add_state_change("B2", 50, "vacant")
    got = store.state_changes(None, 150, 300)
    assert got == {"B1": [(150, "occupied"), (200, "vacant")], "B2": [(150, "vacant")]}
    assert store.state_changes(["B2"], 0, 60) == {"B2": [(50, "vacant")]}


def test_sessions_open_close_and_overlap_query(store: Store) -> None:
    with store.transaction():
        store.open_session("B1", 100)
        store.close_session("B1", 100, 200)
        store.open_session("B1", 300)
        store.count_session_alert("B1", 300)
    assert store.sessions("B1", None, None, 10, None) == [(100, 200, 0), (300, None, 1)]
    assert store.sessions("B1", 250, None, 10, None) == [(300, None, 1)]
    assert store.sessions("B1", None, 150, 10, None) == [(100, 200, 0)]
    assert store.sessions("B1", None, None, 10, 100) == [(300, None, 1)]


def test_alerts_keep_history_and_paginate(store: Store) -> None:
    with store.transaction():
        c1 = store.put_alert(_alert("a1"), 1000)
        store.put_alert(_alert("a2", raised="2026-11-26T08:00:01.000Z"), 2000)
        c3 = store.put_alert(_alert("a1", "cleared"), 1000)
        store.add_alert_history("a1", {"action": "ack", "officer": "pc-1"})
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


def test_outbox_survives_reopen(tmp_path: Path) -> None:
    store = Store(tmp_path / "c.db")
    with store.transaction():
        one = store.add_outbox("t/a", "{}", 1, False)
        store.add_outbox("t/b", "{}", 1, True)
    store.close()
    store = Store(tmp_path / "c.db")
    assert [m.topic for m in store.outbox()] == ["t/a", "t/b"]
    with store.transaction():
        store.remove_outbox([one])
    assert [(m.topic, m.retain) for m in store.outbox()] == [("t/b", True)]


def test_prune_keeps_what_the_engine_needs_and_each_bays_last_state(store: Store) -> None:
    with store.transaction():
        for i, t in enumerate([10, 20, 30, 40], 1):
            pos = store.append_journal("occupancy", t, 0, {"n": i})
            store.add_event(f"e{i}", pos, "d")
        store.append_journal("right", 5, 0, {"right_id": "r"})
        store.add_state_change("B1", 10, "occupied")
        store.add_state_change("B1", 20, "vacant")
        store.open_session("B1", 10)
        store.close_session("B1", 10, 20)
    removed = store.prune(before=35, keep_from_pos=3)
    assert removed == 2  # events at 10 and 20; 30 is still needed by the engine
    assert [e.body.get("n") for e in store.journal(types=["occupancy"])] == [3, 4]
    assert store.event_digest("e1") is None
    assert store.event_digest("e3") == "d"
    assert [e.type for e in store.journal(types=["right"])] == ["right"]
    assert store.state_changes(["B1"], 100, 200) == {"B1": [(100, "vacant")]}
    assert store.sessions("B1", None, None, 10, None) == []


def test_counters_add_up(store: Store) -> None:
    with store.transaction():
        store.add_counters({"rejected.not_json": 2})
        store.add_counters({"rejected.not_json": 1, "events_in": 5})
    assert store.counters() == {"rejected.not_json": 3, "events_in": 5}
