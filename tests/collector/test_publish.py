"""The collector's publications: a bounded window at the link, alert changes first."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kerbside.collector.publish import WINDOW, Publisher
from kerbside.collector.store import Store
from tests.collector.test_service import FakeLink


def _alert(n: int) -> dict[str, Any]:
    return {"v": 1, "alert_id": f"A{n}", "kind": "unpaid", "zone_id": "Z1", "status": "open"}


def _commit(store: Store, publisher: Publisher) -> None:
    with store.transaction():
        publisher.stage()
    publisher.send()


def test_an_alert_overtakes_a_backlog_of_bay_states(tmp_path: Path) -> None:
    store = Store(tmp_path / "c.db")
    publisher = Publisher(store, "r")
    link = FakeLink()
    publisher.link = link
    bays = WINDOW * 3
    for n in range(bays):
        publisher.bay(f"B{n:04d}", {"v": 1, "bay_id": f"B{n:04d}", "state": "occupied"})
    _commit(store, publisher)
    assert len(link.published) == WINDOW  # the rest wait in the outbox, not at the link
    publisher.alert(_alert(1))
    _commit(store, publisher)
    assert len(link.published) == WINDOW  # the window is full: nothing more yet

    publisher.published(1)  # the broker has the first bay state: the alert goes next
    assert link.published[WINDOW][0] == "r/alerts/Z1"

    mid = 2
    while mid <= len(link.published):
        publisher.published(mid)
        mid += 1
    topics = [topic for topic, _, _, _ in link.published]
    assert len(topics) == bays + 1
    assert sorted(t for t in topics if "/bays/" in t) == [f"r/bays/B{n:04d}" for n in range(bays)]
    assert publisher.pending == 0
    _commit(store, publisher)  # the acknowledged ones leave the outbox with the next commit
    assert store.outbox() == []


def test_after_a_reconnection_the_unacknowledged_go_again_in_their_order(tmp_path: Path) -> None:
    store = Store(tmp_path / "c.db")
    publisher = Publisher(store, "r")
    link = FakeLink()
    publisher.link = link
    for n in range(5):
        publisher.alert(_alert(n))
    _commit(store, publisher)
    publisher.published(2)
    publisher.published(4)
    link.published.clear()
    publisher.reconnected()
    assert [a["alert_id"] for a in link.topics("/alerts/Z1")] == ["A0", "A2", "A4"]

    # a restart before the next commit: the outbox still holds all five (a consumer may see an
    # alert change twice, never none)
    again = Publisher(store, "r")
    relink = FakeLink()
    again.link = relink
    again.send()
    assert [a["alert_id"] for a in relink.topics("/alerts/Z1")] == ["A0", "A1", "A2", "A3", "A4"]
