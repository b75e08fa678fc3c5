"""The rules, one engine per zone: what lets a zone be saved, restored and, later, run by one
collector of several while the others run theirs.

Zones do not share state in the rules: a bay's alerts depend on its own events, rights and
suspensions and on its zone's rights only. So each zone's ``RulesEngine`` holds that zone's bays,
and every engine's clock moves together. An occupancy event goes to its bay's zone; a right or a
suspension goes to every engine, fitted to it (``fit_record``), so that a right or suspension
replaced by id under another zone is forgotten where it was. The alerts equal those of one
engine over the whole site (what ``replay`` runs).

Each zone's snapshot carries the journal position it reflects; on recovery a journal record is
re-executed only by the zones whose snapshot is older than it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from kerbside.collector.records import JournalRecord, OccupancyEvent
from kerbside.collector.rules import Alert, AlertChange, RulesEngine
from kerbside.collector.rules.engine import fit_record
from kerbside.collector.rules.schedule import NEG_INF
from kerbside.collector.store import EVERY_ZONE
from kerbside.core.instants import Instant
from kerbside.core.site import Site


def zone_site(site: Site, zone_id: str) -> Site:
    """The part of ``site`` that is one of its zones and that zone's bays."""
    return only_zones(site, (zone_id,))


def only_zones(site: Site, zone_ids: Iterable[str]) -> Site:
    """The part of ``site`` that is these zones and their bays."""
    wanted = [z for z in zone_ids if z in site.zones]
    bays = [bay for z in wanted for bay in site.bays_of_zone(z)]
    by_gateway: dict[str, list[Any]] = {}
    for bay in bays:
        if bay.gateway is not None:
            by_gateway.setdefault(bay.gateway, []).append(bay)
    return Site(
        name=site.name,
        timezone=site.timezone,
        holidays=site.holidays,
        zones={z: site.zones[z] for z in wanted},
        bays={bay.id: bay for bay in bays},
        bay_of_sensor={bay.sensor: bay for bay in bays if bay.sensor is not None},
        _by_zone={z: site.bays_of_zone(z) for z in wanted},
        _by_gateway={gateway: tuple(of) for gateway, of in by_gateway.items()},
    )


def _bays_named(snapshot: dict[str, Any]) -> list[str]:
    """The bays an engine's snapshot holds state or waiting records of."""
    named = dict.fromkeys(snapshot.get("bays", ()))
    for _time, _order, record in snapshot.get("queued", ()):
        if record.get("bay_id") is not None:
            named[record["bay_id"]] = None
        named.update(dict.fromkeys(record.get("bay_ids", ())))
    return list(named)


def _bays_site(site: Site, bay_ids: list[str]) -> Site:
    """The part of ``site`` that is these bays (and their zones)."""
    bays = tuple(site.bays[b] for b in bay_ids)
    zones = {bay.zone_id: site.zones[bay.zone_id] for bay in bays}
    return Site(
        name=site.name,
        timezone=site.timezone,
        holidays=site.holidays,
        zones=zones,
        bays={bay.id: bay for bay in bays},
        bay_of_sensor={bay.sensor: bay for bay in bays if bay.sensor is not None},
        _by_zone={z: tuple(b for b in bays if b.zone_id == z) for z in zones},
    )


class ZoneRules:
    """A ``RulesEngine`` per zone of the site, driven as one."""

    def __init__(
        self, site: Site, engines: Mapping[str, RulesEngine], positions: Mapping[str, int]
    ):
        self.site = site
        self._engines = dict(engines)
        # journal position each zone's state reflects: records at or before it are in it
        self._positions = dict(positions)
        self._clock = max((e.clock for e in self._engines.values()), default=NEG_INF)
        # no engine's clock is behind this (so ``advance_to`` can skip them all)
        self._floor = min((e.clock for e in self._engines.values()), default=NEG_INF)
        for zone_id in site.zones:
            if zone_id not in self._engines:
                self._engines[zone_id] = self._new_engine(zone_id)

    @classmethod
    def restore(cls, site: Site, snapshots: Mapping[str, tuple[int, dict[str, Any]]]) -> ZoneRules:
        """Zones from their snapshots (position, data); a zone without one takes the snapshot
        that stands for every zone, if any. A zone the site file gained while the collector was
        stopped starts beside the others (their clock, position and waiting rights); with no
        snapshot at all, every zone starts empty."""
        whole = snapshots.get(EVERY_ZONE)
        engines: dict[str, RulesEngine] = {}
        positions: dict[str, int] = {}
        new: list[str] = []
        for zone_id in site.zones:
            found = snapshots.get(zone_id, whole)
            part = zone_site(site, zone_id)
            if found is None:
                engines[zone_id] = RulesEngine(part)
                positions[zone_id] = 0
                new.append(zone_id)
            else:
                engines[zone_id] = RulesEngine.restore(part, found[1])
                positions[zone_id] = found[0]
        elder = next((z for z in engines if z not in new), None)
        if elder is not None:
            for zone_id in new:
                engines[zone_id].take_versions(engines[elder].waiting_versions())
                engines[zone_id].advance(engines[elder].clock)
                positions[zone_id] = positions[elder]
        # bays that changed zone in the site file since their zone was saved go to their zone
        for zone_id, (_pos, data) in snapshots.items():
            if zone_id == EVERY_ZONE:
                continue
            moved = [
                b for b in _bays_named(data) if b in site.bays and site.bays[b].zone_id != zone_id
            ]
            if moved:
                their = RulesEngine.restore(_bays_site(site, moved), data)
                for bay_id in moved:
                    move = their.release_bay(bay_id)
                    engines[site.bays[bay_id].zone_id].adopt_bay(move, schedule=True)
        # (zones saved at different positions have different clocks until recovery has
        # re-executed the journal after each and advanced them all to the last watermark)
        return cls(site, engines, positions)

    def _new_engine(self, zone_id: str) -> RulesEngine:
        """An engine for a zone the site gained: at the common clock, holding (fitted) the
        rights and suspensions waiting in the others, as if it had been there all along."""
        engine = RulesEngine(zone_site(self.site, zone_id))
        if self._engines:
            engine.take_versions(next(iter(self._engines.values())).waiting_versions())
        if self._clock > NEG_INF:
            engine.advance(self._clock)
        return engine

    @property
    def clock(self) -> Instant:
        """Everything due at or before this instant has been processed, in every zone."""
        return self._clock

    def _wanting(self, pos: int | None) -> Iterator[tuple[str, RulesEngine]]:
        """The engines that take a record at journal position ``pos`` (None: a live one)."""
        for zone_id, engine in self._engines.items():
            if pos is None or pos > self._positions.get(zone_id, 0):
                yield zone_id, engine

    # -- driving ---------------------------------------------------------------------------

    def apply(self, record: JournalRecord, pos: int | None = None) -> list[AlertChange]:
        if isinstance(record, OccupancyEvent):
            bay = self.site.bays.get(record.bay_id)
            if bay is None:  # a bay the site no longer has (re-executing an old journal)
                return []
            if pos is not None and pos <= self._positions.get(bay.zone_id, 0):
                return []
            return self._engines[bay.zone_id].apply(record)
        out: list[AlertChange] = []
        for _, engine in self._wanting(pos):
            fitted = fit_record(record, engine.site)
            if fitted is not None:
                out += engine.apply(fitted)
        return out

    def advance(self, now: Instant) -> list[AlertChange]:
        out: list[AlertChange] = []
        for engine in self._engines.values():
            changes = engine.advance(now)
            if changes:
                out += changes
        self._clock = max(self._clock, now)
        self._floor = max(self._floor, now)
        return out

    def advance_to(self, now: Instant) -> None:
        """Bring every zone whose clock is behind ``now`` up to it, dropping the changes (on
        recovery, where they were stored the first time)."""
        if now > self._floor:
            self.advance(now)

    def next_deadline(self) -> Instant | None:
        due = [d for e in self._engines.values() if (d := e.next_deadline()) is not None]
        return min(due, default=None)

    def acknowledge(self, alert_id: str, at: Instant, pos: int | None = None) -> list[AlertChange]:
        return [c for _, e in self._wanting(pos) for c in e.acknowledge(alert_id, at)]

    def resolve(self, alert_id: str, at: Instant, pos: int | None = None) -> list[AlertChange]:
        return [c for _, e in self._wanting(pos) for c in e.resolve(alert_id, at)]

    def cancel_right(self, right_id: str, at: Instant, pos: int | None = None) -> list[AlertChange]:
        return [c for _, e in self._wanting(pos) for c in e.cancel_right(right_id, at)]

    def replace_site(self, site: Site) -> list[AlertChange]:
        """A reloaded site: zones added start at the common clock, zones gone are forgotten,
        and a bay whose zone changed moves with its state to its new zone's engine."""
        old = self.site
        self.site = site
        for zone_id in site.zones:
            if zone_id not in self._engines:
                self._engines[zone_id] = self._new_engine(zone_id)
        for bay_id, bay in site.bays.items():
            before = old.bays.get(bay_id)
            if before is not None and before.zone_id != bay.zone_id:
                move = self._engines[before.zone_id].release_bay(bay_id)
                self._engines[bay.zone_id].adopt_bay(move)
        out: list[AlertChange] = []
        for zone_id in list(self._engines):
            if zone_id not in site.zones:
                del self._engines[zone_id]
                self._positions.pop(zone_id, None)
            else:
                out += self._engines[zone_id].replace_site(zone_site(site, zone_id))
        return out

    # -- saving ----------------------------------------------------------------------------

    def snapshots(self) -> dict[str, dict[str, Any]]:
        """Every zone's state, as JSON-able data."""
        return {zone_id: engine.snapshot() for zone_id, engine in self._engines.items()}

    def saved(self, pos: int) -> None:
        """The snapshots are stored: every zone's state reflects the journal up to ``pos``."""
        for zone_id in self._engines:
            self._positions[zone_id] = pos

    def oldest_position(self) -> int:
        """Journal records after this position are still needed to rebuild some zone."""
        return min(self._positions.values(), default=0)

    # -- looking inside --------------------------------------------------------------------

    def alert(self, alert_id: str) -> Alert | None:
        for engine in self._engines.values():
            found = engine.alert(alert_id)
            if found is not None:
                return found
        return None

    def engine(self, zone_id: str) -> RulesEngine:
        return self._engines[zone_id]
