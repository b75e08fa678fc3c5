"""This collector's beat: the zones whose leases it holds, each run by a warden (a
``CollectorCore`` over one zone's rules, bays and sensors) that follows the journal.

``step`` is the unit of work: read the journal after ``pos`` (the records of the zones held,
and the zone-less ones: rights, suspensions, officers' actions, the clock's ticks), let each
warden follow its share (``CollectorCore.follow``), and store what they decided in one
transaction fenced by their leases, with the position their effects now reach; then publish,
feed the alert stream and write the points, as a single collector does after its commit. A
commit that fails is tried again as it is (nothing more is followed meanwhile); one whose lease
was lost goes without the zones lost.

``adopt`` makes a warden for a zone just taken: the zone's saved rules, then the journal after
them re-executed quietly up to the position its last owner's effects reached (the lease keeps
it), then followed live to here, so what fell due while the zone had no owner is raised now,
with its true instant. Its bays' states and its sensors' open alerts come from the store, as
the last owner left them. The gateways' maintenance alerts have a desk of their own (a core
without zones) under a lease of their own.
"""

from __future__ import annotations

import dataclasses
import heapq
import json
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from kerbside.collector.bayboard import BayBoard
from kerbside.collector.cluster.leases import Leases
from kerbside.collector.core import CollectorCore, CoreSettings
from kerbside.collector.cycle import (
    SNAPSHOT_COST_FACTOR,
    SNAPSHOT_EVERY_S,
    Wiring,
    points_committed,
    spool_lines,
)
from kerbside.collector.effects import Effects, empty, merged
from kerbside.collector.errors import LeaseLost
from kerbside.collector.maintenance import (
    GATEWAY_OFFLINE,
    LOW_BATTERY,
    SENSOR_FAULT,
    SENSOR_SILENT,
    Maintenance,
)
from kerbside.collector.rules.alerts import KINDS as ENFORCEMENT_KINDS
from kerbside.collector.store import (
    MAINTENANCE_LEASE,
    Fence,
    JournalEntry,
    Store,
    Work,
    dumps,
)
from kerbside.collector.store.pgcluster import ClusterTables, Taken
from kerbside.collector.zones import ZoneRules, zone_site
from kerbside.core.instants import Instant
from kerbside.core.site import Site

log = logging.getLogger(__name__)

TAIL_PAGE = 2000  # journal records read per step

Followed = tuple[JournalEntry, str | None]


class ClusterStore(Store, Protocol):
    """The store port with the cluster's tables (PostgreSQL)."""

    @property
    def cluster(self) -> ClusterTables: ...


def no_zones(site: Site) -> Site:
    """``site`` without zones or bays: the rules and board of a core that runs none."""
    return dataclasses.replace(
        site, zones={}, bays={}, bay_of_sensor={}, _by_zone={}, _by_gateway={}
    )


@dataclass
class _Step:
    """What one step decided, kept until it is stored."""

    effects: dict[str, Effects]  # lease -> its warden's (or the desk's) effects
    snapshots: dict[str, str] = field(default_factory=dict)  # zone -> its rules (JSON)
    through: int = 0  # the journal position followed
    advanced: bool = False  # it followed records (not only a save of the rules)
    saving_since: float = 0.0  # when its rules were taken to be saved (monotonic)


class Beat:
    def __init__(
        self,
        site: Site,
        settings: CoreSettings,
        store: ClusterStore,
        leases: Leases,
        wiring: Wiring,
        *,
        changed: Callable[[], None] = lambda: None,
    ) -> None:
        self.site = site
        self.settings = settings
        self._store = store
        self._tables = store.cluster
        self._leases = leases
        self._outbox = wiring.outbox
        self._feed = wiring.feed
        self._telemetry = wiring.telemetry
        self._clock = wiring.clock
        self._sink = wiring.sink
        self._changed = changed  # the wardens' next deadline may have moved (the alarm)
        self._wardens: dict[str, CollectorCore] = {}
        self._positions: dict[str, int] = {}  # zone -> the journal position its warden followed
        self._desk: CollectorCore | None = None
        self._desk_stale = False  # a commit of the desk's failed: made again from the store
        self.pos = self._tables.head()  # the journal followed through
        self._pending: _Step | None = None
        self._uncertain = False  # a commit failed: it may have been stored all the same
        self._more = False
        self._next_snapshot = time.monotonic() + SNAPSHOT_EVERY_S
        self.failing = False

    @property
    def node(self) -> str:
        return self._tables.node

    @property
    def zones(self) -> list[str]:
        return sorted(self._wardens)

    @property
    def desk(self) -> CollectorCore | None:
        """The maintenance alerts' core, while this collector holds their lease."""
        if self._desk is not None and self._desk_stale:
            epoch = self._leases.held().get(MAINTENANCE_LEASE)
            if epoch is None:
                self._desk = None
            else:
                found = self._tables.applied([MAINTENANCE_LEASE]).get(MAINTENANCE_LEASE)
                self._adopt_desk(Taken(epoch, found[2] if found else 0))
            self._desk_stale = False
        return self._desk

    def refresh_desk(self) -> None:
        """A commit with the desk's effects failed: its memory is ahead of the store."""
        self._desk_stale = True

    def acting(self, lease: str) -> bool:
        return self._leases.acting(lease)

    def lost(self, leases: Iterable[str]) -> None:
        """Leases the store says are another's now."""
        lost = sorted(leases)
        log.warning("lease of %s lost to another collector", ", ".join(lost))
        self.drop(lost)
        self._leases.drop(lost)

    def warden(self, zone_id: str) -> CollectorCore:
        return self._wardens[zone_id]

    def next_wakeup(self) -> Instant | None:
        """When a warden has something due (``now`` time): a tick is then wanted."""
        due = [w for core in self._wardens.values() if (w := core.next_wakeup()) is not None]
        return min(due, default=None)

    # -- taking and giving up zones ------------------------------------------------------------

    def adopt(self, lease: str, taken: Taken) -> None:
        """A lease just taken: its warden (or the desk) made from the store and brought up to
        here, what it decided on the way stored under the lease; raises ``StoreError`` if that
        fails (the lease is then given up here, and taken again later)."""
        try:
            if lease == MAINTENANCE_LEASE:
                self._adopt_desk(taken)
            else:
                self._adopt_zone(lease, taken)
        except BaseException:
            self.drop([lease])
            self._leases.drop([lease])
            raise
        self._changed()

    def _adopt_zone(self, zone_id: str, taken: Taken) -> None:
        site, settings, tables = self.site, self.settings, self._tables
        part = zone_site(site, zone_id)
        saved = tables.snapshot(zone_id)
        snapshots: dict[str, tuple[int, dict[str, Any]]] = {}
        if saved is not None:
            try:
                snapshots[zone_id] = (saved.pos, json.loads(saved.text))
            except ValueError as exc:
                log.error(  # noqa: TRY400 (one line, no trace)
                    "rules of zone %s cannot be read (%s): rebuilt from the journal", zone_id, exc
                )
        try:
            rules = ZoneRules.restore(part, snapshots)
        except (KeyError, TypeError, ValueError) as exc:
            log.error(  # noqa: TRY400 (one line, no trace)
                "rules of zone %s cannot be restored (%s): rebuilt from the journal", zone_id, exc
            )
            rules = ZoneRules.restore(part, {})
        bay_ids = list(part.bays)
        states = self._store.bay_states(bay_ids)
        if self._sink is not None:
            self._sink.bays_seen({bay: (row[0], row[1]) for bay, row in states.items()})
        board = BayBoard(
            part,
            settings.topic_root,
            states,
            tables.session_alerts(bay_ids, ENFORCEMENT_KINDS) if settings.points else (),
            points=settings.points,
        )
        maintenance = Maintenance(
            settings.offline_after_ms,
            settings.low_battery_mv,
            tables.open_alerts((SENSOR_SILENT, SENSOR_FAULT), zone_id),
        )
        core = CollectorCore(site, settings, rules, board, maintenance)
        start = rules.oldest_position()
        # records the saved rules hold, or whose effects the last owner stored, are only
        # re-executed (a single collector's rules, saved before the zone had a lease, may be
        # ahead of the lease's position)
        quiet = max(taken.applied_pos, start)
        upto = max(self.pos, quiet)
        parts: list[Effects] = []
        reexecuted = 0
        for page in self._pages(start, [zone_id], upto):
            entries = [entry for entry, _ in page]
            reexecuted += sum(1 for e in entries if e.pos <= quiet)
            parts.append(core.follow(entries, quiet_through=quiet))
        self._positions[zone_id] = upto
        self._wardens[zone_id] = core
        log.info(
            "zone %s taken (epoch %d): rules from position %d, %d records re-executed, followed"
            " to %d",
            zone_id,
            taken.epoch,
            start,
            reexecuted,
            upto,
        )
        snapshot = {zone_id: dumps(data) for zone_id, data in core.snapshots().items()}
        self._store_now(_Step({zone_id: merged(parts or [Effects()])}, snapshot, upto, True))
        core.saved(upto)
        if taken.previous is not None:
            root = settings.topic_root
            topics = [f"{root}/alerts/{zone_id}", *(f"{root}/bays/{bay}" for bay in bay_ids)]
            adopted = tables.adopt_outbox(taken.previous, topics)
            if adopted:
                log.info(
                    "zone %s: %d publications collector %s stored and never sent, sent now",
                    zone_id,
                    adopted,
                    taken.previous,
                )
                self._outbox.adopt(self._store.outbox())

    def _adopt_desk(self, taken: Taken) -> None:
        settings, tables = self.settings, self._tables
        now = self._clock()
        gateways = {g: (online, max(seen, now)) for g, (online, seen) in tables.gateways().items()}
        maintenance = Maintenance(
            settings.offline_after_ms,
            settings.low_battery_mv,
            tables.open_alerts((GATEWAY_OFFLINE, LOW_BATTERY), None),
            gateways,
        )
        empty_site = no_zones(self.site)
        desk = CollectorCore(
            self.site,
            settings,
            ZoneRules(empty_site, {}, {}),
            BayBoard(empty_site, settings.topic_root, {}),
            maintenance,
        )
        # officers' actions on its alerts that no desk has followed yet
        parts = [
            desk.follow([e for e, _ in page], quiet_through=taken.applied_pos)
            for page in self._pages(taken.applied_pos, [], self.pos)
        ]
        self._desk = desk
        log.info("maintenance alerts taken (epoch %d)", taken.epoch)
        self._store_now(
            _Step({MAINTENANCE_LEASE: merged(parts or [Effects()])}, {}, self.pos, True)
        )
        if taken.previous is not None:
            topic = f"{settings.topic_root}/alerts/maintenance"
            if tables.adopt_outbox(taken.previous, [topic]):
                self._outbox.adopt(self._store.outbox())

    def _pages(self, after: int, zones: list[str], upto: int) -> Iterable[list[Followed]]:
        """The records of ``zones`` (and the zone-less ones) in ``(after, upto]``, by pages."""
        while after < upto:
            tail = self._tables.tail(after, zones, TAIL_PAGE)
            page = [(e, z) for e, z in tail.records if e.pos <= upto]
            if page:
                yield page
            if tail.through <= after or (not tail.more and not page):
                return
            after = tail.through

    def drop(self, leases: Iterable[str]) -> None:
        """Stop acting for these leases (lost, run out or released): their wardens go, and
        what they decided and did not store yet is not stored."""
        for lease in leases:
            if lease == MAINTENANCE_LEASE:
                self._desk = None
                self._desk_stale = False
            else:
                self._wardens.pop(lease, None)
                self._positions.pop(lease, None)
            if self._pending is not None:
                self._pending.effects.pop(lease, None)
                self._pending.snapshots.pop(lease, None)

    def give_up_run_out(self) -> list[str]:
        """Leases whose time ran out on this collector's clock: dropped (returned)."""
        run_out = self._leases.run_out()
        if run_out:
            log.warning(
                "lease of %s ran out before it was renewed: stopped acting for it",
                ", ".join(run_out),
            )
            self.drop(run_out)
            self._leases.drop(run_out)
        return run_out

    def replace_site(self, site: Site) -> None:
        """A reloaded site: every warden is made again from the store, under the new site."""
        self.save()
        self.site = site
        held = self._leases.held()
        self.drop(list(held))
        for lease, epoch in held.items():
            if lease != MAINTENANCE_LEASE and lease not in site.zones:
                continue  # released by the keeper's next round
            applied = self._tables.applied([lease]).get(lease)
            self.adopt(lease, Taken(epoch, applied[2] if applied else 0))

    # -- units of work ---------------------------------------------------------------------------

    def step(self) -> bool:
        """Follow the next page of the journal and store what it decided (or store what the
        last step could not); True when there is more to follow at once."""
        self.give_up_run_out()
        if self._pending is None:
            self._pending = self._follow()
        if self._pending is not None:
            self._store_pending()
        return self._more

    def save(self) -> None:
        """Store every warden's rules now (a clean stop, a release)."""
        self.give_up_run_out()
        if self._pending is not None:
            self._store_pending()
        self._next_snapshot = 0.0
        self._pending = self._follow()
        if self._pending is not None:
            self._store_pending()

    def _follow(self) -> _Step | None:
        tail = self._tables.tail(self.pos, list(self._wardens), TAIL_PAGE)
        page = tail.records
        self._more = tail.more
        saving = bool(self._wardens) and time.monotonic() >= self._next_snapshot
        if not page:
            # a window without our records: read through (the wardens' positions with it)
            for zone in self._positions:
                self._positions[zone] = max(self._positions[zone], tail.through)
            self.pos = max(self.pos, tail.through)
            if not saving:
                return None
        step = _Step({})
        if page:
            by_zone: dict[str, list[JournalEntry]] = {}
            everyone: list[JournalEntry] = []
            for entry, zone_id in page:
                if zone_id is None:
                    everyone.append(entry)
                else:
                    by_zone.setdefault(zone_id, []).append(entry)
            last = tail.through
            for zone_id, core in self._wardens.items():
                after = self._positions[zone_id]
                own = by_zone.get(zone_id, [])
                entries = [
                    e for e in heapq.merge(own, everyone, key=lambda e: e.pos) if e.pos > after
                ]
                if entries:
                    effects = core.follow(entries)
                    if not empty(effects):
                        step.effects[zone_id] = effects
                self._positions[zone_id] = max(after, last)
            desk = self.desk
            if desk is not None and everyone:
                effects = desk.follow(everyone)
                if not empty(effects):
                    step.effects[MAINTENANCE_LEASE] = effects
            step.through, step.advanced = last, True
            self.pos = last
        else:
            step.through = self.pos
        if saving:
            step.saving_since = time.monotonic()
            step.snapshots = {
                zone: dumps(data)
                for core in self._wardens.values()
                for zone, data in core.snapshots().items()
            }
        return step

    def _store_pending(self) -> None:
        step = self._pending
        assert step is not None
        if self._uncertain and self._stored_already(step):
            log.info("the last commit was stored after all; its publications are sent")
            self._outbox.adopt(self._store.outbox())
            self._feed.catch_up()
            self._pending = None
            self._uncertain = False
            return
        self._store_now(step)
        self._pending = None

    def _stored_already(self, step: _Step) -> bool:
        if not step.advanced:
            return False
        fenced = self._fenced(step)
        found = self._tables.applied(fenced)
        epochs = self._leases.held()
        return bool(fenced) and all(
            lease in found
            and found[lease][1] == epochs.get(lease)
            and found[lease][2] >= step.through
            for lease in fenced
        )

    @staticmethod
    def _fenced(step: _Step) -> list[str]:
        return sorted(set(step.effects) | set(step.snapshots))

    def _store_now(self, step: _Step) -> None:
        """Store a step's effects under the leases of the zones that have any (or whose rules
        are saved); a lease lost meanwhile is dropped and the rest stored."""
        while True:
            for lease in [lease for lease in self._fenced(step) if not self._leases.acting(lease)]:
                self.drop([lease])
                step.effects.pop(lease, None)
                step.snapshots.pop(lease, None)
            fenced = self._fenced(step)
            if not fenced:
                return
            leases = sorted(step.effects)
            parts = [step.effects[lease] for lease in leases]
            effects = dataclasses.replace(merged(parts), watermark=None)
            alert_leases = [lease for lease in leases for _ in step.effects[lease].alerts]
            epochs = self._leases.held()
            fence = Fence(
                self._tables.node, {lease: epochs[lease] for lease in fenced}, step.through
            )
            try:
                self._commit(effects, step, fence, alert_leases)
            except LeaseLost as exc:
                self.lost(exc.leases)
                step.effects = {k: v for k, v in step.effects.items() if k not in exc.leases}
                step.snapshots = {k: v for k, v in step.snapshots.items() if k not in exc.leases}
                continue
            return

    def _commit(
        self, effects: Effects, step: _Step, fence: Fence, alert_leases: Sequence[str]
    ) -> None:
        lines = spool_lines(self._sink, effects)
        delivered = self._outbox.take_delivered()
        work = Work(
            effects,
            step.snapshots or None,
            delivered,
            lines,
            fence=fence,
            snapshot_pos=step.through,
            alert_leases=alert_leases,
        )
        try:
            committed = self._store.commit(work)
        except LeaseLost:
            self._outbox.give_back_delivered(delivered)
            raise
        except BaseException:
            self._outbox.give_back_delivered(delivered)
            self._uncertain = True
            self.failing = True
            raise
        self.failing = self._uncertain = False
        if step.snapshots:
            for zone_id in step.snapshots:
                core = self._wardens.get(zone_id)
                if core is not None:
                    core.saved(step.through)
            # as a single collector does: never more often than 50 times what a save takes
            took = time.monotonic() - (step.saving_since or time.monotonic())
            self._next_snapshot = time.monotonic() + max(
                SNAPSHOT_EVERY_S, SNAPSHOT_COST_FACTOR * took
            )
        self._outbox.committed(committed.outbox, effects.deadletters)
        if committed.changes:
            self._feed.catch_up()
        points_committed(self._sink, self._telemetry, effects, len(lines))
        if effects.raised:
            self._telemetry.raised(effects.raised, self._clock(), self.settings.alert_delay_ms)
        self._changed()

    def held(self) -> Mapping[str, int]:
        return self._leases.held()
