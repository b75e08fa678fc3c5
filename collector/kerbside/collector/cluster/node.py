"""A collector among several, wired: its beat, its leases and the three tasks that keep them.

- ``keeper``: a round every ``lease_s / 3`` (and as soon as another collector's lease runs
  out): a heartbeat, this collector's leases renewed, its share of the zones taken or released
  (``leases.plan``), each zone taken adopted by the beat;
- ``patrol``: the beat's steps, whenever the journal grew (this collector's own commits, or
  another's, heard by NOTIFY) and at least every ``POLL_S``;
- ``listen``: LISTEN on the store for the journal and the alert changes, so the beat follows at
  once and the alert stream carries every zone's changes in commit order.

On a clean stop every zone's rules are saved and the leases released, so the others take the
zones at once rather than when the leases run out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import psycopg

from kerbside.collector.cluster.beat import Beat, ClusterStore
from kerbside.collector.cluster.intake import ClusterCycle
from kerbside.collector.cluster.leases import RENEWALS_PER_LEASE, Leases, plan
from kerbside.collector.config import ClusterConfig
from kerbside.collector.core import CoreSettings
from kerbside.collector.cycle import Wiring
from kerbside.collector.errors import StoreError
from kerbside.collector.feed import AlertFeed
from kerbside.collector.rules.schedule import NEG_INF
from kerbside.collector.store import MAINTENANCE_LEASE
from kerbside.collector.store.postgres import ALERT_CHANGES_CHANNEL, JOURNAL_CHANNEL
from kerbside.core.backoff import Backoff
from kerbside.core.instants import format_instant
from kerbside.core.site import Site
from kerbside.core.throttle import Throttle

log = logging.getLogger(__name__)

POLL_S = 0.5  # the beat looks at the journal at least this often (NOTIFY makes it sooner)
SOON_S = 0.05  # after another collector's lease runs out, the round that takes it


class Listener(ClusterStore, Protocol):
    async def listener(self) -> psycopg.AsyncConnection[tuple[Any, ...]]: ...


@dataclass
class ClusterNode:
    beat: Beat
    leases: Leases
    store: Listener
    feed: AlertFeed
    wake: asyncio.Event
    lease_s: float

    @property
    def node(self) -> str:
        return self.beat.node

    def health(self) -> dict[str, Any]:
        """What ``/healthz`` says of this collector among several."""
        beat = self.beat
        clocks = [beat.warden(zone).rules.clock for zone in beat.zones]
        clock = max(clocks, default=None)
        return {
            "node": self.node,
            "zones": beat.zones,
            "maintenance": beat.acting(MAINTENANCE_LEASE),
            # the rules' clock of its zones (each zone's moves with its journal)
            "clock": None if clock is None or clock <= NEG_INF else format_instant(clock),
        }

    # -- the keeper ----------------------------------------------------------------------------

    def round(self) -> float:
        """One round of the leases; returns when the next is due (seconds from now)."""
        beat, leases, tables = self.beat, self.leases, self.store.cluster
        beat.give_up_run_out()
        asked = self.leases.now()
        alive = tables.heartbeat(self.lease_s)
        held = leases.held()
        kept = tables.renew(held, self.lease_s)
        leases.renewed(kept, asked)
        if set(held) - kept:
            beat.lost(set(held) - kept)
        rows = tables.leases()
        holders = {row.lease: row.node_id if row.live else None for row in rows}
        wanted = [*sorted(beat.site.zones), MAINTENANCE_LEASE]
        todo = plan(self.node, alive, wanted, holders, leases.held())
        if todo.release:
            self.release(todo.release)
        if todo.take:
            asked = self.leases.now()
            for lease, taken in tables.take(todo.take, self.lease_s).items():
                leases.took(lease, taken.epoch, asked)
                try:
                    beat.adopt(lease, taken)
                except StoreError as exc:
                    log.error("lease %s taken but not adopted (%s): given up", lease, exc)  # noqa: TRY400
            self.wake.set()
        period = self.lease_s / RENEWALS_PER_LEASE
        others = [r.remaining_s for r in rows if r.node_id != self.node and r.live]
        return max(0.0, min([period, *(left + SOON_S for left in others)]))

    def release(self, releasing: list[str]) -> None:
        """Give leases up: their rules saved first, so the next owner re-executes little."""
        held = self.leases.held()
        try:
            self.beat.save()
        except StoreError as exc:
            log.warning("rules not saved before releasing %s: %s", ", ".join(releasing), exc)
        self.beat.drop(releasing)
        self.leases.drop(releasing)
        self.store.cluster.release({lease: held[lease] for lease in releasing if lease in held})
        log.info("released %s", ", ".join(sorted(releasing)))

    async def keep_leases(self) -> None:
        unreachable = Throttle(60.0)
        while True:
            try:
                wait = self.round()
            except StoreError as exc:
                if unreachable.ready():
                    log.error("leases not renewed: %s", exc)  # noqa: TRY400 (one line)
                wait = self.lease_s / RENEWALS_PER_LEASE
            await asyncio.sleep(wait)

    def leave(self) -> None:
        """A clean stop: the rules saved, the leases released, the heartbeat withdrawn."""
        self.beat.save()
        held = self.leases.held()
        self.beat.drop(list(held))
        self.leases.drop(list(held))
        self.store.cluster.release(held)
        self.store.cluster.leave()

    # -- the patrol ------------------------------------------------------------------------------

    async def patrol(self) -> None:
        backoff = Backoff(0.5, 5.0)
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), POLL_S)
            self.wake.clear()
            try:
                more = self.beat.step()
            except StoreError as exc:
                wait = backoff.next()
                log.error("zones' records not followed (%s); again in %.1f s", exc, wait)  # noqa: TRY400
                await asyncio.sleep(wait)
                self.wake.set()
                continue
            backoff.reset()
            if more:  # a full page: the next one at once, after the loop's other work
                self.wake.set()

    # -- listening -------------------------------------------------------------------------------

    async def listen(self) -> None:
        backoff = Backoff(0.5, 10.0)
        unreachable = Throttle(60.0)
        while True:
            try:
                conn = await self.store.listener()
                async with conn:
                    await conn.execute(f"LISTEN {JOURNAL_CHANNEL}".encode())
                    await conn.execute(f"LISTEN {ALERT_CHANGES_CHANNEL}".encode())
                    backoff.reset()
                    self._heard(JOURNAL_CHANNEL)  # what was committed while we did not listen
                    self._heard(ALERT_CHANGES_CHANNEL)
                    async for notify in conn.notifies():
                        self._heard(notify.channel)
            except (StoreError, psycopg.Error) as exc:
                if unreachable.ready():
                    log.warning("not listening to the store: %s", " ".join(str(exc).split()))
                await asyncio.sleep(backoff.next())

    def _heard(self, channel: str) -> None:
        if channel == JOURNAL_CHANNEL:
            self.wake.set()
            return
        try:
            self.feed.catch_up()
        except StoreError as exc:
            log.warning("alert changes not read: %s", exc)


def join_cluster(
    config: ClusterConfig,
    site: Site,
    store: Listener,
    settings: CoreSettings,
    wiring: Wiring,
    *,
    monotonic: Callable[[], float] = time.monotonic,
) -> tuple[ClusterCycle, ClusterNode]:
    """The units of work and the node of a collector among several (no zone held yet: the
    keeper's first round takes its share). ``monotonic`` is the clock leases are kept on."""
    leases = Leases(config.lease_s, monotonic)
    wake = asyncio.Event()
    arms: list[Callable[[], None]] = []

    def changed() -> None:  # a warden's next deadline may have moved: the alarm again
        for arm in arms:
            arm()

    beat = Beat(site, settings, store, leases, wiring, changed=changed)
    cycle = ClusterCycle(site, store, settings, beat, wiring, wake=wake.set)
    arms.append(cycle.arm)
    return cycle, ClusterNode(beat, leases, store, wiring.feed, wake, config.lease_s)
