"""The collector's publications: a bounded window at the link, alert changes first."""

from __future__ import annotations

import json

from kerbside.collector.effects import Effects, Publication
from kerbside.collector.outbox import WINDOW, Outbox
from kerbside.collector.store import Store, Work
from kerbside.collector.telemetry import Latencies
from tests.helpers import FakeLink
from tests.pg import Stores


def _alert(n: int) -> Publication:
    record = {"v": 1, "alert_id": f"A{n}", "kind": "unpaid", "zone_id": "Z1", "status": "open"}
    return ("r/alerts/Z1", json.dumps(record), False)


def _bay(n: int) -> Publication:
    return (f"r/bays/B{n:04d}", json.dumps({"v": 1, "bay_id": f"B{n:04d}"}), True)


def _commit(store: Store, outbox: Outbox, *publications: Publication) -> None:
    """One unit of work: its publications committed, then handed to the outbox."""
    delivered = outbox.take_delivered()
    committed = store.commit(Work(Effects(publications=publications), delivered=delivered))
    outbox.committed(committed.outbox, ())


def test_an_alert_overtakes_a_backlog_of_bay_states(store: Store) -> None:
    link = FakeLink()
    outbox = Outbox(store.outbox(), link)
    bays = WINDOW * 3
    _commit(store, outbox, *(_bay(n) for n in range(bays)))
    assert len(link.published) == WINDOW  # the rest wait in the outbox, not at the link
    _commit(store, outbox, _alert(1))
    assert len(link.published) == WINDOW  # the window is full: nothing more yet

    outbox.published(1)  # the broker has the first bay state: the alert goes next
    assert link.published[WINDOW][0] == "r/alerts/Z1"

    mid = 2
    while mid <= len(link.published):
        outbox.published(mid)
        mid += 1
    topics = [topic for topic, _, _, _ in link.published]
    assert len(topics) == bays + 1
    assert sorted(t for t in topics if "/bays/" in t) == [f"r/bays/B{n:04d}" for n in range(bays)]
    assert outbox.pending == 0
    _commit(store, outbox)  # the acknowledged ones leave the outbox with the next commit
    assert store.outbox() == []


def test_after_a_reconnection_the_unacknowledged_go_again_in_their_order(stores: Stores) -> None:
    store = stores.open()
    link = FakeLink()
    outbox = Outbox(store.outbox(), link)
    _commit(store, outbox, *(_alert(n) for n in range(5)))
    outbox.published(2)
    outbox.published(4)
    link.published.clear()
    outbox.reconnected()
    assert [a["alert_id"] for a in link.topics("/alerts/Z1")] == ["A0", "A2", "A4"]

    # a restart before the next commit: the outbox still holds all five (a consumer may see an
    # alert change twice, never none)
    relink = FakeLink()
    again = Outbox(stores.open().outbox(), relink)
    again.send()
    assert [a["alert_id"] for a in relink.topics("/alerts/Z1")] == ["A0", "A1", "A2", "A3", "A4"]


def test_the_brokers_acknowledgement_of_an_alert_change_is_timed_from_its_commit(
    store: Store,
) -> None:
    link = FakeLink()
    now = [100.0]
    latency = Latencies()
    outbox = Outbox(store.outbox(), link, latency=latency, clock=lambda: now[0])
    _commit(store, outbox, _alert(1), _bay(1))
    now[0] = 100.25
    outbox.published(2)  # the bay state: not an alert change, not timed
    assert latency.counts().count == 0
    outbox.published(1)
    counts = latency.counts()
    assert (counts.count, counts.sum) == (1, 0.25)
    assert counts.cumulative[counts.bounds.index(0.25)] == 1
    assert counts.cumulative[counts.bounds.index(0.1)] == 0
    outbox.published(1)  # a repeated acknowledgement counts once
    assert latency.counts().count == 1
