"""A batch of a backlog decided while the batch before it commits (on a connection of its own,
ended in a worker thread), on both stores: acknowledged only once its commit is in, its events
de-duplicated against the commit under way, taken again with the batch decided behind it when
its commit fails, and landed before any other unit of work."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest

from kerbside.collector.config import load_config
from kerbside.collector.cycle import BatchNotStored
from kerbside.collector.errors import StoreError
from kerbside.collector.link import Message
from kerbside.collector.runtime import Collector, assemble
from kerbside.collector.store import Committed, Store, Work
from kerbside.core.site import load_site
from tests.collector.test_cycle import MIN, ROOT, T0, Clock, ReplyLost, msg
from tests.helpers import FakeLink, write_collector_setup
from tests.helpers import occupancy_event as event
from tests.pg import Stores


class Watched(ReplyLost):
    """A store, each commit noting what the broker had been acknowledged when it began; its end
    takes ``slow_s`` (a disk or a database a little slow), and it fails when told: as it begins
    (``fail_next``), or after it committed (``lose_next``: the reply lost on the way)."""

    def __init__(self, store: Store, link: FakeLink) -> None:
        super().__init__(store)
        self._link = link
        self.acked_at_begin: list[list[int]] = []
        self.slow_s = 0.05
        self.fail_next = False

    def begin(self, work: Work) -> Callable[[], Committed]:
        self.acked_at_begin.append(list(self._link.acked))
        if self.fail_next:
            self.fail_next = False
            raise StoreError("commit failed: the test's")
        finish = super().begin(work)

        def slow() -> Committed:
            time.sleep(self.slow_s)
            return finish()

        return slow


def _collector(stores: Stores, clock: Clock) -> tuple[Collector, FakeLink, Watched]:
    config = load_config(
        write_collector_setup(stores.path.parent, port=1, topic_root=ROOT, store=stores.config)
    )
    link = FakeLink()
    store = Watched(stores.open(), link)
    collector = assemble(config, load_site(config.site), store, link, clock=clock)
    return collector, link, store


def _mids(messages: list[Message]) -> list[int]:
    return [m.mid for m in messages]


def _arrivals(*bays: int, at: int = T0) -> list[Message]:
    return [msg("events", event(n, f"B{n:03d}", "occupied", at)) for n in bays]


def test_a_batch_is_decided_while_the_one_before_it_commits_and_acknowledged_after(
    stores: Stores,
) -> None:
    collector, link, store = _collector(stores, Clock(T0 + 20_000))
    assert collector.store.commits_apart
    first = _arrivals(1, 2)
    # B002's event again (its acknowledgement was lost), in the batch decided while the first
    # commits: a duplicate, though not yet in the database when it was decided
    second = [*_arrivals(2), *_arrivals(3)]

    async def backlog() -> None:
        await collector.cycle.ingest_next(first)
        assert link.acked == []  # under way: nothing acknowledged before its commit is in
        await collector.cycle.ingest_next(second)
        assert link.acked == _mids(first)
        await collector.cycle.settle()

    asyncio.run(backlog())
    assert link.acked == _mids(first + second)
    # the second commit began only once the first was in and acknowledged
    assert store.acked_at_begin == [[], _mids(first)]
    assert collector.store.count_events() == 3
    assert collector.store.counters()["duplicates"] == 1
    for bay in ("B001", "B002", "B003"):
        assert [p["state"] for p in link.topics(f"/bays/{bay}")] == ["occupied"], bay


@pytest.mark.parametrize("failure", ["fail_next", "lose_next"])
def test_a_failed_commit_is_taken_again_with_the_batch_decided_behind_it(
    stores: Stores, failure: str
) -> None:
    collector, link, store = _collector(stores, Clock(T0 + 20_000))
    first = _arrivals(1, 2)
    second = [*_arrivals(2), *_arrivals(3)]
    setattr(store, failure, True)

    async def backlog() -> None:
        await collector.cycle.ingest_next(first)  # its commit fails in the worker thread
        with pytest.raises(BatchNotStored) as failed:
            await collector.cycle.ingest_next(second)
        assert failed.value.messages == first + second  # in order, nothing acknowledged
        assert link.acked == []
        await collector.cycle.ingest_next(failed.value.messages[:2])
        await collector.cycle.ingest_next(failed.value.messages[2:])
        await collector.cycle.settle()

    asyncio.run(backlog())
    assert link.acked == _mids(first + second)
    assert collector.store.count_events() == 3
    # each bay's state published once: by the commit retried, or (a reply lost) from the store
    for bay in ("B001", "B002", "B003"):
        assert [p["state"] for p in link.topics(f"/bays/{bay}")] == ["occupied"], bay
    # and the rules have each arrival once: one unpaid alert per bay when due
    collector.cycle.tick()
    clock = collector.cycle.clock
    assert isinstance(clock, Clock)
    clock.now = T0 + MIN + 1000
    collector.cycle.tick()
    unpaid = [a["bay_id"] for a in link.topics("/alerts/Z1") if a["kind"] == "unpaid"]
    assert sorted(unpaid) == ["B001", "B002", "B003"]


def test_a_tick_lands_the_commit_under_way_before_its_own(stores: Stores) -> None:
    clock = Clock(T0 + 20_000)
    collector, link, store = _collector(stores, clock)
    first = _arrivals(1, 2)

    async def then_tick() -> None:
        await collector.cycle.ingest_next(first)
        clock.now = T0 + MIN + 1000  # the unpaid alerts of the batch under way are due
        collector.cycle.tick()

    asyncio.run(then_tick())
    assert link.acked == _mids(first)
    assert store.acked_at_begin == [[], _mids(first)]  # the tick's commit after the batch's
    unpaid = [a["bay_id"] for a in link.topics("/alerts/Z1") if a["kind"] == "unpaid"]
    assert sorted(unpaid) == ["B001", "B002"]


def test_a_batch_whose_commit_is_under_way_at_a_stop_is_stored_by_the_save(
    stores: Stores,
) -> None:
    collector, link, _ = _collector(stores, Clock(T0 + 20_000))
    first = _arrivals(1, 2)

    async def stopped() -> None:
        await collector.cycle.ingest_next(first)
        waiter = asyncio.create_task(collector.cycle.settle())
        await asyncio.sleep(0)
        waiter.cancel()  # the batcher cancelled at a stop, its commit still under way
        with pytest.raises(asyncio.CancelledError):
            await waiter

    asyncio.run(stopped())
    collector.cycle.save()
    assert link.acked == _mids(first)
    assert collector.store.count_events() == 2
