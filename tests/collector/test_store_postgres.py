"""What only the PostgreSQL store has to show: several writers at once (positions and change ids
dense and in commit order, no deadlock between them), alert changes NOTIFYed on commit, and the
schema's version (made and upgraded by ``migrate`` only, idempotently; an empty or newer schema
refused with both versions named)."""

from __future__ import annotations

import random
import threading
from collections.abc import Iterator

import psycopg
import pytest

from kerbside.collector.effects import Effects
from kerbside.collector.errors import StoreError
from kerbside.collector.store import Work, pgschema
from kerbside.collector.store.pgschema import VERSION
from kerbside.collector.store.postgres import ALERT_CHANGES_CHANNEL, PostgresStore, migrate
from tests.collector.store_rows import alert_write, journal_row, write
from tests.pg import create_database, database_name, drop_database, empty


@pytest.fixture
def url(pg_database: str) -> str:
    empty(pg_database)
    return pg_database


@pytest.fixture
def blank() -> Iterator[str]:
    """A database without any schema."""
    name = database_name(__name__) + "_blank"
    yield create_database(name)
    drop_database(name)


def _writer(url: str, node: str, commits: int, failures: list[BaseException]) -> None:
    """Commits of a few journal rows, an alert change and the same bays and counters as the
    other writers, in an order of its own."""
    store = PostgresStore(url, node=node)
    rng = random.Random(node)
    try:
        for n in range(commits):
            bays = [(f"B{b}", "occupied", n, node, n) for b in range(20)]
            rng.shuffle(bays)
            record = {"alert_id": f"{node}-{n}", "kind": "unpaid", "status": "open"}
            write(
                store,
                journal=[journal_row("right", n, {"node": node, "n": n, "k": k}) for k in range(3)],
                bays=bays,
                alerts=[alert_write(record, n)],
                counters={"events_in": 1, f"by.{node}": 1},
            )
    except BaseException as exc:
        failures.append(exc)
    finally:
        store.close()


def test_readers_see_positions_and_change_ids_without_gaps_while_writers_race(url: str) -> None:
    """A sequence hands out ids in the order transactions ask; commits finish in another order,
    and a reader of ``pos > last`` would pass a row still to commit. The head row orders them:
    whatever a reader sees is every id up to the last it sees."""
    writers, commits = 3, 40
    failures: list[BaseException] = []
    threads = [
        threading.Thread(target=_writer, args=(url, f"node-{w}", commits, failures))
        for w in range(writers)
    ]
    reader = PostgresStore(url)
    for thread in threads:
        thread.start()
    seen_pos, seen_change, reads = 0, 0, 0
    while any(t.is_alive() for t in threads) or seen_pos < writers * commits * 3:
        got = [entry.pos for entry in reader.journal(after_pos=seen_pos)]
        assert got == list(range(seen_pos + 1, seen_pos + 1 + len(got))), "a gap was read"
        seen_pos = got[-1] if got else seen_pos
        changes = [i for i, _ in reader.alert_changes_since(seen_change, 1000)]
        assert changes == list(range(seen_change + 1, seen_change + 1 + len(changes)))
        seen_change = changes[-1] if changes else seen_change
        reads += 1
        assert not failures, failures
    for thread in threads:
        thread.join()
    assert not failures, failures  # no deadlock, no duplicate id
    assert reads > 1
    assert seen_pos == writers * commits * 3
    assert seen_change == reader.last_alert_change() == writers * commits
    # each commit's rows are together, in the order it wrote them
    bodies = [e.body for e in reader.journal()]
    for i in range(0, len(bodies), 3):
        assert [b["k"] for b in bodies[i : i + 3]] == [0, 1, 2]
        assert len({(b["node"], b["n"]) for b in bodies[i : i + 3]}) == 1
    counters = reader.counters()  # each collector counts apart; read, they add up
    assert counters["events_in"] == writers * commits
    assert all(counters[f"by.node-{w}"] == commits for w in range(writers))
    reader.close()


def test_alert_changes_are_notified_on_commit_only(url: str) -> None:
    store = PostgresStore(url)
    with psycopg.connect(url, autocommit=True) as listener:
        listener.execute(f"LISTEN {ALERT_CHANGES_CHANNEL}".encode())
        with pytest.raises(StoreError):  # rolled back: nothing is notified
            write(
                store,
                alerts=[alert_write({"alert_id": "x", "kind": "unpaid", "status": "open"}, 1)],
                journal=[journal_row("occupancy", 1, {}, event_id="e", digest="d")] * 2,
            )
        committed = write(
            store,
            alerts=[
                alert_write({"alert_id": "a", "kind": "unpaid", "status": "open"}, 1),
                alert_write({"alert_id": "b", "kind": "unpaid", "status": "open"}, 1),
            ],
        )
        heard = [n.payload for n in listener.notifies(timeout=5, stop_after=1)]
    assert heard == [str(committed.changes[-1][0])]
    store.close()


def test_an_outbox_is_each_collectors_own(url: str) -> None:
    a, b = PostgresStore(url, node="a"), PostgresStore(url, node="b")
    sent = write(a, publications=[("t/1", "{}", False)]).outbox
    write(b, publications=[("t/2", "{}", False)])
    assert [m.topic for m in a.outbox()] == ["t/1"]
    assert [m.topic for m in b.outbox()] == ["t/2"]
    b.commit(Work(Effects(), delivered=[sent[0].id]))  # not b's to remove
    assert a.outbox() == sent
    a.close()
    b.close()


def test_migrate_creates_the_schema_once(blank: str) -> None:
    with pytest.raises(StoreError, match=r"no Kerbside schema.*kerbside-collector migrate"):
        PostgresStore(blank)
    assert migrate(blank) == 0
    assert migrate(blank) == VERSION  # again: nothing to do
    store = PostgresStore(blank)
    assert write(store, journal=[journal_row("right", 1, {})]).last_pos == 1
    store.close()
    assert migrate(blank) == VERSION
    again = PostgresStore(blank)
    assert [e.pos for e in again.journal()] == [1]
    again.close()


def test_a_newer_schema_is_refused_with_both_versions(blank: str) -> None:
    migrate(blank)
    with psycopg.connect(blank, autocommit=True) as db:
        db.execute("UPDATE schema_version SET version = %s", (VERSION + 1,))
    newer = f"version {VERSION + 1} is newer than this collector's \\({VERSION}\\)"
    with pytest.raises(StoreError, match=newer):
        migrate(blank)
    with pytest.raises(StoreError, match=newer):
        PostgresStore(blank)


def test_an_older_schema_is_refused_until_migrate_upgrades_it(blank: str) -> None:
    with psycopg.connect(blank, autocommit=True) as db, db.transaction(), db.cursor() as cur:
        cur.execute("CREATE TABLE schema_version (version integer NOT NULL)")
        pgschema.MIGRATIONS[0](cur)  # a database made by the first release
        cur.execute("INSERT INTO schema_version VALUES (1)")
    with pytest.raises(
        StoreError, match=f"schema version 1, this collector needs version {VERSION}"
    ):
        PostgresStore(blank)
    assert migrate(blank) == 1
    assert migrate(blank) == VERSION
    store = PostgresStore(blank)
    assert write(store, journal=[journal_row("right", 1, {})]).last_pos == 1
    store.close()


def test_statements_are_planned_for_their_values(url: str) -> None:
    """psycopg prepares a statement run often; a generic plan made while a table was empty (a
    scan of every event id) would stay as the table grows. The store's connections re-plan."""
    store = PostgresStore(url)
    for _ in range(8):  # past psycopg's prepare threshold
        store.event_digests(["e1", "e2"])
    with store._errors("show"):
        shown = store._connection().execute("SHOW plan_cache_mode").fetchone()
    assert shown == ("force_custom_plan",)
    store.close()
