"""The store port, on every adapter (the ``store`` fixture runs each test on SQLite and on
PostgreSQL): journal, de-duplication, bays, sessions, alerts and their changes, rights,
suspensions, gateways and sensors, counters, snapshots, the outbox, retention, recovery.

A port method added with a test here is tested on both adapters."""

from __future__ import annotations

import inspect
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from kerbside.collector import backfill
from kerbside.collector.effects import (
    AlertNote,
    Effects,
    GatewayRow,
    RightRow,
    SensorRow,
    SuspensionRow,
)
from kerbside.collector.errors import DamagedStoreError, StoreError
from kerbside.collector.records import Right, to_journal_dict
from kerbside.collector.store import Store, StoredRight, Work
from kerbside.collector.store import sqlite as sqlite_store
from kerbside.collector.store.postgres import PostgresStore
from kerbside.collector.store.sqlite import SqliteStore
from kerbside.core.site import load_site
from tests.collector.store_rows import (
    alert_write,
    closed,
    counted,
    journal_row,
    opened,
    write,
)
from tests.pg import Stores


def _alert(
    alert_id: str,
    status: str = "open",
    raised: str = "2026-11-26T08:00:00.000Z",
    kind: str = "overstay",
    bay: str = "B1",
    zone: str = "Z1",
) -> dict[str, Any]:
    return {
        "v": 1,
        "alert_id": alert_id,
        "kind": kind,
        "status": status,
        "bay_id": bay,
        "zone_id": zone,
        "raised_at": raised,
        "session_start": raised,
    }


def test_journal_in_order_with_types_and_digests(store: Store) -> None:
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
    assert [(e.pos, e.time, e.watermark) for e in store.journal()] == [(a, 20, 5), (b, 10, 5)]
    assert [e.type for e in store.journal(after_pos=a)] == ["right"]
    assert [e.type for e in store.journal(types=["occupancy"])] == ["occupancy"]
    assert store.event_digests(["e1", "e2"]) == {"e1": "abc"}
    assert store.event_digests([]) == {}


def test_positions_are_dense_and_never_handed_out_again(stores: Stores) -> None:
    store = stores.open()
    first = write(store, journal=[journal_row("right", 1, {"n": 1})]).last_pos
    second = write(store, journal=[journal_row("right", 2, {"n": 2})] * 3).last_pos
    assert second == first + 3
    store.prune(before=10**12, keep_from_pos=10**12)  # rights are kept; nothing else to go
    again = stores.open()  # a restart hands out after the last, not after what is left
    assert write(again, journal=[journal_row("right", 3, {"n": 3})]).last_pos == second + 1
    assert [e.pos for e in again.journal()] == list(range(first, second + 2))


def test_sqlite_runs_in_wal_mode(stores: Stores) -> None:
    if stores.kind != "sqlite":
        return  # PostgreSQL has its own write-ahead log, always
    stores.open()
    mode = sqlite3.connect(stores.path).execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"


def test_rollback_leaves_nothing(store: Store) -> None:
    rows = [journal_row("occupancy", 1, {}, event_id="e1", digest="x")] * 2  # the same id twice
    with pytest.raises(StoreError):
        write(
            store,
            journal=rows,
            bays=[("B1", "occupied", 1, "gw", 1)],
            alerts=[alert_write(_alert("a1"), 1)],
            publications=[("t/a", "{}", False)],
            counters={"events_in": 2},
        )
    assert list(store.journal()) == []
    assert store.bay_states(["B1"]) == {}
    assert store.alert("a1") is None
    assert store.alert_changes_since(0, 10) == []
    assert store.outbox() == []
    assert store.counters() == {}
    # and the store is usable afterwards, the failed commit's ids unseen
    committed = write(store, journal=rows[:1])
    assert [e.pos for e in store.journal()] == [committed.last_pos]


def test_duplicate_event_id_is_refused_by_the_schema(store: Store) -> None:
    write(store, journal=[journal_row("occupancy", 1, {}, event_id="e1", digest="x")])
    with pytest.raises(StoreError):
        write(store, journal=[journal_row("occupancy", 2, {}, event_id="e1", digest="y")])
    assert store.count_events() == 1
    assert store.event_digests(["e1"]) == {"e1": "x"}


def test_bays_hold_their_last_row(store: Store) -> None:
    write(store, bays=[("B1", "occupied", 100, "gw-1", 100), ("B2", "vacant", 50, None, None)])
    write(store, bays=[("B1", "vacant", 200, "gw-2", None)])
    assert store.bay_states(["B1", "B2", "B3"]) == {
        "B1": ("vacant", 200, "gw-2", None),
        "B2": ("vacant", 50, None, None),
    }
    assert store.bay_states([]) == {}


def test_state_changes_give_state_at_start_then_changes(store: Store) -> None:
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
    # two changes at one instant: the later written is the state after it
    write(store, state_changes=[("B3", 10, "occupied"), ("B3", 10, "vacant")])
    assert store.state_changes(["B3"], 20, 30) == {"B3": [(20, "vacant")]}


@pytest.mark.parametrize("fold", [1, 3, 10_000])
def test_state_changes_read_the_same_wherever_they_wait(
    store: Store, monkeypatch: pytest.MonkeyPatch, fold: int
) -> None:
    """SQLite keeps new state changes apart, in the order they come, and moves them into bay
    order ``fold`` at a time: what is read does not depend on where they are."""
    monkeypatch.setattr(sqlite_store, "FOLD_CHANGES", fold)
    write(store, state_changes=[("B1", 100, "occupied"), ("B2", 50, "vacant")])
    write(store, state_changes=[("B1", 200, "vacant"), ("B3", 10, "occupied")])
    # two changes at one instant, stored apart: the later written is the state after it
    write(store, state_changes=[("B1", 300, "occupied"), ("B3", 10, "vacant")])
    assert store.state_changes(["B3"], 20, 30) == {"B3": [(20, "vacant")]}
    write(store, state_changes=[("B2", 40, "occupied")])  # late: before what B2 has
    everything = {
        "B1": [(100, "occupied"), (200, "vacant"), (300, "occupied")],
        "B2": [(40, "occupied"), (50, "vacant")],
        "B3": [(10, "occupied"), (10, "vacant")],
    }
    assert store.state_changes(None, 0, 1000) == everything
    assert store.state_changes(None, 150, 300) == {
        "B1": [(150, "occupied"), (200, "vacant")],
        "B2": [(150, "vacant")],
        "B3": [(150, "vacant")],
    }
    assert store.state_changes(["B2", "B9"], 45, 60) == {"B2": [(45, "occupied"), (50, "vacant")]}
    assert store.timelines(["B1", "B2", "B3"], 0, 1000) == everything
    assert store.bay_origins(["B1", "B2", "B3"]) == {"B1": 100, "B2": 40, "B3": 10}


def test_sqlite_moves_state_changes_into_bay_order_many_at_a_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each bay's changes are kept in bay order, for its timeline; written there a batch at a
    time, a batch would put a row on a page of that index for each bay it changes (and each
    such page goes whole into the write-ahead log). So they wait in the order they come and
    move ``FOLD_CHANGES`` at a time, in the commit that takes them past it."""
    monkeypatch.setattr(sqlite_store, "FOLD_CHANGES", 4)
    path = tmp_path / "collector.db"
    store = SqliteStore(path)

    def rows() -> tuple[int, int]:
        db = sqlite3.connect(path)
        try:
            counts = [
                db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
                for table in ("state_changes", "state_changes_recent")
            ]
            return counts[0], counts[1]
        finally:
            db.close()

    write(store, state_changes=[("B1", 1, "occupied"), ("B2", 2, "occupied")])
    assert rows() == (0, 2)
    write(store, state_changes=[("B1", 3, "vacant"), ("B2", 4, "vacant")])  # the fourth waiting
    assert rows() == (4, 0)
    write(store, state_changes=[("B1", 5, "occupied")])
    assert rows() == (4, 1)
    store.close()
    store = SqliteStore(path)  # what waits is counted as the store opens
    write(store, state_changes=[("B2", 6, "occupied"), ("B1", 7, "vacant"), ("B2", 8, "vacant")])
    assert rows() == (8, 0)
    write(store, state_changes=[("B1", 9, "occupied")])
    # retention moves what waits first: each bay keeps its last change, wherever it was
    store.prune(before=100, keep_from_pos=0)
    assert rows() == (2, 0)
    assert store.state_changes(None, 100, 200) == {
        "B1": [(100, "occupied")],
        "B2": [(100, "vacant")],
    }
    store.close()


def test_timelines_read_the_same_from_a_worker_thread_while_the_loop_commits(
    store: Store,
) -> None:
    write(store, state_changes=[("B1", 100, "occupied"), ("B1", 200, "vacant")])
    with ThreadPoolExecutor(1) as pool:
        reading = pool.submit(store.timelines, ["B1", "B9"], 150, 300)
        write(store, state_changes=[("B2", 160, "occupied")])  # the loop commits meanwhile
        assert reading.result(timeout=30) == {"B1": [(150, "occupied"), (200, "vacant")]}
    assert store.timelines(["B1", "B2"], 0, 1000) == store.state_changes(["B1", "B2"], 0, 1000)


def test_a_commit_begun_is_read_only_once_the_worker_thread_has_ended_it(store: Store) -> None:
    """The collector begins a batch's commit on its loop and ends it in a worker thread while
    the loop reads and decides the next: meanwhile the loop's reads (the API's, the next batch's
    de-duplication) see the store as it was, never what may yet fail; then all of it."""
    row = journal_row("occupancy", 1, {"bay_id": "B1"}, event_id="e1", digest="d1")
    finish = store.begin(Work(Effects(journal=(row,), state_changes=(("B1", 100, "occupied"),))))
    assert store.event_digests(["e1"]) == {}
    assert store.state_changes(["B1"], 0, 1000) == {}
    with ThreadPoolExecutor(1) as pool:
        committed = pool.submit(finish).result(timeout=30)
    assert [entry.pos for entry in store.journal()] == [committed.last_pos]
    assert store.event_digests(["e1"]) == {"e1": "d1"}
    assert store.state_changes(["B1"], 0, 1000) == {"B1": [(100, "occupied")]}
    write(store, counters={"after": 1})  # the next unit of work goes as usual
    assert store.counters()["after"] == 1


def test_a_commit_refused_as_it_ends_in_a_worker_thread_leaves_nothing(store: Store) -> None:
    """SQLite writes a batch's events, state changes and bays as its commit ends, in the
    worker thread: rows refused there (an event id stored before) fail the commit there, and
    nothing of the unit of work is stored, the other rows of it included."""
    write(store, journal=[journal_row("occupancy", 1, {}, event_id="e1", digest="x")])
    work = Work(
        Effects(
            journal=(
                journal_row("occupancy", 2, {"n": 2}, event_id="e2", digest="y"),
                journal_row("occupancy", 3, {"n": 3}, event_id="e1", digest="z"),
            ),
            state_changes=(("B1", 100, "occupied"),),
            bays=(("B1", "occupied", 100, "gw", 100),),
            sessions=(opened("B1", 100),),
            counters={"events_in": 2},
        )
    )
    with pytest.raises(StoreError), ThreadPoolExecutor(1) as pool:
        pool.submit(store.begin(work)).result(timeout=30)
    assert store.event_digests(["e1", "e2"]) == {"e1": "x"}
    assert [entry.body for entry in store.journal()] == [{}]
    assert store.state_changes(["B1"], 0, 1000) == {}
    assert store.bay_states(["B1"]) == {}
    assert store.sessions("B1", None, None, 10, None) == []
    assert store.counters() == {}
    # and the next unit of work goes as usual
    write(store, bays=[("B1", "vacant", 200, "gw", None)], state_changes=[("B1", 200, "vacant")])
    assert store.bay_states(["B1"]) == {"B1": ("vacant", 200, "gw", None)}
    assert store.state_changes(["B1"], 0, 1000) == {"B1": [(200, "vacant")]}


def test_sessions_open_close_and_overlap_query(store: Store) -> None:
    write(
        store,
        sessions=[opened("B1", 100), closed("B1", 100, 200), opened("B1", 300), counted("B1", 300)],
    )
    write(store, sessions=[counted("B1", 300), opened("B1", 300)])  # opened again: no change
    assert store.sessions("B1", None, None, 10, None) == [(100, 200, 0), (300, None, 2)]
    assert store.sessions("B1", 250, None, 10, None) == [(300, None, 2)]
    assert store.sessions("B1", None, 150, 10, None) == [(100, 200, 0)]
    assert store.sessions("B1", None, None, 10, 100) == [(300, None, 2)]
    assert store.sessions("B1", None, None, 1, None) == [(100, 200, 0)]
    assert store.sessions("B2", None, None, 10, None) == []


SITE = """
site: sessions-test
timezone: Europe/London
zones:
  - {id: Z1, name: One, controlled_hours: any}
bays:
  - {id: B1, zone: Z1, street: High Street, kind: limited, max_stay_minutes: 60, sensor: S1,
     gateway: gw-1}
  - {id: B2, zone: Z1, street: High Street, kind: paid, sensor: S2, gateway: gw-1}
  - {id: B3, zone: Z1, street: High Street, kind: free, sensor: S3, gateway: gw-1}
"""


@pytest.mark.parametrize("fold", [1, 3, 10_000])
def test_sessions_read_the_same_wherever_they_wait(
    store: Store, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, fold: int
) -> None:
    """SQLite keeps new sessions apart, in the order they start, and moves the closed ones into
    bay order once ``fold`` of them wait: what is read does not depend on where they are."""
    monkeypatch.setattr(sqlite_store, "FOLD_SESSIONS", fold)
    write(store, sessions=[opened("B1", 100), opened("B2", 50), opened("B3", 10)])
    write(store, sessions=[closed("B1", 100, 200), opened("B1", 300), closed("B3", 10, 20)])
    # B2's session, opened before any move, closes after the first; alerts on closed sessions
    # count wherever they are (moved already at fold 1, not yet at 3, never at 10,000)
    write(
        store,
        sessions=[counted("B1", 100), counted("B1", 300), closed("B2", 50, 400), opened("B2", 400)],
    )
    write(store, sessions=[counted("B3", 10), opened("B1", 100), opened("B3", 10)])  # no change
    write(
        store,
        sessions=[counted("B1", 300), opened("B3", 500)],
        bays=[("B1", "occupied", 300, "gw-1", 300), ("B2", "occupied", 400, "gw-1", 400)],
        alerts=[
            alert_write(_alert("a1", kind="overstay", bay="B1"), 150),  # of B1's closed session
            alert_write(_alert("a2", kind="overstay", bay="B1"), 310),
            alert_write(_alert("a3", kind="unpaid", bay="B2"), 450),
        ],
    )
    assert store.sessions("B1", None, None, 10, None) == [(100, 200, 1), (300, None, 2)]
    assert store.sessions("B2", None, None, 10, None) == [(50, 400, 0), (400, None, 0)]
    assert store.sessions("B3", None, None, 10, None) == [(10, 20, 1), (500, None, 0)]
    assert store.sessions("B1", 250, None, 10, None) == [(300, None, 2)]
    assert store.sessions("B1", None, 150, 10, None) == [(100, 200, 1)]
    assert store.sessions("B1", None, None, 10, 100) == [(300, None, 2)]
    assert store.sessions("B2", None, None, 1, None) == [(50, 400, 0)]
    assert store.sessions("B2", None, None, 1, 50) == [(400, None, 0)]
    assert store.sessions("B2", 60, 450, 10, None) == [(50, 400, 0), (400, None, 0)]
    assert store.sessions("B3", 20, 500, 10, None) == []
    # the enforcement alerts of the sessions still open
    assert [a["alert_id"] for a in store.recover().session_alerts] == ["a2", "a3"]
    # and the sessions the export to the time-series database writes (closed, begun in it)
    (tmp_path / "site.yaml").write_text(SITE)
    site = load_site(tmp_path / "site.yaml")
    lines = list(backfill.alert_and_session_lines(store, site, 0, 1000))
    assert [line for line in lines if line.startswith("bay_session")] == [
        "bay_session,bay_id=B1,kind=limited,street=High\\ Street,zone_id=Z1"
        " duration_s=0.1,overstay_s=0.0,alerts=1i 100",
        "bay_session,bay_id=B2,kind=paid,street=High\\ Street,zone_id=Z1"
        " duration_s=0.35,overstay_s=0.0,alerts=0i 50",
        "bay_session,bay_id=B3,kind=free,street=High\\ Street,zone_id=Z1"
        " duration_s=0.01,overstay_s=0.0,alerts=1i 10",
    ]


def _session_rows(path: Path) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """The rows of ``sessions`` and of ``sessions_recent``, each in bay then start order."""
    db = sqlite3.connect(path)
    try:
        return (
            db.execute("SELECT * FROM sessions ORDER BY bay_id, start").fetchall(),
            db.execute("SELECT * FROM sessions_recent ORDER BY bay_id, start").fetchall(),
        )
    finally:
        db.close()


def test_sqlite_moves_closed_sessions_into_bay_order_many_at_a_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Sessions are kept in bay order, for a bay's history; written there a batch at a time, a
    batch would put a row on a page of that table for each bay it opens or closes a session
    of. So they wait in the order they start, and the closed ones move ``FOLD_SESSIONS`` at a
    time, in the commit that takes them past it; the open ones stay until they close."""
    monkeypatch.setattr(sqlite_store, "FOLD_SESSIONS", 3)
    path = tmp_path / "collector.db"
    store = SqliteStore(path)
    write(store, sessions=[opened("B1", 1), opened("B2", 2), closed("B1", 1, 3), opened("B1", 3)])
    assert _session_rows(path) == ([], [("B1", 1, 3, 0), ("B1", 3, None, 0), ("B2", 2, None, 0)])
    write(store, sessions=[closed("B2", 2, 4), opened("B2", 4), closed("B1", 3, 5)])
    assert _session_rows(path) == (
        [("B1", 1, 3, 0), ("B1", 3, 5, 0), ("B2", 2, 4, 0)],
        [("B2", 4, None, 0)],
    )
    # an alert and a close again of a session moved change it where it is
    write(store, sessions=[counted("B1", 3), closed("B1", 3, 6), opened("B1", 7)])
    assert _session_rows(path) == (
        [("B1", 1, 3, 0), ("B1", 3, 6, 1), ("B2", 2, 4, 0)],
        [("B1", 7, None, 0), ("B2", 4, None, 0)],
    )
    write(store, sessions=[closed("B1", 7, 8), closed("B2", 4, 9), opened("B2", 10)])
    assert len(_session_rows(path)[1]) == 3  # two closed waiting, one open
    store.close()
    store = SqliteStore(path)  # what waits is counted as the store opens
    write(store, sessions=[counted("B2", 10), closed("B2", 10, 11)])
    assert _session_rows(path) == (
        [
            ("B1", 1, 3, 0), ("B1", 3, 6, 1), ("B1", 7, 8, 0),
            ("B2", 2, 4, 0), ("B2", 4, 9, 0), ("B2", 10, 11, 1),
        ],
        [],
    )  # fmt: skip
    write(
        store,
        sessions=[
            opened("B1", 20), closed("B1", 20, 30), opened("B1", 40),
            opened("B3", 8), closed("B3", 8, 9),
        ],
    )  # fmt: skip
    # retention removes old closed sessions wherever they are, and counts what is left waiting
    store.prune(before=10, keep_from_pos=0)
    assert _session_rows(path) == (
        [("B2", 10, 11, 1)],
        [("B1", 20, 30, 0), ("B1", 40, None, 0)],
    )
    assert store.sessions("B1", None, None, 10, None) == [(20, 30, 0), (40, None, 0)]
    write(store, sessions=[closed("B1", 40, 50), opened("B1", 60)])
    assert _session_rows(path)[1] == [("B1", 20, 30, 0), ("B1", 40, 50, 0), ("B1", 60, None, 0)]
    write(store, sessions=[closed("B1", 60, 70)])  # the third closed waiting
    assert _session_rows(path)[1] == []
    store.close()


def test_alerts_keep_history_and_paginate(store: Store) -> None:
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
    alert = store.alert("a1")
    assert alert is not None
    assert alert["status"] == "cleared"
    write(store, notes=[AlertNote("a1", {"officer": "pc-2", "action": "resolve"})])
    found = store.alert_with_history("a1")
    assert found is not None
    assert found[0] == _alert("a1", "cleared")
    assert found[1] == [
        {"action": "ack", "officer": "pc-1"},
        {"action": "resolve", "officer": "pc-2"},
    ]
    assert store.alert_with_history("nope") is None
    assert store.alert("nope") is None
    assert [a["alert_id"] for a in store.alerts(limit=1)] == ["a1"]
    assert [a["alert_id"] for a in store.alerts(after=(1000, "a1"))] == ["a2"]
    assert [a["alert_id"] for a in store.alerts(status="open")] == ["a2"]
    changes = store.alert_changes_since(c1, 10)
    assert [r["status"] for _, r in changes] == ["open", "cleared"]
    assert store.alert_changes_since(c1, 1) == changes[:1]
    assert store.last_alert_change() == c3


def test_alert_filters_and_counts(store: Store) -> None:
    write(
        store,
        alerts=[
            alert_write(_alert("a1", kind="unpaid", bay="B1", zone="Z1"), 1),
            alert_write(_alert("a2", kind="overstay", bay="B2", zone="Z1"), 2),
            alert_write(_alert("a3", kind="gateway_offline", bay=None, zone=None), 3),  # type: ignore[arg-type]
            alert_write(_alert("a4", "acknowledged", kind="unpaid", bay="B3", zone="Z2"), 4),
        ],
    )

    def ids(rows: list[dict[str, Any]]) -> list[str]:
        return [r["alert_id"] for r in rows]

    assert ids(store.alerts(zone_id="Z1")) == ["a1", "a2"]
    assert ids(store.alerts(kind="unpaid")) == ["a1", "a4"]
    assert ids(store.alerts(bay_id="B2")) == ["a2"]
    assert ids(store.alerts(kinds=["gateway_offline", "overstay"])) == ["a2", "a3"]
    assert ids(store.alerts(status="acknowledged", zone_id="Z2", kind="unpaid")) == ["a4"]
    assert store.count_alerts("open") == 3
    assert store.count_alerts("acknowledged") == 1
    assert store.count_alerts("resolved") == 0


def test_alert_ids_in_one_instant_page_by_id(store: Store) -> None:
    write(store, alerts=[alert_write(_alert(a), 5) for a in ("c9", "a1", "b2", "0f")])
    assert [a["alert_id"] for a in store.alerts()] == ["0f", "a1", "b2", "c9"]
    assert [a["alert_id"] for a in store.alerts(after=(5, "a1"), limit=2)] == ["b2", "c9"]


def test_rights_and_suspensions(store: Store) -> None:
    right = {"right_id": "p1", "kind": "payment", "bay_id": "B1", "start": "s", "end": "e"}
    write(
        store,
        rights=[RightRow("p1", right, False)],
        suspensions=[
            SuspensionRow("s2", {"suspension_id": "s2", "bay_ids": ["B2"]}),
            SuspensionRow("s1", {"suspension_id": "s1", "bay_ids": ["B1"]}),
        ],
    )
    assert store.right("p1") == StoredRight(right, cancelled=False, owner=None)
    write(store, rights=[RightRow("p1", right, True)])
    assert store.right("p1") == StoredRight(right, cancelled=True, owner=None)
    assert store.right("p2") is None
    assert sorted(s["suspension_id"] for s in store.suspensions()) == ["s1", "s2"]
    write(store, suspensions=[SuspensionRow("s1", {"suspension_id": "s1", "bay_ids": ["B9"]})])
    assert {s["suspension_id"]: s["bay_ids"] for s in store.suspensions()} == {
        "s1": ["B9"],
        "s2": ["B2"],
    }


def test_outbox_survives_reopen(stores: Stores) -> None:
    store = stores.open()
    committed = write(store, publications=[("t/a", "{}", False), ("t/b", "{}", True)])
    one = committed.outbox[0].id
    assert [m.id for m in committed.outbox] == sorted(m.id for m in committed.outbox)
    store.close()
    store = stores.open()
    assert store.outbox() == committed.outbox
    store.commit(Work(Effects(), delivered=[one]))
    assert [(m.topic, m.retain, m.qos) for m in store.outbox()] == [("t/b", True, 1)]


def test_prune_keeps_what_the_engine_needs_and_each_bays_last_state(store: Store) -> None:
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
    keep = next(e.pos for e in store.journal() if e.body.get("n") == 3)
    removed = store.prune(before=35, keep_from_pos=keep)
    assert removed == 2  # events at 10 and 20; 30 is still needed by the engine
    assert [e.body.get("n") for e in store.journal(types=["occupancy"])] == [3, 4]
    assert store.event_digests(["e1", "e3"]) == {"e3": "d"}
    assert [e.type for e in store.journal(types=["right"])] == ["right"]
    assert store.state_changes(["B1"], 100, 200) == {"B1": [(100, "vacant")]}
    assert store.sessions("B1", None, None, 10, None) == []


def test_prune_forgets_the_changes_of_old_closed_alerts(store: Store) -> None:
    write(
        store,
        alerts=[
            alert_write(_alert("old"), 10),
            alert_write(_alert("old", "cleared"), 10),
            alert_write(_alert("open"), 11),
            alert_write(_alert("new"), 50),
            alert_write(_alert("new", "resolved"), 50),
        ],
    )
    last = store.last_alert_change()
    store.prune(before=30, keep_from_pos=0)
    assert [r["alert_id"] for _, r in store.alert_changes_since(0, 10)] == ["open", "new", "new"]
    assert store.last_alert_change() == last  # ids go on from the last, whatever was pruned
    assert store.alert("old") is not None  # the alert itself stays


def test_counters_add_up(store: Store) -> None:
    write(store, counters={"rejected.not_json": 2})
    write(store, counters={"rejected.not_json": 1, "events_in": 5})
    assert store.counters() == {"rejected.not_json": 3, "events_in": 5}
    assert store.count_events() == 0


def test_watermark_and_snapshots_per_zone(stores: Stores) -> None:
    store = stores.open()
    assert store.watermark() is None
    committed = write(store, journal=[journal_row("right", 1, {})], watermark=1234)
    store.commit(Work(Effects(), snapshots={"Z1": '{"a":1}', "Z2": '{"b":2}'}))
    assert store.watermark() == 1234
    found = stores.open().recover()
    assert found.watermark == 1234
    assert {z: (s.pos, s.text) for z, s in found.snapshots.items()} == {
        "Z1": (committed.last_pos, '{"a":1}'),
        "Z2": (committed.last_pos, '{"b":2}'),
    }
    # a zone saved no more goes; the others take the position of their commit
    later = store.commit(
        Work(Effects(journal=(journal_row("right", 2, {}),)), snapshots={"Z2": '{"b":3}'})
    )
    assert {z: (s.pos, s.text) for z, s in store.recover().snapshots.items()} == {
        "Z2": (later.last_pos, '{"b":3}')
    }


def test_recover_gives_bays_gateways_open_alerts_and_snapshots(store: Store) -> None:
    write(
        store,
        bays=[("B1", "occupied", 100, "gw-1", 100), ("B2", "vacant", 90, "gw-1", None)],
        gateways=[
            GatewayRow("gw-1", True, 500, {"v": 1}, None),
            GatewayRow("gw-1", False, 600, None, {"cpu": 1}),  # keeps the status it had
        ],
        sensors=[SensorRow("S1", "gw-1", "B1", {"battery_mv": 3000})],
        alerts=[
            alert_write(_alert("before", raised="1970-01-01T00:00:00.050Z", bay="B1"), 50),
            alert_write(_alert("during", raised="1970-01-01T00:00:00.150Z", bay="B1"), 150),
            alert_write(_alert("free", raised="1970-01-01T00:00:00.150Z", bay="B2"), 150),
            alert_write(_alert("gw", kind="gateway_offline", bay=None, zone=None), 10),  # type: ignore[arg-type]
            alert_write(
                _alert("gw2", "acknowledged", kind="low_battery", bay=None, zone=None),  # type: ignore[arg-type]
                20,
            ),
            alert_write(_alert("gw3", "cleared", kind="sensor_silent", bay=None, zone=None), 30),  # type: ignore[arg-type]
        ],
    )
    found = store.recover()
    assert found.bays == {
        "B1": ("occupied", 100, "gw-1", 100),
        "B2": ("vacant", 90, "gw-1", None),
    }
    assert found.gateways == {"gw-1": (False, 600)}
    assert [a["alert_id"] for a in found.maintenance] == ["gw", "gw2"]  # open, then acknowledged
    assert [a["alert_id"] for a in found.session_alerts] == ["during"]
    assert found.snapshots == {}
    assert found.watermark is None
    summary = {g["gateway_id"]: g for g in store.gateway_summaries()}
    if summary:  # SQLite in memory has none; a file and PostgreSQL have
        assert summary["gw-1"]["online"] is False


def test_bay_origins_are_noted_once(store: Store) -> None:
    write(store, state_changes=[("B2", 40, "occupied")])
    assert store.note_bays(["B1", "B2"], 100) == 2
    assert store.note_bays(["B1", "B2", "B3"], 200) == 1
    assert store.bay_origins() == {"B1": 100, "B2": 40, "B3": 200}
    write(store, state_changes=[("B9", 7, "vacant")])
    assert store.bay_origins(["B9", "B8"]) == {"B1": 100, "B2": 40, "B3": 200, "B9": 7}


def test_a_right_keeps_its_owner_through_replacement_and_cancellation(store: Store) -> None:
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


def test_rights_for_a_stay_come_by_bay_and_zone(store: Store) -> None:
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
    if isinstance(store, SqliteStore):
        plan = store._db.execute(
            "EXPLAIN QUERY PLAN SELECT body FROM rights WHERE json_extract(body, '$.bay_id') IN (?)"
            " AND json_extract(body, '$.end') > ? AND deleted = 0",
            ("B1", "x"),
        ).fetchall()
        assert any("rights_bay" in str(step) for step in plan), plan
    else:
        assert isinstance(store, PostgresStore)
        with store._errors("explain"):
            db = store._connection()
            db.execute("SET enable_seqscan = off")  # a handful of rows: make the plan show
            plan = db.execute(
                "EXPLAIN SELECT body FROM rights WHERE bay_id = ANY(%s::text[]) AND ends > %s"
                " AND NOT deleted",
                (["B1"], "x"),
            ).fetchall()
            db.execute("RESET enable_seqscan")
        assert any("rights_bay" in str(step) for step in plan), plan


def test_one_commit_of_every_kind_of_row_at_batch_size(store: Store) -> None:
    """A backlog batch: a thousand of each row in one unit of work, all stored, every id
    handed back (a pipelined commit must not mix up its statements' results)."""
    n = 1000
    committed = write(
        store,
        journal=[
            journal_row("occupancy", i, {"i": i}, event_id=f"e{i}", digest="d") for i in range(n)
        ],
        bays=[(f"B{i}", "occupied", i, "gw", i) for i in range(n)],
        state_changes=[(f"B{i}", i, "occupied") for i in range(n)],
        sessions=[opened(f"B{i}", i) for i in range(n)] + [counted("B1", 1), closed("B2", 2, 9)],
        alerts=[alert_write(_alert(f"a{i}", bay=f"B{i}"), i) for i in range(n)],
        notes=[AlertNote("a1", {"action": "ack"})],
        rights=[RightRow(f"r{i}", {"right_id": f"r{i}"}, False) for i in range(3)],
        suspensions=[SuspensionRow("s1", {"suspension_id": "s1", "bay_ids": []})],
        gateways=[GatewayRow("gw", True, 5, None, None)],
        sensors=[SensorRow("S1", "gw", "B1", {})],
        counters={"events_in": n},
        publications=[(f"t/{i}", "{}", True) for i in range(n)],
        watermark=n,
    )
    assert [e.pos for e in store.journal()] == list(
        range(committed.last_pos - n + 1, committed.last_pos + 1)
    )
    assert len(store.event_digests([f"e{i}" for i in range(n)])) == n
    assert len(store.bay_states([f"B{i}" for i in range(n)])) == n
    assert sorted(m.id for m in committed.outbox) == [m.id for m in committed.outbox]
    assert len({m.id for m in committed.outbox}) == n
    assert store.outbox() == committed.outbox
    assert [i for i, _ in committed.changes] == [i for i, _ in store.alert_changes_since(0, 2 * n)]
    assert store.sessions("B1", None, None, 10, None) == [(1, None, 1)]
    assert store.sessions("B2", None, None, 10, None) == [(2, 9, 0)]
    assert store.counters() == {"events_in": n}
    assert store.watermark() == n


def test_session_steps_in_any_order_as_one_by_one(store: Store) -> None:
    """Steps for a session before its opening (never from the core) count as if written one by
    one: on a session not there yet they change nothing."""
    write(store, sessions=[opened("B1", 1)])
    write(
        store,
        sessions=[
            closed("B2", 5, 6),  # not open yet: nothing
            counted("B2", 5),
            opened("B2", 5),
            counted("B1", 1),
            closed("B1", 1, 3),
            counted("B2", 5),
        ],
    )
    assert store.sessions("B1", None, None, 10, None) == [(1, 3, 1)]
    assert store.sessions("B2", None, None, 10, None) == [(5, None, 1)]


# -- a SQLite file's own faults -------------------------------------------------------------


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
        store._commits.execute("PRAGMA busy_timeout=50")
        with pytest.raises(StoreError) as failure:
            write(store, counters={"x": 1})
        assert not isinstance(failure.value, DamagedStoreError)
    finally:
        holder.execute("ROLLBACK")
        holder.close()


def test_a_commits_lines_reach_the_spool_with_it_and_only_with_it(store: Store) -> None:
    """Time-series lines are written in the transaction of the batch they come from; the writer
    thread reads them from the head on a connection of its own and removes what it sent."""
    store.commit(Work(Effects(), lines=[f"m,t=a f=1i {i}" for i in range(3)]))
    with pytest.raises(StoreError):  # the same event id twice: the whole commit fails
        store.commit(
            Work(
                Effects(journal=(journal_row("occupancy", 1, {}, event_id="e", digest="x"),) * 2),
                lines=["m,t=lost f=1i 9"],
            )
        )
    store.commit(Work(Effects(), lines=["m,t=b f=1i 7"]))
    spool = store.open_spool(max_lines=1000, block=100)
    try:
        assert spool.depth == 4
        last, lines = spool.head(3)
        assert lines == [f"m,t=a f=1i {i}" for i in range(3)]  # whole commits, oldest first
        spool.remove_through(last)
        assert spool.depth == 1
        last, lines = spool.head(100)
        assert lines == ["m,t=b f=1i 7"]
        spool.remove_through(last)
        assert spool.head(100) == (0, [])
        assert spool.depth == 0
        # a commit the spool was not yet told of is read all the same, and counted once told
        store.commit(Work(Effects(), lines=["m,t=c f=1i 8"]))
        last, lines = spool.head(100)
        assert lines == ["m,t=c f=1i 8"]
        spool.remove_through(last)
        spool.grew(1)
        assert spool.head(100) == (0, [])
        assert spool.depth == 0
    finally:
        spool.close()


def test_the_spool_drops_its_oldest_lines_beyond_its_bound(store: Store) -> None:
    for k in range(5):
        store.commit(Work(Effects(), lines=[f"m,k={k} f=1i {i}" for i in range(10)]))
    spool = store.open_spool(max_lines=25, block=100)
    try:
        assert spool.trim() == 30
        assert spool.depth == 20
        assert spool.head(100)[1][0] == "m,k=3 f=1i 0"
    finally:
        spool.close()


def test_both_adapters_have_every_method_of_the_port_with_its_parameters() -> None:
    port = {
        name: inspect.signature(member)
        for name, member in inspect.getmembers(Store, inspect.isfunction)
        if not name.startswith("_")
    }
    assert "commit" in port
    for adapter in (SqliteStore, PostgresStore):
        for name, signature in port.items():
            method = getattr(adapter, name, None)
            assert method is not None, f"{adapter.__name__} has no {name}"
            assert list(inspect.signature(method).parameters) == list(signature.parameters), (
                f"{adapter.__name__}.{name}"
            )
