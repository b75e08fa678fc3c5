"""The units of work of a collector among several: what the broker and the API hand it, stored.

A batch from the broker: its events validated and journaled, each with its bay's zone and the
rules' clock of this collector (``now - alert_delay_s``, standing still while the broker hands
over a backlog), and acknowledged only once committed; its gateways' statuses and health reports
taken by the maintenance desk if this collector holds its lease (else dropped: the holder hears
them too). Commands (rights, suspensions, officers' actions) are journaled the same way. The
zones' owners carry them out as they follow the journal (``beat.py``), this collector's own
wardens woken at once.

Two collectors may receive one event (a gateway that sent it again after a lost
acknowledgement): the store refuses the second commit (``RacedEvent``), and the batch is taken
again, the event now a known duplicate. ``tick`` writes what the desk's clock makes due
(gateways gone quiet) and, when a warden has an alert due, a tick of the rules' clock into the
journal: the owners' clocks move only by what the journal says, so that any collector
following a zone decides the same.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Sequence

from kerbside.collector.bayboard import BayBoard
from kerbside.collector.cluster.beat import Beat, ClusterStore, no_zones
from kerbside.collector.core import (
    CollectorCore,
    Command,
    CoreSettings,
    Flow,
    read_batch,
)
from kerbside.collector.cycle import WiredCycle, Wiring, points_committed, spool_lines
from kerbside.collector.effects import Effects, empty, merged
from kerbside.collector.errors import LeaseLost, RacedEvent
from kerbside.collector.link import Message
from kerbside.collector.maintenance import Maintenance
from kerbside.collector.store import MAINTENANCE_LEASE, Fence, Work
from kerbside.collector.zones import ZoneRules
from kerbside.core.instants import Instant
from kerbside.core.site import Site

log = logging.getLogger(__name__)

RACES_MAX = 5  # a batch taken again after so many lost races in a row is an ordinary failure


def intake_core(site: Site, settings: CoreSettings) -> CollectorCore:
    """A core that only validates and journals (its rules, board and maintenance empty)."""
    nothing = no_zones(site)
    return CollectorCore(
        site,
        dataclasses.replace(settings, rules_here=False),
        ZoneRules(nothing, {}, {}),
        BayBoard(nothing, settings.topic_root, {}),
        Maintenance(settings.offline_after_ms, settings.low_battery_mv),
    )


class ClusterCycle(WiredCycle):
    """``cycle.Cycle`` for a collector among several."""

    def __init__(
        self,
        site: Site,
        store: ClusterStore,
        settings: CoreSettings,
        beat: Beat,
        wiring: Wiring,
        *,
        wake: Callable[[], None],
    ) -> None:
        super().__init__(site, wiring)
        self._store = store
        self._settings = settings
        self._core = intake_core(site, settings)
        self.beat = beat
        self._wake = wake  # this collector's wardens: the journal grew
        self._ticked = 0  # the journal position of this collector's last tick
        self._failing = False

    @property
    def failing(self) -> bool:
        """The last commit failed (this collector's ingest, or its wardens')."""
        return self._failing or self.beat.failing

    @property
    def core(self) -> CollectorCore:
        """The core of its ingest: it validates and journals (the wardens decide)."""
        return self._core

    def next_wakeup(self) -> Instant | None:
        due = []
        desk = self._desk()
        if desk is not None and (when := desk.next_wakeup()) is not None:
            due.append(when)
        if self.beat.pos >= self._ticked and (when := self.beat.next_wakeup()) is not None:
            due.append(when)  # (a tick written and not followed yet: wait for it)
        return min(due, default=None)

    def arm(self) -> None:
        if self._alarm is not None and self._flow is Flow.LIVE:
            self._alarm.arm(self.next_wakeup())

    def _desk(self) -> CollectorCore | None:
        desk = self.beat.desk
        if desk is not None and not self.beat.acting(MAINTENANCE_LEASE):
            return None
        return desk

    # -- units of work --------------------------------------------------------------------------

    def ingest(self, messages: Sequence[Message]) -> None:
        due = self.next_wakeup()
        if messages and due is not None and due <= self.clock() and self._flow is Flow.LIVE:
            self.tick()
        events = [m for m in messages if m.topic.endswith("/events")]
        others = [m for m in messages if not m.topic.endswith("/events")]
        races = 0
        while True:
            now = self.clock()
            intake = read_batch(events)
            known = self._store.event_digests(intake.event_ids) if intake.event_ids else {}
            parts = [self._core.receive(intake, known, now, self._flow)]
            desk = self._desk() if others else None
            if desk is not None:
                parts.append(desk.receive(read_batch(others), {}, now, self._flow))
            try:
                self._commit(parts, desk is not None)
            except RacedEvent:
                races += 1
                if races >= RACES_MAX:
                    raise
                log.info("an event of this batch was stored by another collector: taken again")
                continue
            except LeaseLost:
                continue  # without the desk (dropped)
            break
        self._acknowledge(messages)

    def tick(self) -> None:
        if self._flow is Flow.BACKLOG:
            return
        now = self.clock()
        parts = [self._core.tick(now, self._flow)]
        desk = self._desk()
        if desk is not None:
            parts.append(desk.tick(now, self._flow))
        due = self.beat.next_wakeup()
        tick = due is not None and due <= now and self.beat.pos >= self._ticked
        if tick:
            mark = now - self._settings.alert_delay_ms
            parts[0] = dataclasses.replace(
                parts[0], journal=(("tick", mark, mark, "{}", None, None, None),)
            )
        try:
            committed = self._commit(parts, desk is not None)
        except LeaseLost:
            return
        if tick and committed is not None:
            self._ticked = committed

    def act(self, commands: Sequence[Command]) -> Instant:
        now = self.clock()
        self._commit([self._core.act(commands, now)], False)
        return now

    def _commit(self, parts: list[Effects], with_desk: bool) -> int | None:
        """Store the parts (the last one the desk's, if ``with_desk``); returns the journal's
        last position when anything was stored."""
        desk_effects = parts[-1] if with_desk else None
        fence = None
        alert_leases: list[str] = []
        if desk_effects is not None and not empty(desk_effects):
            epochs = self.beat.held()
            fence = Fence(self.beat.node, {MAINTENANCE_LEASE: epochs[MAINTENANCE_LEASE]})
            alert_leases = [MAINTENANCE_LEASE] * len(desk_effects.alerts)
        effects = dataclasses.replace(merged(parts), watermark=None)
        if empty(effects):
            self.arm()
            return None
        lines = spool_lines(self._sink, effects)
        delivered = self._outbox.take_delivered()
        work = Work(effects, None, delivered, lines, fence=fence, alert_leases=alert_leases)
        try:
            committed = self._store.commit(work)
        except BaseException as exc:
            self._outbox.give_back_delivered(delivered)
            if with_desk:
                self.beat.refresh_desk()  # its memory moved ahead of the store
            if isinstance(exc, LeaseLost):
                self.beat.lost(exc.leases)
            elif not isinstance(exc, RacedEvent):
                self._failing = True
            raise
        if self._failing:
            log.info("the store takes commits again")
        self._failing = False
        self._outbox.committed(committed.outbox, effects.deadletters)
        if committed.changes:
            self._feed.catch_up()
        points_committed(self._sink, self._telemetry, effects, len(lines))
        if effects.journal:
            self._wake()
        self.arm()
        return committed.last_pos

    # -- the site and stopping ------------------------------------------------------------------

    def replace_site(self, site: Site) -> None:
        self._core.replace_site(site)
        self.beat.replace_site(site)
        self._site = site

    def store_bays(self, site: Site) -> None:
        self._store.note_bays(site.bays, self.clock())

    def save(self) -> None:
        """A clean stop: every zone's rules saved (the keeper then releases the leases)."""
        self.beat.save()

    def oldest_needed(self) -> int:
        """Journal records after this position may still be needed to rebuild a zone."""
        tables = self._store.cluster
        saved = tables.oldest_snapshot()
        return saved if tables.snapshots_cover(self._site.zones) else 0
