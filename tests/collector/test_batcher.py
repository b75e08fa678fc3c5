"""The batcher's hold: the rules' clock stands still while the broker hands over its backlog; and
a batch whose commit failed is taken again, with those decided behind it, before the rest."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from kerbside.collector import batcher
from kerbside.collector.batcher import Hold, gather_batches
from kerbside.collector.core import Flow
from kerbside.collector.cycle import BatchNotStored
from kerbside.collector.link import Message


class FakeCycle:
    """Records each batch's size and the flow it was taken in."""

    def __init__(self) -> None:
        self.flow = Flow.LIVE
        self.batches: list[tuple[int, Flow]] = []
        self.want = 0
        self.done = asyncio.Event()

    def hold(self) -> None:
        self.flow = Flow.BACKLOG

    def release(self) -> None:
        self.flow = Flow.LIVE

    def ingest(self, messages: list[Message]) -> None:
        self.batches.append((len(messages), self.flow))
        if sum(n for n, _ in self.batches) >= self.want:
            self.done.set()

    async def ingest_next(self, messages: list[Message]) -> None:
        self.ingest(messages)

    async def settle(self) -> None:
        pass

    def tick(self) -> None:
        pass


def _messages(n: int) -> list[Message]:
    return [Message("r/gw/g/events", b"{}", 1, i + 1, 1, 0) for i in range(n)]


def _run(cycle: FakeCycle, hold: Hold, bursts: list[int], most: int, *, feed: bool = False) -> None:
    """The batcher over ``bursts``: all queued at once, or (``feed``) one queued as each batch is
    taken, as a broker hands over a backlog as our window lets it."""

    async def main() -> None:
        queue: asyncio.Queue[list[Message] | None] = asyncio.Queue()
        waiting = list(bursts)
        if feed:
            taken = cycle.ingest

            def ingest(messages: list[Message]) -> None:
                taken(messages)
                if waiting:
                    queue.put_nowait(_messages(waiting.pop(0)))

            cycle.ingest = ingest  # type: ignore[method-assign]
            queue.put_nowait(_messages(waiting.pop(0)))
        else:
            for n in waiting:
                queue.put_nowait(_messages(n))
        cycle.want = sum(bursts)
        cycle.done = asyncio.Event()
        task = asyncio.create_task(
            gather_batches(queue, cycle, most, hold, asyncio.Event())  # type: ignore[arg-type]
        )
        await asyncio.wait_for(cycle.done.wait(), 10)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    asyncio.run(main())


def test_a_backlog_in_full_batches_holds_the_clock_past_the_first_seconds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(batcher, "HOLD_MAX_S", 0.0)  # the first seconds are over at once
    cycle = FakeCycle()
    hold = Hold(cycle)  # type: ignore[arg-type]
    hold.connection(True)
    _run(cycle, hold, [100, 100, 100, 30, 10], most=100)
    # full batches: still the backlog; the first under half the most is live (it is in)
    assert cycle.batches == [
        (100, Flow.BACKLOG),
        (100, Flow.BACKLOG),
        (100, Flow.BACKLOG),
        (40, Flow.LIVE),
    ]


def test_a_backlog_in_batches_a_little_under_the_most_holds_the_clock(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A batch finds what came while the one before it was decided, often a little less than
    the most: that is the backlog still coming, not its end."""
    monkeypatch.setattr(batcher, "HOLD_MAX_S", 0.0)
    cycle = FakeCycle()
    hold = Hold(cycle)  # type: ignore[arg-type]
    hold.connection(True)
    _run(cycle, hold, [100, 81, 100, 64, 100, 12], most=100, feed=True)
    assert cycle.batches == [
        (100, Flow.BACKLOG),
        (81, Flow.BACKLOG),
        (100, Flow.BACKLOG),
        (64, Flow.BACKLOG),
        (100, Flow.BACKLOG),
        (12, Flow.LIVE),
    ]


def test_full_batches_hold_the_clock_no_longer_than_the_last_call(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(batcher, "HOLD_MAX_S", 0.0)
    monkeypatch.setattr(batcher, "HOLD_BEHIND_MAX_S", 0.0)  # a stream we never catch up with
    cycle = FakeCycle()
    hold = Hold(cycle)  # type: ignore[arg-type]
    hold.connection(True)
    _run(cycle, hold, [100, 100], most=100)
    assert cycle.batches == [(100, Flow.LIVE), (100, Flow.LIVE)]


def test_within_the_first_seconds_a_batch_that_is_not_full_keeps_the_hold() -> None:
    cycle = FakeCycle()
    hold = Hold(cycle)  # type: ignore[arg-type]
    hold.connection(True)
    _run(cycle, hold, [30], most=100)
    assert cycle.batches == [(30, Flow.BACKLOG)]


class FailsOnce(FakeCycle):
    """Its second batch's call reports that commit, and the first's before it, not stored (the
    first's commit was under way when the second was decided)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[list[int]] = []
        self.earlier: list[Message] = []
        self.settled = 0

    async def ingest_next(self, messages: list[Message]) -> None:
        self.calls.append([m.mid for m in messages])
        if len(self.calls) == 2:
            raise BatchNotStored(self.earlier + messages)
        self.earlier = messages
        self.ingest(messages)

    async def settle(self) -> None:
        self.settled += 1


def test_messages_not_stored_are_taken_again_before_the_rest(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(batcher, "RETRY_S", (0.01, 0.01))
    cycle = FailsOnce()
    hold = Hold(cycle)  # type: ignore[arg-type]
    hold.connection(True)
    cycle.release()

    async def main() -> None:
        queue: asyncio.Queue[list[Message] | None] = asyncio.Queue()
        for first in (1, 3, 5):
            queue.put_nowait(
                [Message("r/gw/g/events", b"{}", 1, m, 1, 0) for m in (first, first + 1)]
            )
        cycle.want = 8  # 1-2 stored, 1-4 not, then 1-2, 3-4 and 5-6
        task = asyncio.create_task(
            gather_batches(queue, cycle, 2, hold, asyncio.Event())  # type: ignore[arg-type]
        )
        await asyncio.wait_for(cycle.done.wait(), 10)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert cycle.calls == [[1, 2], [3, 4], [1, 2], [3, 4], [5, 6]]
    assert cycle.settled >= 1  # once nothing followed, the commit under way was waited for
