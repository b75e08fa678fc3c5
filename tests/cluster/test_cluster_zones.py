"""Several collectors on one PostgreSQL database, in the test's process: how the zones are
shared, fenced and taken over, and what a takeover decides. Each collector is real (its store,
core, beat and lease keeper); the test calls their rounds and steps one at a time, so every
interleaving is chosen, and holds their clocks."""

from __future__ import annotations

import collections
import json
import logging
from collections.abc import Collection, Iterator, Sequence
from pathlib import Path
from typing import Any

import psycopg
import pytest

from kerbside.collector.cluster import beat as beat_module
from kerbside.collector.cluster.leases import Leases, acting_for, plan
from kerbside.collector.core import AddRight
from kerbside.collector.queries import export_journal
from kerbside.collector.records import Right
from kerbside.collector.replay import replay_lines
from kerbside.collector.store import MAINTENANCE_LEASE
from kerbside.collector.store.pgcluster import Tail
from kerbside.core.instants import parse_instant
from tests.cluster.nodes import Clock, Node, make_node, msg
from tests.helpers import occupancy_event as event
from tests.helpers import wait_until

T0 = parse_instant("2026-11-26T08:00:00Z")
MIN = 60_000
ALL = ["Z1", "Z2", MAINTENANCE_LEASE]


@pytest.fixture
def nodes(tmp_path: Path, url: str) -> Iterator[list[Node]]:
    made: list[Node] = []
    yield made
    for node in made:
        node.close()


def rows(url: str, sql: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as db:
        return db.execute(sql.encode()).fetchall()


def changes(url: str) -> list[tuple[int, dict[str, Any], str, int]]:
    """Every alert change: (id, record, node, epoch), in id order."""
    return [
        (i, json.loads(r), n, e)
        for i, r, n, e in rows(url, "SELECT id, record, node, epoch FROM alert_changes ORDER BY id")
    ]


def run_out(url: str, leases: list[str]) -> None:
    """Wait for the database to see these leases run out (their lease_s is short)."""

    def gone() -> bool:
        found = rows(
            url,
            "SELECT count(*) FROM zone_leases WHERE expires > clock_timestamp()"
            f" AND zone_id IN ({', '.join(repr(x) for x in leases)})",
        )
        return int(found[0][0]) == 0

    wait_until(gone, 15, "the leases to run out")


# -- sharing ---------------------------------------------------------------------------------


def test_the_collectors_alive_share_the_zones_and_each_lease_has_one_holder() -> None:
    free = dict.fromkeys(ALL)
    alone = plan("a", ["a"], ALL, free, [])
    assert sorted(alone.take) == sorted(ALL)
    # b joins: a holds all three, its share is two: it gives one up, b takes what is free
    a_gives = plan("a", ["a", "b"], ALL, dict.fromkeys(ALL, "a"), ALL)
    assert len(a_gives.release) == 1
    holders: dict[str, str | None] = dict.fromkeys(ALL, "a")
    holders[a_gives.release[0]] = None
    b_takes = plan("b", ["a", "b"], ALL, holders, [])
    assert b_takes.take == a_gives.release
    # a collector at its share takes nothing more, unless every other one is full too
    assert plan("b", ["a", "b"], ALL, {"Z1": "a", "Z2": "b"}, ["Z2"]).take == [MAINTENANCE_LEASE]
    assert plan("b", ["a", "b", "c"], ALL, {"Z1": "a", "Z2": "b"}, ["Z2"]).take == []


def test_a_lease_is_acted_on_only_until_a_margin_before_it_can_run_out() -> None:
    clock = Clock(100.0)
    leases = Leases(5.0, clock)
    leases.took("Z1", 3, asked_at=100.0)
    assert acting_for(5.0) == 4.0
    clock.now = 103.99
    assert leases.acting("Z1")
    assert leases.run_out() == []
    clock.now = 104.0
    assert not leases.acting("Z1")
    assert leases.run_out() == ["Z1"]
    leases.renewed(["Z1"], asked_at=103.0)  # a renewal sent before that moment extends it
    assert leases.acting("Z1")


def test_joining_collectors_get_their_share_and_no_lease_has_two_holders(
    nodes: list[Node], tmp_path: Path, url: str
) -> None:
    clock = Clock(T0)
    a = make_node(tmp_path / "a", url, "a", clock)
    nodes.append(a)
    a.node.round()
    assert a.zones == ["Z1", "Z2"]
    assert a.node.beat.desk is not None
    b = make_node(tmp_path / "b", url, "b", clock)
    nodes.append(b)
    for _ in range(3):
        b.node.round()
        a.node.round()
    held = rows(url, "SELECT node_id, count(*) FROM zone_leases WHERE expires > now() GROUP BY 1")
    assert sorted(n for _, n in held) == [1, 2]
    mine = {lease for n in nodes for lease in n.node.leases.held()}
    assert mine == set(ALL)
    assert not set(a.node.leases.held()) & set(b.node.leases.held())


# -- fencing ---------------------------------------------------------------------------------


def test_an_owner_stops_acting_on_its_own_clock_before_the_database_lets_another_take_over(
    nodes: list[Node], tmp_path: Path, url: str
) -> None:
    clock = Clock(T0 + 5_000)
    a = make_node(tmp_path / "a", url, "a", clock, lease_s=30)
    nodes.append(a)
    a.node.round()
    a.cycle.ingest([msg("events", event(1, "B001", "occupied", T0))])
    a.follow()
    assert rows(url, "SELECT state FROM bays WHERE bay_id = 'B001'") == [("occupied",)]
    # a cannot renew (its database out of reach, say) and its own clock passes the margin
    a.monotonic.now += acting_for(30)
    a.cycle.ingest([msg("events", event(2, "B001", "vacant", T0 + 1000))])
    a.follow()
    assert a.zones == []  # gave them up by itself ...
    live = rows(url, "SELECT count(*) FROM zone_leases WHERE expires > now()")
    assert live == [(3,)]  # ... while the database would still not let anyone else take them
    assert rows(url, "SELECT state FROM bays WHERE bay_id = 'B001'") == [("occupied",)]
    assert rows(url, "SELECT count(*) FROM journal WHERE type = 'occupancy'") == [(2,)]


def test_a_paused_owner_whose_zone_was_taken_writes_nothing_for_it(
    nodes: list[Node], tmp_path: Path, url: str
) -> None:
    clock = Clock(T0 + 5_000)
    a = make_node(tmp_path / "a", url, "a", clock, lease_s=0.6)
    b = make_node(tmp_path / "b", url, "b", clock, lease_s=0.6)
    nodes += [a, b]
    a.node.round()
    a.cycle.ingest([msg("events", event(1, "B001", "occupied", T0))])
    a.follow()
    # a is paused: its own clock stands still (it believes it still holds its zones) while the
    # database sees its leases run out, and b takes them over and carries on
    run_out(url, ALL)
    b.node.round()
    assert b.zones == ["Z1", "Z2"]
    clock.now = T0 + MIN + 16_000
    b.cycle.tick()  # the unpaid alert of B001 is due (and alert_delay_s passed): a tick
    b.follow()
    raised = [c for c in changes(url) if c[1]["status"] == "open"]
    assert [(c[1]["kind"], c[2]) for c in raised] == [("unpaid", "b")]
    # a resumes: it follows the same journal and decides the same alert, but its commit is
    # refused by the fence, and it gives the zones up
    a.cycle.ingest([msg("events", event(2, "B005", "occupied", T0 + 2_000))])
    a.follow()
    assert a.zones == []
    assert [c[2] for c in changes(url)] == ["b"]
    assert rows(url, "SELECT count(*) FROM bays WHERE bay_id = 'B005'") == [(0,)]
    b.follow()  # b takes a's event (any collector ingests) and decides for its zone
    assert rows(url, "SELECT state FROM bays WHERE bay_id = 'B005'") == [("occupied",)]
    assert all(published["zone_id"] != "Z1" for published in a.link.topics("/alerts/"))


# -- one event, two collectors ----------------------------------------------------------------


def test_an_event_two_collectors_receive_at_once_is_stored_once(
    nodes: list[Node], tmp_path: Path, url: str, caplog: pytest.LogCaptureFixture
) -> None:
    clock = Clock(T0 + 5_000)
    a = make_node(tmp_path / "a", url, "a", clock)
    b = make_node(tmp_path / "b", url, "b", clock)
    nodes += [a, b]
    twice = event(1, "B001", "occupied", T0)
    to_b = msg("events", twice)
    looked_up = b.store.event_digests

    def race(ids: Sequence[str]) -> dict[str, str]:
        found = looked_up(ids)  # b looks first, finds nothing ...
        if not a.link.acked:  # ... then a stores the same event before b commits
            a.cycle.ingest([msg("events", twice)])
        return found

    b.store.event_digests = race  # type: ignore[method-assign,assignment]
    with caplog.at_level(logging.INFO):
        b.cycle.ingest([to_b, msg("events", event(2, "B002", "occupied", T0))])
    assert "stored by another collector: taken again" in caplog.text
    assert b.link.acked == [to_b.mid, to_b.mid + 1]  # acknowledged, once it was stored
    events = rows(url, "SELECT event_id FROM events ORDER BY event_id")
    assert events == [("gw-1:ep:1",), ("gw-1:ep:2",)]
    positions = rows(url, "SELECT pos FROM journal ORDER BY pos")
    assert positions == [(1,), (2,)]  # dense: the refused commit took no position
    assert b.store.counters()["duplicates"] == 1


def test_a_right_replaced_late_by_one_that_starts_earlier_gives_the_alerts_of_replay(
    nodes: list[Node], tmp_path: Path, url: str
) -> None:
    """b takes a provider's payment and, later, its new version that starts earlier; a, which
    runs the zones, follows both: the new version counts, as in replay of the export."""
    clock = Clock(T0 + 20_000)
    a = make_node(tmp_path / "a", url, "a", clock)
    b = make_node(tmp_path / "b", url, "b", clock)
    nodes += [a, b]
    a.node.round()
    assert a.zones == ["Z1", "Z2"]
    b.cycle.act([AddRight(Right("r1", "payment", "B001", None, T0, T0 + 20 * MIN), "prov")])
    b.cycle.ingest([msg("events", event(1, "B001", "occupied", T0))])
    a.follow()
    clock.now = T0 + 10 * MIN
    a.cycle.tick()
    later = Right("r1", "payment", "B001", None, T0 - 5 * MIN, T0 + 40 * MIN)
    b.cycle.act([AddRight(later, "prov")])
    a.follow()
    clock.now = T0 + 60 * MIN
    a.cycle.tick()
    a.follow()
    live = [json.loads(x) for (x,) in rows(url, "SELECT record FROM alerts")]
    assert sorted((r["kind"], r["raised_at"]) for r in live) == [
        ("expired", "2026-11-26T08:40:00.000Z"),
        ("overstay", "2026-11-26T08:02:00.000Z"),
    ]
    exported = [json.dumps(r) for r in export_journal(a.store)]
    replayed, errors = replay_lines(exported, a.site, clock.now - 15_000)
    assert errors == []
    fields = ("alert_id", "status", "raised_at", "cleared_at", "clear_reason")
    assert sorted(tuple(r[k] for k in fields) for r in live) == sorted(
        tuple(r[k] for k in fields) for r in replayed
    )


# -- takeover --------------------------------------------------------------------------------


def street() -> list[tuple[int, str, str]]:
    """(instant, bay, state): stays of 30 s to 4 min in both zones."""
    stays = {
        "B001": [(0, 240)],
        "B002": [(10, 40), (100, 250)],
        "B003": [(20, 95)],
        "B005": [(5, 200)],
        "B006": [(30, 60), (130, 290)],
        "B007": [(50, 170)],
        "B008": [(145, 160), (170, 185)],  # short visits while the zones have no owner
    }
    out = []
    for bay, spans in stays.items():
        for start, end in spans:
            out += [(T0 + start * 1000, bay, "occupied"), (T0 + end * 1000, bay, "vacant")]
    return sorted(out)


@pytest.mark.parametrize("page", [2000, 2])
def test_a_new_owner_carries_on_where_the_last_stopped_and_alerts_equal_replay(
    nodes: list[Node], tmp_path: Path, url: str, page: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """a runs both zones, saves its rules half-way and dies with some effects stored after the
    save; b ingests while no one owns the zones (alerts fall due meanwhile), takes them over and
    carries on: every alert raised once, at its true instant, and the alerts equal replay. With
    pages of two records, the journal is followed (and a takeover caught up) a bit at a time."""
    monkeypatch.setattr(beat_module, "TAIL_PAGE", page)
    clock = Clock(T0)
    a = make_node(tmp_path / "a", url, "a", clock, lease_s=0.6)
    b = make_node(tmp_path / "b", url, "b", clock, lease_s=0.6)
    nodes += [a, b]
    a.node.round()
    changes_ = street()
    published = 0

    def live_until(node: Node, until: int) -> None:
        """The street up to ``until`` through ``node``, confirmed 10 s after each change."""
        nonlocal published
        while published < len(changes_) and changes_[published][0] + 10_000 <= until:
            at, bay, state = changes_[published]
            clock.now = at + 10_000
            node.cycle.tick()
            node.cycle.ingest([msg("events", event(published + 1, bay, state, at))])
            node.follow()
            published += 1
        clock.now = until
        node.cycle.tick()
        node.follow()

    live_until(a, T0 + 90_000)
    a.node.beat.save()
    live_until(a, T0 + 140_000)  # effects stored after the save: b must not repeat them
    raised_by_a = {c[1]["alert_id"] for c in changes(url) if c[1]["status"] == "open"}
    assert raised_by_a
    # a dies; until its leases run out its zones have no owner, and b ingests meanwhile
    run_out(url, ALL)
    for n, (at, bay, state) in enumerate(changes_[published:], published + 1):
        if at + 10_000 > T0 + 200_000:
            break
        clock.now = at + 10_000
        b.cycle.ingest([msg("events", event(n, bay, state, at))])
        published = n
    assert b.zones == []
    b.follow()  # running, b has read the journal through (it runs no zone of it yet)
    clock.now = T0 + 230_000
    b.node.round()  # takes over: alerts due while the zones had no owner are raised now
    assert b.zones == ["Z1", "Z2"]
    live_until(b, T0 + 400_000)

    history = changes(url)
    raises = collections.Counter(c[1]["alert_id"] for c in history if c[1]["status"] == "open")
    assert raises
    assert max(raises.values()) == 1  # each alert raised once
    by_a = {c[1]["alert_id"] for c in history if c[2] == "a"}
    assert raised_by_a <= by_a
    late = [c[1] for c in history if c[2] == "b" and c[1]["status"] == "open"]
    assert any(parse_instant(r["raised_at"]) < T0 + 200_000 for r in late)  # due in the gap
    # no zone had two acting owners: per zone, epochs never go back, one collector per epoch
    for zone in ("Z1", "Z2"):
        epochs = [(e, n) for _, r, n, e in history if r["zone_id"] == zone]
        assert [e for e, _ in epochs] == sorted(e for e, _ in epochs)
        assert len(dict(epochs)) == len(set(epochs))
    live = {
        r["alert_id"]: r
        for (r,) in ((json.loads(x),) for (x,) in rows(url, "SELECT record FROM alerts"))
    }
    exported = [json.dumps(r) for r in export_journal(b.store)]
    assert len(exported) == len(changes_)
    replayed, errors = replay_lines(exported, b.site, T0 + 400_000 - 1000)
    assert errors == []

    def key(a: dict[str, Any]) -> tuple[Any, ...]:
        fields = ("alert_id", "status", "raised_at", "cleared_at", "clear_reason")
        return tuple(a[k] for k in fields)

    assert sorted(map(key, live.values())) == sorted(map(key, replayed))


def test_an_owner_passes_over_the_journal_of_zones_it_does_not_run(
    nodes: list[Node], tmp_path: Path, url: str
) -> None:
    """Each owner reads its own share of the journal (through journal_zone, a window at a time),
    not all of it: 25,000 records of another collector's zone are passed over, and the next one
    of its own is followed."""
    clock = Clock(T0 + 5_000)
    a = make_node(tmp_path / "a", url, "a", clock)
    nodes.append(a)
    a.node.round()
    others = 25_000  # more than a window
    with psycopg.connect(url, autocommit=True) as db, db.transaction():
        db.execute(
            "INSERT INTO journal (pos, type, time, watermark, body, zone_id)"
            " SELECT p, 'occupancy', %s, 0, '{}', 'Z9' FROM generate_series(1, %s) AS p",
            (T0, others),
        )
        db.execute("UPDATE commit_head SET pos = %s", (others,))
    a.cycle.ingest([msg("events", event(1, "B001", "occupied", T0))])
    reads: list[int] = []
    tail = a.store.cluster.tail

    def counted(after: int, zones: Collection[str], limit: int) -> Tail:
        found = tail(after, zones, limit)
        reads.append(len(found.records))
        return found

    a.store.cluster.tail = counted  # type: ignore[method-assign]
    a.follow()
    assert a.node.beat.pos == others + 1
    assert rows(url, "SELECT state FROM bays WHERE bay_id = 'B001'") == [("occupied",)]
    assert sum(reads) == 1  # none of the other zone's records was read
