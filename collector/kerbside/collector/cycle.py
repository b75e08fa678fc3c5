"""The unit of work: the thin shell that runs the core and does its I/O, in this order.

1. read the clock (and, for a batch, the digests of its event ids) and ask the core;
2. write the effects, the rules' snapshots when due and the outbox rows the broker has, in one
   transaction (``Store.commit``);
   The time-series lines of the step's points go into the spool in that same transaction, so
   whatever stops the collector, an acknowledged batch has its points on the way to InfluxDB;
3. only then acknowledge the batch to the broker, publish, feed the alert stream, tell the
   time-series writer and set the alarm for the next deadline.

With a store that commits on a connection of its own (both do, SQLite in memory excepted), a
batch of a backlog is decided while the batch before it commits: the store begins the commit on
the loop (``Store.begin``) and a worker thread ends it (it waits on the database; SQLite writes
many of the rows there, then its write-ahead log to disk), and the event loop works meanwhile.
Nothing else changes: a batch's commit begins only once the one before it is in (and
acknowledged), the event ids of the commit under way count as stored for the de-duplication of
the next batch, and no other unit of work (a tick, a command) runs between a batch's decision
and its commit's beginning. A batch whose commit fails is tried again with every batch after
it, from a core rebuilt from the store.

If the commit fails, nothing of step 3 happens, the batch stays unacknowledged and the core is
rebuilt from the store before the next unit of work (its memory had moved ahead of what was
stored), so a failed commit leaves the collector exactly as the store is. The caller retries.
A commit that failed on the way back (a database that committed, then lost the connection before
its reply) is found that way too: the rebuilt core is the store's, and the publications and
alert changes that commit made are taken from the store's outbox and alert changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol

from kerbside.collector.core import CollectorCore, Command, Flow, read_batch
from kerbside.collector.effects import Effects, Point
from kerbside.collector.feed import AlertFeed
from kerbside.collector.link import Message, Transport
from kerbside.collector.outbox import Outbox
from kerbside.collector.store import Committed, Store, Work, dumps
from kerbside.collector.telemetry import Telemetry
from kerbside.core.instants import Instant
from kerbside.core.site import Site

log = logging.getLogger(__name__)

# The rules are saved at most this often (wall seconds), and never more often than 50 times
# what the last save took: a save costs in proportion to the open sessions, and only bounds how
# much journal a restart re-executes.
SNAPSHOT_EVERY_S = 5.0
SNAPSHOT_COST_FACTOR = 50


class Sink(Protocol):
    """The time-series sink (``timeseries.TimeSeriesRecorder``): nothing here waits for I/O."""

    def lines(self, points: Sequence[Point]) -> list[str]:
        """The points as line protocol, for the store to spool with their commit."""

    def committed(self, points: Sequence[Point], spooled: int) -> None:
        """Their commit is on disk (with ``spooled`` lines): send them."""

    def bays_seen(self, states: Mapping[str, tuple[str, Instant]]) -> None:
        """Bays' current (state, since) from the store: a zone this collector now runs, among
        several, whose changes it did not see while another ran it."""

    def stats(self) -> Mapping[str, int | bool | str | None]: ...

    def healthy(self) -> bool: ...


def spool_lines(sink: Sink | None, effects: Effects) -> list[str]:
    """The line protocol of ``effects``' points, for the store to spool with their commit: none
    without a sink, none (said in the log) when they cannot be made."""
    if sink is None or not effects.points:
        return []
    try:
        return sink.lines(effects.points)
    except Exception:
        log.exception("time series: points of this step not written")
        return []


def points_committed(
    sink: Sink | None, telemetry: Telemetry, effects: Effects, spooled: int
) -> None:
    """After a commit: the sink told that its points are on disk, its counters counted."""
    if sink is not None and effects.points:
        try:
            sink.committed(effects.points, spooled)
        except Exception:
            log.exception("time series sink failed")
    if effects.counters:
        telemetry.committed(effects.counters)


class BatchNotStored(Exception):  # noqa: N818 (a verdict on a batch, like StoreRefused)
    """A batch's unit of work was not stored: ``messages`` (that batch's, and those of any batch
    before it whose commit failed as well, in order) are unacknowledged and are to be taken
    again, from a core that is as the store is."""

    def __init__(self, messages: Sequence[Message]) -> None:
        super().__init__(f"{len(messages)} messages not stored")
        self.messages = list(messages)


class Alarm(Protocol):
    """Wakes the runtime at a ``now`` instant (to ``tick``); None disarms it."""

    def arm(self, due: Instant | None) -> None: ...


class Cycle(Protocol):
    """What the batcher, the API's commands and the runtime drive: ``CommitCycle``, or with
    several collectors ``cluster.intake.ClusterCycle``."""

    clock: Callable[[], Instant]

    @property
    def failing(self) -> bool: ...

    @property
    def flow(self) -> Flow: ...

    @property
    def site(self) -> Site: ...

    @property
    def core(self) -> CollectorCore:
        """The core its units of work run (with several collectors, one that only journals)."""

    def next_wakeup(self) -> Instant | None: ...

    def hold(self) -> None: ...

    def release(self) -> None: ...

    def ingest(self, messages: Sequence[Message]) -> None: ...

    async def ingest_next(self, messages: Sequence[Message]) -> None:
        """``ingest`` for the batcher: with a store that commits apart, returns once the batch
        is decided and its commit is under way; raises ``BatchNotStored``."""

    async def settle(self) -> None:
        """Wait for the commit under way, then acknowledge and publish what it stored; raises
        ``BatchNotStored`` for a batch whose commit failed."""

    def tick(self) -> None: ...

    def act(self, commands: Sequence[Command]) -> Instant: ...

    def replace_site(self, site: Site) -> None: ...

    def store_bays(self, site: Site) -> None: ...

    def save(self) -> None: ...

    def oldest_needed(self) -> int: ...


@dataclass(frozen=True, slots=True)
class Wiring:
    """What a collector's units of work reach besides the store: the broker link, the outbox
    of publications, the alert feed, the counters, the clock, and (when there are) the
    time-series sink and the alarm that wakes the runtime."""

    link: Transport
    outbox: Outbox
    feed: AlertFeed
    telemetry: Telemetry
    clock: Callable[[], Instant]
    sink: Sink | None = None
    alarm: Alarm | None = None


class WiredCycle:
    """What every ``Cycle`` keeps alike: its wiring, its site, and the flow of the rules'
    clock (held while the broker is away or hands over its backlog)."""

    def __init__(self, site: Site, wiring: Wiring) -> None:
        self._site = site  # the site of the last commit
        self._link = wiring.link
        self._outbox = wiring.outbox
        self._feed = wiring.feed
        self._telemetry = wiring.telemetry
        self.clock = wiring.clock
        self._sink = wiring.sink
        self._alarm = wiring.alarm
        self._flow = Flow.LIVE

    @property
    def site(self) -> Site:
        return self._site

    @property
    def flow(self) -> Flow:
        return self._flow

    def hold(self) -> None:
        """The broker is away or handing over its backlog: the rules' clock stands still."""
        self._flow = Flow.BACKLOG
        if self._alarm is not None:
            self._alarm.arm(None)  # the runtime ticks when it lets go

    def release(self) -> None:
        self._flow = Flow.LIVE

    def _acknowledge(self, messages: Sequence[Message]) -> None:
        """Their unit of work is stored: the broker may forget them."""
        link = self._link
        for message in messages:
            link.ack(message)

    def ingest(self, messages: Sequence[Message]) -> None:
        raise NotImplementedError

    async def ingest_next(self, messages: Sequence[Message]) -> None:
        """As ``ingest``, its commit done before it returns."""
        try:
            self.ingest(messages)
        except Exception as exc:
            raise BatchNotStored(messages) from exc

    async def settle(self) -> None:
        """Nothing is ever under way."""


@dataclass(frozen=True, slots=True)
class _Flight:
    """A batch's commit under way in the worker thread, and what follows it once it is in."""

    future: Future[Committed]
    work: Work
    now: Instant
    snapshot_began: float | None  # when its snapshots were taken, if it carries them
    messages: Sequence[Message]
    digests: Mapping[str, str]  # its events' ids -> digests, stored once it is in


class CommitCycle(WiredCycle):
    def __init__(
        self,
        site: Site,
        store: Store,
        rebuild: Callable[[Site], CollectorCore],
        wiring: Wiring,
    ) -> None:
        super().__init__(site, wiring)
        self._store = store
        self._rebuild = rebuild  # a core from the store, for a site
        self._core = rebuild(site)
        self._stale = False  # a commit failed: the core is ahead of the store
        self.failing = False  # the last commit failed
        # a store that commits on a connection of its own: a batch's commit runs in a worker
        # thread while the next is decided
        self._apart = store.commits_apart
        self._committer: ThreadPoolExecutor | None = None
        self._flight: _Flight | None = None
        self._unstored: list[Message] = []  # messages of a failed commit, to be taken again
        # the first save waits like the others: recovery has just rebuilt the rules, and a
        # backlog drained after a restart should not start with the cost of a save
        self._next_snapshot = time.monotonic() + SNAPSHOT_EVERY_S

    @property
    def core(self) -> CollectorCore:
        if self._stale:
            self._land()  # the store as it will be, before the core is read from it
            self._core = self._rebuild(self._site)  # raises StoreError while it cannot read
            # A failed commit may have committed all the same (a database whose reply was lost
            # on the way): what it published and the alert changes it made are sent from the
            # store, not lost.
            self._outbox.adopt(self._store.outbox())
            self._feed.catch_up()
            self._stale = False
        return self._core

    def next_wakeup(self) -> Instant | None:
        return self.core.next_wakeup()

    # -- units of work --------------------------------------------------------------------------

    def ingest(self, messages: Sequence[Message]) -> None:
        """A batch from the broker: validated, applied, stored, then acknowledged."""
        self._land()
        effects, now = self._decide_batch(messages)
        self._commit(effects, now)
        self._acknowledge(messages)

    def _decide_batch(
        self, messages: Sequence[Message], pending: Mapping[str, str] | None = None
    ) -> tuple[Effects, Instant]:
        """A batch decided, alerts that are due raised (and committed) before it; ``pending``:
        the digests of the events of a commit under way (stored once it is in)."""
        due = self.next_wakeup()
        if messages and due is not None and due <= self.clock() and self._flow is Flow.LIVE:
            # alerts are due: raise and publish them before a batch that may take a while
            self.tick()
        core = self.core
        now = self.clock()
        intake = read_batch(messages)
        known: Mapping[str, str] = {}
        if intake.event_ids:
            known = self._store.event_digests(intake.event_ids)
            if pending:
                mine = {e: d for e in intake.event_ids if (d := pending.get(e)) is not None}
                known = {**mine, **known}
        return self._decide(lambda: core.receive(intake, known, now, self._flow)), now

    def tick(self) -> None:
        """The alarm went off (or a wake-up without messages)."""
        if self._flow is Flow.BACKLOG:
            return
        self._land()
        core = self.core
        now = self.clock()
        self._commit(self._decide(lambda: core.tick(now, self._flow)), now)

    def act(self, commands: Sequence[Command]) -> Instant:
        """Commands of the API (or the journal file): stored, then published; returns ``now``."""
        self._land()
        core = self.core
        now = self.clock()
        self._commit(self._decide(lambda: core.act(commands, now)), now)
        return now

    def replace_site(self, site: Site) -> None:
        self._land()
        core = self.core
        now = self.clock()
        self._commit(self._decide(lambda: core.replace_site(site)), now, save=True)
        self._site = site

    def store_bays(self, site: Site) -> None:
        """Note when the site's bays came into being (their occupancy starts there)."""
        self._land()
        self._store.note_bays(site.bays, self.clock())

    def save(self) -> None:
        """A clean stop: save the rules so the next start re-executes nothing."""
        self._land()
        core = self.core
        self._commit(Effects(watermark=core.rules.clock), self.clock(), save=True)

    def _decide(self, step: Callable[[], Effects]) -> Effects:
        try:
            return step()
        except BaseException:
            self._stale = True  # the core may have changed before it failed
            raise

    def _commit(self, effects: Effects, now: Instant, *, save: bool = False) -> None:
        work, snapshot_began = self._work(effects, save=save)
        try:
            committed = self._store.commit(work)
        except BaseException:
            self._not_committed(work.delivered)
            raise
        self._committed(committed, work, now, snapshot_began)

    def _work(self, effects: Effects, *, save: bool) -> tuple[Work, float | None]:
        """The unit of work of ``effects``: the rules' snapshots when due (and when they were
        taken), the outbox rows the broker has acknowledged, the points' lines."""
        began = time.monotonic()
        snapshots = None
        if save or began >= self._next_snapshot:
            snapshots = {zone: dumps(data) for zone, data in self._core.snapshots().items()}
        delivered = self._outbox.take_delivered()
        work = Work(effects, snapshots, delivered, spool_lines(self._sink, effects))
        return work, began if snapshots else None

    def _not_committed(self, delivered: Sequence[int]) -> None:
        self._outbox.give_back_delivered(delivered)
        self._stale = True
        self.failing = True

    def _committed(
        self, committed: Committed, work: Work, now: Instant, snapshot_began: float | None
    ) -> None:
        """What follows a commit: alert changes fed, publications sent, points sent."""
        core = self._core
        effects = work.effects
        if self.failing:
            log.info("the store takes commits again")
        self.failing = False
        if snapshot_began is not None:
            core.saved(committed.last_pos)
            took = time.monotonic() - snapshot_began
            self._next_snapshot = time.monotonic() + max(
                SNAPSHOT_EVERY_S, SNAPSHOT_COST_FACTOR * took
            )
        self._feed.publish(committed.changes)
        self._outbox.committed(committed.outbox, effects.deadletters)
        points_committed(self._sink, self._telemetry, effects, len(work.lines))
        if effects.raised:
            self._telemetry.raised(effects.raised, now, core.settings.alert_delay_ms)
        if self._alarm is not None and self._flow is Flow.LIVE and not self._stale:
            self._alarm.arm(core.next_wakeup())

    # -- a batch decided while the one before it commits -------------------------------------

    async def ingest_next(self, messages: Sequence[Message]) -> None:
        if not self._apart:
            await super().ingest_next(messages)
            return
        self._take_unstored(messages)
        decided = False
        try:
            flight = self._flight
            effects, now = self._decide_batch(messages, None if flight is None else flight.digests)
            decided = True
            # No await from here to the commit's beginning: nothing else may run on a core
            # that is ahead of what is stored and of what is on its way.
            self._land()
        except Exception as exc:
            if decided:
                self._stale = True  # ahead of the store by this batch
            with contextlib.suppress(Exception):  # if it failed too, its messages are kept
                self._land()
            unstored, self._unstored = self._unstored, []
            raise BatchNotStored([*unstored, *messages]) from exc
        self._begin(effects, now, messages)

    async def settle(self) -> None:
        flight = self._flight
        if flight is not None:
            # The commit carries on if this waiter is cancelled (a stop: ``save`` lands it); its
            # outcome is taken by ``_land``.
            with contextlib.suppress(Exception):
                await asyncio.shield(asyncio.wrap_future(flight.future))
            try:
                self._land(flight)
            except Exception as exc:
                unstored, self._unstored = self._unstored, []
                raise BatchNotStored(unstored) from exc
        self._take_unstored(())

    def _take_unstored(self, messages: Sequence[Message]) -> None:
        """Messages of a commit that failed (landed by a command or a tick) go again first,
        ``messages`` after them."""
        if self._unstored:
            unstored, self._unstored = self._unstored, []
            raise BatchNotStored([*unstored, *messages])

    def _begin(self, effects: Effects, now: Instant, messages: Sequence[Message]) -> None:
        """The batch's commit, begun here and ended in the worker thread."""
        work, snapshot_began = self._work(effects, save=False)
        if self._committer is None:
            self._committer = ThreadPoolExecutor(1, thread_name_prefix="kerbside-commit")
        future: Future[Committed]
        try:
            finish = self._store.begin(work)
        except Exception as exc:  # noqa: BLE001 - it failed as it began: landed as any failure
            future = Future()
            future.set_exception(exc)
        else:
            future = self._committer.submit(finish)
        digests = {row[4]: row[5] for row in effects.journal if row[4] and row[5]}
        self._flight = _Flight(future, work, now, snapshot_began, tuple(messages), digests)

    def _land(self, flight: _Flight | None = None) -> None:
        """Wait for the commit under way (``flight``, if it is still the one under way), then
        do what follows it and acknowledge its batch; if it failed, its messages are kept to be
        taken again and its error raised."""
        flight = self._flight if flight is None else flight
        if flight is None or flight is not self._flight:
            return
        self._flight = None
        try:
            committed = flight.future.result()
        except BaseException:
            self._not_committed(flight.work.delivered)
            self._unstored.extend(flight.messages)
            raise
        self._committed(committed, flight.work, flight.now, flight.snapshot_began)
        self._acknowledge(flight.messages)

    def oldest_needed(self) -> int:
        """Journal entries after this position are still needed to rebuild the rules."""
        return self._core.rules.oldest_position()
