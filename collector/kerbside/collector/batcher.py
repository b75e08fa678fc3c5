"""The batcher: what the broker link hands over, gathered into batches for the unit of work.

After a (re)connection the broker first hands over what it queued for us; the rules' clock holds
(``Flow.BACKLOG``) until that backlog is in. Under a steady stream a batch gathers for a moment
rather than commit (and fsync) every few messages. A batch whose commit fails is tried again,
before anything after it, until the store takes it: nothing is acknowledged meanwhile, and the
core is as the store is (``cycle.py``). With a store that commits apart (SQLite on a file,
PostgreSQL), a batch of a backlog is decided while the one before it commits; when no batch
follows at once, the batcher waits for the commit under way (the loop serving the API and
taking messages meanwhile), so that a batch is acknowledged, and its alerts sent, as soon as it
is stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from kerbside.collector.core import Flow
from kerbside.collector.cycle import BatchNotStored, Cycle
from kerbside.collector.link import Message
from kerbside.collector.outbox import Outbox
from kerbside.core.backoff import Backoff
from kerbside.core.instants import Instant

log = logging.getLogger(__name__)

# After (re)connecting, the broker first hands over what it queued for us; the rules' clock
# waits until that backlog is in (no message for QUIET_S) or for at most HOLD_MAX_S, longer
# while the broker still hands over big batches (we are behind it: the backlog is not in), up
# to HOLD_BEHIND_MAX_S. A batch is big from BEHIND_SHARE of the most a batch may take: a backlog
# comes as fast as our receive window lets it, and a batch finds what came while the one before
# it was decided, often a little less than the most (when only full ones counted, one in ~20 of
# a backlog's batches let the clock go with the backlog still coming); a live stream's batches
# gather for BATCH_GATHER_S (20 messages at 400 a second, against a most of 2,000).
QUIET_S = 0.3
HOLD_MAX_S = 10.0
HOLD_BEHIND_MAX_S = 120.0
BEHIND_SHARE = 0.5
# The least time from the start of one batch to the start of the next when the batch was not
# full: a commit costs an fsync and a few ms of bookkeeping whatever its size.
BATCH_GATHER_S = 0.05
# A batch whose commit failed (disk full) is tried again after core's Backoff: 0.5 s doubling
# to 5 s (jittered: collectors sharing a database do not all retry in the same instant).
RETRY_S = (0.5, 5.0)


class Hold:
    """When the rules' clock may move again after a (re)connection."""

    def __init__(self, cycle: Cycle) -> None:
        self.cycle = cycle
        self.since = time.monotonic()  # the (re)connection the hold started at
        self.connected = False
        cycle.hold()

    @property
    def holding(self) -> bool:
        return self.cycle.flow is Flow.BACKLOG

    def connection(self, up: bool) -> None:
        self.connected = up
        self.cycle.hold()
        self.since = time.monotonic()

    def held_for(self) -> float:
        """Seconds since the hold started."""
        return time.monotonic() - self.since

    def quiet(self) -> bool:
        """No message for QUIET_S: release the clock if the backlog is in (or we waited long
        enough for a broker that is away); returns True when it released."""
        if self.holding and (self.connected or self.held_for() > HOLD_MAX_S):
            self.cycle.release()
            return True
        return False

    def batch(self, big: bool) -> None:
        """A batch is about to be processed: past HOLD_MAX_S, release the clock unless the batch
        is big (the broker still has more of its backlog for us), up to HOLD_BEHIND_MAX_S."""
        if self.holding and self.connected:
            held = self.held_for()
            if held > HOLD_MAX_S and (not big or held > HOLD_BEHIND_MAX_S):
                self.cycle.release()


class Switchboard:
    """What the link reports, routed: messages to the batcher, broker acks to the outbox,
    connection changes to the hold and the outbox."""

    def __init__(
        self, queue: asyncio.Queue[list[Message] | None], hold: Hold, outbox: Outbox
    ) -> None:
        self._queue = queue
        self._hold = hold
        self._outbox = outbox

    def messages(self, batch: list[Message]) -> None:
        self._queue.put_nowait(batch)

    def published(self, token: int) -> None:
        self._outbox.published(token)

    def connection(self, up: bool) -> None:
        self._hold.connection(up)
        if up:
            self._outbox.reconnected()


class LoopAlarm:
    """The rules' next deadline as a timer on the loop (on a test clock, scaled)."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        clock: Callable[[], Instant],
        speed: float,
        wake: Callable[[], None],
    ) -> None:
        self._loop = loop
        self._clock = clock
        self._speed = speed
        self._wake = wake
        self._timer: asyncio.TimerHandle | None = None

    def arm(self, due: Instant | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if due is not None:
            delay = max(0.0, (due - self._clock()) / 1000 / self._speed)
            self._timer = self._loop.call_later(delay, self._wake)


async def gather_batches(
    queue: asyncio.Queue[list[Message] | None],
    cycle: Cycle,
    most: int,
    hold: Hold,
    due: asyncio.Event,
    *,
    retry: Backoff | None = None,
) -> None:
    """Take what has arrived (up to ``most`` messages) and process it as one unit of work.

    The queue holds the messages as they came from the link, a burst at a time (None only wakes
    the batcher for the alarm, which also sets ``due``). A batch whose commit fails is tried
    again, with the batches after it, until the store takes it."""
    carry: list[Message] = []
    retry = retry or Backoff(*RETRY_S)
    while True:
        if not carry:
            if hold.holding:
                try:
                    item = await asyncio.wait_for(queue.get(), QUIET_S)
                except TimeoutError:
                    if hold.quiet():
                        try:
                            cycle.tick()
                        except Exception:
                            log.exception("tick not committed")  # the alarm tries again
                    continue
            else:
                item = await queue.get()
            if item:
                carry = item
        while len(carry) < most:
            try:
                item = queue.get_nowait()
            except asyncio.QueueEmpty:
                break
            if item:
                carry += item
        hold.batch(len(carry) >= most * BEHIND_SHARE)
        batch, carry = carry[:most], carry[most:]
        began = time.monotonic()
        try:
            if batch:
                await cycle.ingest_next(batch)
            else:
                await cycle.settle()
                cycle.tick()
            if not carry and (queue.empty() or time.monotonic() < began + BATCH_GATHER_S):
                # no batch to decide at once (none waiting, or the next one gathers first):
                # acknowledge this one and send its alerts now
                await cycle.settle()
        except BatchNotStored as exc:
            # Nothing of them was acknowledged and the core is as the store is: take them again
            # (the broker sends nothing new once our receive window is full of them).
            wait = retry.next()
            log.error(  # noqa: TRY400 - the cause is logged with it
                "batch of %d messages not committed; again in %.1f s",
                len(exc.messages),
                wait,
                exc_info=exc.__cause__ or exc,
            )
            carry = exc.messages + carry
            await asyncio.sleep(wait)
            continue
        except Exception:
            wait = retry.next()
            log.exception("tick not committed; again in %.1f s", wait)
            await asyncio.sleep(wait)
            continue
        retry.reset()
        remaining = began + BATCH_GATHER_S - time.monotonic()
        if carry or remaining <= 0 or due.is_set():
            await asyncio.sleep(0)
        else:
            # Under a steady stream, let a batch gather for BATCH_GATHER_S rather than commit
            # (and fsync) every few messages; a message after a quiet spell goes at once, and
            # an alert falling due ends the wait.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(due.wait(), remaining)
        due.clear()
