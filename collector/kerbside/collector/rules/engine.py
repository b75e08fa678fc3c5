"""The rules engine (docs/rules.md): journal records in, alert changes out, no I/O.

Per bay the engine keeps only its occupancy, its rights and suspensions, and the alerts of the
current session. Each occupied bay has at most one live entry in a heap of deadlines: the next
instant at which something can happen to it (an alert falls due, a period or suspended run starts
or ends). Stale heap entries are recognised by a per-bay version number and skipped. Nothing
scans time minute by minute, and every deadline is an exact instant a live caller can schedule.

At one instant, records take effect first (in the order they were applied), then raises and
clears; that is how "a record at instant t takes effect at t" wins every tie.

A right or suspension with an id seen before replaces the earlier version because it came later
in the journal, not because of its time: a version waiting for a start later than the new one's
never takes effect. Replay, which applies records in time order, leaves such versions out
(``replaced_versions``).
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final

from kerbside.collector.records import (
    JournalRecord,
    OccupancyEvent,
    Right,
    Suspension,
    from_journal_dict,
    record_time,
    to_journal_dict,
)
from kerbside.collector.rules.alerts import (
    ACTIVE,
    KINDS,
    Alert,
    AlertChange,
    AlertKind,
    ChangeKind,
    make_alert_id,
)
from kerbside.collector.rules.bays import (
    AlertKey,
    BayState,
    Interval,
    SessionAlert,
    run_at,
    run_boundary,
)
from kerbside.collector.rules.schedule import MINUTE_MS, NEG_INF, POS_INF, Schedule, ScheduleBook
from kerbside.core.instants import Instant
from kerbside.core.site import Bay, Site

SNAPSHOT_VERSION: Final = 1
_PERIOD_KINDS: Final = frozenset({"overstay", "unpaid", "expired"})
_RIGHT_KINDS: Final = frozenset({"unpaid", "expired"})
_KIND_ORDER: Final = {
    kind: i for i, kind in enumerate(KINDS)
}  # raised in this order at one instant
# Zone rights are shared by many bays and are few: they are forgotten this long after ending.
_ZONE_RIGHT_KEEP_MS: Final = 60 * 86_400_000

Candidate = tuple[Instant, AlertKind, Instant, Instant]  # (due, kind, key, end of its P/run)
VersionId = tuple[str, str]  # ("right", right_id) or ("suspension", suspension_id)


class RulesEngine:
    """Sessions and enforcement alerts for one site (``docs/rules.md``). A live caller applies
    each record as it comes, advances the engine to ``now - alert_delay`` and wakes when
    ``next_deadline`` (plus that delay) comes: ``core.py`` and ``zones.py`` do."""

    def __init__(self, site: Site) -> None:
        self._bays: dict[str, BayState] = {}
        self._zone_rights: dict[str, dict[str, Interval]] = {}
        # right id -> (True, zone_id) or (False, bay_id); suspension id -> its bays
        self._right_home: dict[str, tuple[bool, str]] = {}
        self._suspension_home: dict[str, tuple[str, ...]] = {}
        self._alert_home: dict[str, tuple[str, AlertKey]] = {}
        # (time, phase, order, version, payload): phase 0 = queued record (order = arrival
        # sequence), phase 1 = a bay's wake (order = the bay's place in the site file).
        self._heap: list[tuple[Instant, int, int, int, Any]] = []
        # the versions of rights and suspensions waiting in the heap, by id: how many, and the
        # latest time one waits for (or later: one that left may have been it). A new version
        # looks for the others in the heap only if one may wait for a later time than its own.
        self._waiting: dict[VersionId, tuple[int, Instant]] = {}
        self._seq = 0
        self._clock: Instant = NEG_INF
        self._use_site(site)

    def _use_site(self, site: Site) -> None:
        self.site = site
        book = ScheduleBook(site.timezone, site.holidays)
        self._schedules: dict[str, Schedule] = {
            bay.id: book.get(bay.controlled_hours, bay.except_holidays)
            for bay in site.bays.values()
        }
        self._order = {bay_id: i for i, bay_id in enumerate(site.bays)}

    # -- driving the engine ---------------------------------------------------------------
    @property
    def clock(self) -> Instant:
        """Everything due at or before this instant has been processed."""
        return self._clock

    def apply(self, record: JournalRecord) -> list[AlertChange]:
        """Take a validated record. One whose time is after ``clock`` is queued and takes effect
        when the engine advances to its time; a late one takes effect at once and can only clear
        what was already raised."""
        time = record_time(record)
        if not isinstance(record, OccupancyEvent):
            self._drop_replaced(_version_id(record), time)
        if time > self._clock:
            self._seq += 1
            self._queue(time, self._seq, record)
            return []
        out: list[AlertChange] = []
        self._take(record, time, out, late=True)
        return out

    def advance(self, now: Instant) -> list[AlertChange]:
        """Process everything due at or before ``now``, in instant order."""
        out: list[AlertChange] = []
        heap = self._heap
        while heap and heap[0][0] <= now:
            time, phase, _order, version, payload = heapq.heappop(heap)
            if phase == 0:
                if not isinstance(payload, OccupancyEvent):
                    self._unwait(_version_id(payload))
                self._take(payload, time, out, late=False)
                continue
            state = self._bays.get(payload)
            if state is None or state.version != version:
                continue
            state.wake = None
            self._evaluate(payload, state, time, out)
        self._clock = max(self._clock, now)
        return out

    def next_deadline(self) -> Instant | None:
        """The earliest instant at which ``advance`` has something to do, or None."""
        heap = self._heap
        while heap:
            _time, phase, _order, version, payload = heap[0]
            if phase == 0:
                return heap[0][0]
            state = self._bays.get(payload)
            if state is not None and state.version == version:
                return heap[0][0]
            heapq.heappop(heap)
        return None

    # -- officers and providers -----------------------------------------------------------
    def acknowledge(self, alert_id: str, at: Instant) -> list[AlertChange]:
        found = self._find(alert_id)
        if found is None or found[1].status != "open":
            return []
        bay_id, alert, state = found
        alert.status = "acknowledged"
        return [self._change(bay_id, state, alert, "acknowledged", at)]

    def resolve(self, alert_id: str, at: Instant) -> list[AlertChange]:
        """An officer closes the alert: status ``resolved``, clear reason ``resolved``."""
        found = self._find(alert_id)
        if found is None or found[1].status not in ACTIVE:
            return []
        bay_id, alert, state = found
        alert.status, alert.cleared_at, alert.clear_reason = "resolved", at, "resolved"
        return [self._change(bay_id, state, alert, "resolved", at)]

    def cancel_right(self, right_id: str, at: Instant) -> list[AlertChange]:
        """The right stops covering at ``at`` (it is forgotten if ``at`` is not after its start)."""
        self._cancel_queued_right(right_id, at)
        home = self._right_home.get(right_id)
        rights = None if home is None else self._rights_at(*home)
        if home is None or rights is None or right_id not in rights:
            return []
        is_zone, target = home
        start, end = rights[right_id]
        if at <= start:
            del rights[right_id]
            del self._right_home[right_id]
        else:
            rights[right_id] = (start, min(end, at))
        for bay_id in self._bays_of(is_zone, target):
            state = self._bays.get(bay_id)
            if state is not None:
                self._recompute(bay_id, state, self._clock + 1)
        return []

    def _cancel_queued_right(self, right_id: str, at: Instant) -> None:
        """A right sent ahead of its start is cancelled (or cut short) before it takes effect."""
        if ("right", right_id) not in self._waiting:
            return
        kept = []
        changed = False
        for entry in self._heap:
            record = entry[4]
            if entry[1] == 0 and isinstance(record, Right) and record.right_id == right_id:
                changed = True
                if at <= record.start:
                    self._unwait(("right", right_id))
                    continue
                cut = Right(
                    record.right_id,
                    record.kind,
                    record.bay_id,
                    record.zone_id,
                    record.start,
                    min(record.end, at),
                )
                kept.append((entry[0], entry[1], entry[2], entry[3], cut))
            else:
                kept.append(entry)
        if changed:
            heapq.heapify(kept)
            self._heap = kept

    def replace_site(self, site: Site) -> list[AlertChange]:
        """Use a reloaded site file, keeping state. Bays that are gone are forgotten; open
        alerts whose period no longer holds end now (``restriction_ended``)."""
        self._use_site(site)
        out: list[AlertChange] = []
        for bay_id in [b for b in self._bays if b not in site.bays]:
            state = self._bays.pop(bay_id)
            for alert in (state.alerts or {}).values():
                self._alert_home.pop(alert.alert_id, None)
            for right_id in state.rights or {}:
                self._right_home.pop(right_id, None)
        for zone_id in [z for z in self._zone_rights if z not in site.zones]:
            for right_id in self._zone_rights.pop(zone_id):
                self._right_home.pop(right_id, None)
        now = self._clock + 1
        for bay_id, state in self._bays.items():
            for alert in (state.alerts or {}).values():
                if alert.status in ACTIVE and alert.kind in _PERIOD_KINDS:
                    start, end, controlled = self._schedules[bay_id].segment_at(
                        max(alert.raised_at, self._clock)
                    )
                    alert.end = end if controlled and start <= alert.raised_at else now
            self._settle(bay_id, state, now, out)
            state.wake = None
            state.version += 1
            self._recompute(bay_id, state, now)
        return out

    # -- saving and restoring -------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        """The engine's whole state as JSON-able data; ``restore`` carries on from it."""
        bays: dict[str, Any] = {}
        for bay_id, state in self._bays.items():
            bays[bay_id] = {
                "state": state.state,
                "since": state.since,
                "arrival": state.arrival,
                "rights": [[k, s, e] for k, (s, e) in (state.rights or {}).items()],
                "suspensions": [[k, s, e] for k, (s, e) in (state.suspensions or {}).items()],
                "alerts": [
                    [a.kind, a.key, a.raised_at, a.status, a.cleared_at, a.clear_reason, a.end]
                    for a in (state.alerts or {}).values()
                ],
            }
        return {
            "v": SNAPSHOT_VERSION,
            "clock": self._clock,
            "seq": self._seq,
            "bays": bays,
            "zone_rights": {
                zone: [[k, s, e] for k, (s, e) in rights.items()]
                for zone, rights in self._zone_rights.items()
            },
            "suspension_bays": {k: list(v) for k, v in self._suspension_home.items()},
            "queued": [
                [time, order, to_journal_dict(payload)]
                for time, phase, order, _version, payload in sorted(self._heap)
                if phase == 0
            ],
        }

    @classmethod
    def restore(cls, site: Site, snapshot: dict[str, Any]) -> RulesEngine:
        """An engine that carries on from ``snapshot``, keeping only what concerns ``site``'s
        bays and zones (bays no longer in it dropped; a snapshot of a larger site split)."""
        if snapshot.get("v") != SNAPSHOT_VERSION:
            raise ValueError(f"unknown rules snapshot version {snapshot.get('v')!r}")
        engine = cls(site)
        engine._clock = snapshot["clock"]
        engine._seq = snapshot["seq"]
        for bay_id, data in snapshot["bays"].items():
            if bay_id not in site.bays:
                continue
            state = engine._state(bay_id)
            state.state, state.since, state.arrival = data["state"], data["since"], data["arrival"]
            if data["rights"]:
                state.rights = {k: (s, e) for k, s, e in data["rights"]}
                for k, _s, _e in data["rights"]:
                    engine._right_home[k] = (False, bay_id)
            if data["suspensions"]:
                state.suspensions = {k: (s, e) for k, s, e in data["suspensions"]}
            if state.arrival is not None:
                state.alerts = {}
                for kind, key, raised_at, status, cleared_at, reason, end in data["alerts"]:
                    alert_id = make_alert_id(bay_id, kind, state.arrival, key)
                    state.alerts[(kind, key)] = SessionAlert(
                        alert_id,
                        kind,
                        key,
                        raised_at,
                        status=status,
                        cleared_at=cleared_at,
                        clear_reason=reason,
                        end=end,
                    )
                    engine._alert_home[alert_id] = (bay_id, (kind, key))
        for zone_id, rights in snapshot["zone_rights"].items():
            if zone_id in site.zones:
                engine._zone_rights[zone_id] = {k: (s, e) for k, s, e in rights}
                for k, _s, _e in rights:
                    engine._right_home[k] = (True, zone_id)
        for suspension_id, bay_ids in snapshot["suspension_bays"].items():
            kept = tuple(b for b in bay_ids if b in site.bays)
            if kept:
                engine._suspension_home[suspension_id] = kept
        queued = [
            (time, order, fitted)
            for time, order, record in snapshot["queued"]
            if (fitted := fit_record(from_journal_dict(record), site)) is not None
        ]
        # a snapshot written before replaced versions were dropped from the queue may hold some
        replaced = replaced_versions(queued)
        for time, order, record in queued:
            if isinstance(record, OccupancyEvent) or order not in replaced:
                engine._queue(time, order, record)
        for bay_id, state in engine._bays.items():
            engine._recompute(bay_id, state, engine._clock + 1)
        return engine

    # -- a bay changing zone (a site reload) ------------------------------------------------
    def release_bay(self, bay_id: str) -> BayMove:
        """Give up a bay that another engine takes over: its state and the records queued for
        it. Rights and suspensions queued for it stay here without it (every engine holds
        every right and suspension id, see ``fit_record``); ``adopt_bay`` puts it in the other
        engine's versions."""
        state = self._bays.pop(bay_id, None)
        if state is not None:
            for right_id in state.rights or {}:
                self._right_home.pop(right_id, None)
            for alert in (state.alerts or {}).values():
                self._alert_home.pop(alert.alert_id, None)
            for suspension_id in state.suspensions or {}:
                bays = tuple(b for b in self._suspension_home.get(suspension_id, ()) if b != bay_id)
                if bays:
                    self._suspension_home[suspension_id] = bays
                else:
                    self._suspension_home.pop(suspension_id, None)
        queued: list[tuple[Instant, JournalRecord]] = []
        kept = []
        # in the order they take effect, which ``adopt_bay`` keeps (a heap's list is not: a
        # vacant event queued after an occupied one of the same instant could go first)
        for entry in sorted(self._heap, key=lambda e: (e[0], e[1], e[2])):
            record = entry[4]
            if entry[1] != 0:
                kept.append(entry)
            elif isinstance(record, OccupancyEvent) and record.bay_id == bay_id:
                queued.append((entry[0], record))
            elif isinstance(record, Right) and record.bay_id == bay_id:
                queued.append((entry[0], record))
                gone = Right(record.right_id, record.kind, None, None, record.start, record.end)
                kept.append((entry[0], 0, entry[2], 0, gone))
            elif isinstance(record, Suspension) and bay_id in record.bay_ids:
                queued.append((entry[0], record))
                bays = tuple(b for b in record.bay_ids if b != bay_id)
                rest = Suspension(
                    record.suspension_id, bays, record.start, record.end, record.reason
                )
                kept.append((entry[0], 0, entry[2], 0, rest))
            else:
                kept.append(entry)
        heapq.heapify(kept)
        self._heap = kept
        return BayMove(bay_id, state, queued)

    def adopt_bay(self, move: BayMove, *, schedule: bool = False) -> None:
        """Take over a bay released by another engine. Its wake is scheduled with ``schedule``
        (the engine's site has the bay already), else by the ``replace_site`` that follows."""
        bay_id, state = move.bay_id, move.state
        if state is not None:
            self._bays[bay_id] = state
            for right_id in state.rights or {}:
                self._right_home[right_id] = (False, bay_id)
            for key, alert in (state.alerts or {}).items():
                self._alert_home[alert.alert_id] = (bay_id, key)
            for suspension_id in state.suspensions or {}:
                home = self._suspension_home.get(suspension_id, ())
                self._suspension_home[suspension_id] = (*home, bay_id)
        for time, record in move.queued:
            if isinstance(record, OccupancyEvent):
                self._seq += 1
                self._queue(time, self._seq, record)
                continue
            # this engine holds the same version without the bay: give it the bay (an engine
            # of a zone new with this site has none: the version comes as it is)
            for i, entry in enumerate(self._heap):
                mine = entry[4]
                if entry[1] == 0 and _same_version(mine, record):
                    self._heap[i] = (*entry[:4], _with_bay(mine, record, bay_id))
                    break
            else:
                self._seq += 1
                alone: JournalRecord = record
                if isinstance(record, Suspension):
                    alone = Suspension(
                        record.suspension_id, (bay_id,), record.start, record.end, record.reason
                    )
                self._queue(time, self._seq, alone)
        if schedule and state is not None:
            state.wake = None
            state.version += 1
            self._recompute(bay_id, state, self._clock + 1)

    def waiting_versions(self) -> list[tuple[Instant, int, JournalRecord]]:
        """Rights and suspensions waiting for their time, as (time, order, record): an engine
        started beside this one (a zone new with a site) takes them with ``take_versions``."""
        return sorted(
            (time, order, record)
            for time, phase, order, _version, record in self._heap
            if phase == 0 and isinstance(record, Right | Suspension)
        )

    def take_versions(self, entries: list[tuple[Instant, int, JournalRecord]]) -> None:
        for time, order, record in entries:
            fitted = fit_record(record, self.site)
            if fitted is not None:
                self._queue(time, order, fitted)
            self._seq = max(self._seq, order)

    # -- looking inside -------------------------------------------------------------------
    def alert(self, alert_id: str) -> Alert | None:
        found = self._find(alert_id)
        return None if found is None else self._public(found[0], found[2], found[1])

    def open_alerts(self) -> list[Alert]:
        """Active (open or acknowledged) alerts, by raise time."""
        found = [
            self._public(bay_id, state, alert)
            for bay_id, state in self._bays.items()
            for alert in (state.alerts or {}).values()
            if alert.status in ACTIVE
        ]
        return sorted(found, key=lambda a: (a.raised_at, a.bay_id, a.kind))

    def bay_state(self, bay_id: str) -> tuple[str, Instant | None]:
        """``(state, since)``; ``("unknown", None)`` before the bay's first event."""
        state = self._bays.get(bay_id)
        return ("unknown", None) if state is None else (state.state, state.since)

    def suspended(self, bay_id: str, at: Instant) -> bool:
        state = self._bays.get(bay_id)
        return state is not None and run_at(state, at) is not None

    # -- records --------------------------------------------------------------------------
    def _queue(self, time: Instant, order: int, record: JournalRecord) -> None:
        """Keep a record for when the engine reaches its time."""
        heapq.heappush(self._heap, (time, 0, order, 0, record))
        if not isinstance(record, OccupancyEvent):
            version = _version_id(record)
            count, latest = self._waiting.get(version, (0, time))
            self._waiting[version] = (count + 1, max(latest, time))

    def _unwait(self, version: VersionId) -> None:
        count, latest = self._waiting[version]
        if count > 1:
            self._waiting[version] = (count - 1, latest)
        else:
            del self._waiting[version]

    def _drop_replaced(self, version: VersionId, time: Instant) -> None:
        """A new version of a right or suspension, starting at ``time``, replaces the versions
        of its id that wait for a later start before they take effect: they never do."""
        waiting = self._waiting.get(version)
        if waiting is None or waiting[1] <= time:
            return
        kept = []
        for entry in self._heap:
            record = entry[4]
            if (
                entry[1] == 0
                and entry[0] > time
                and not isinstance(record, OccupancyEvent)
                and _version_id(record) == version
            ):
                self._unwait(version)
            else:
                kept.append(entry)
        if len(kept) < len(self._heap):
            heapq.heapify(kept)
            self._heap = kept

    def _take(
        self, record: JournalRecord, time: Instant, out: list[AlertChange], *, late: bool
    ) -> None:
        # Late records are judged from the instant after the clock: nothing due at or before it
        # can be raised any more.
        after = self._clock + 1 if late else time
        if isinstance(record, OccupancyEvent):
            self._take_occupancy(record, time, after, out, late=late)
        elif isinstance(record, Right):
            self._take_right(record, after, out, late=late)
        else:
            self._take_suspension(record, after, out, late=late)

    def _take_occupancy(
        self,
        event: OccupancyEvent,
        time: Instant,
        after: Instant,
        out: list[AlertChange],
        *,
        late: bool,
    ) -> None:
        bay_id = event.bay_id
        state = self._state(bay_id)
        if state.since is not None and time < state.since:
            return  # older than what the bay already knows: history is not rewritten
        if event.state == "occupied":
            if state.state == "occupied":
                return  # an occupied event while occupied changes nothing
            state.state, state.since, state.arrival, state.alerts = "occupied", time, time, {}
        else:
            if state.state == "occupied":
                reason = "vehicle_left" if event.state == "vacant" else "sensor_unknown"
                if reason == "sensor_unknown" and not late and self._vacant_queued(bay_id, time):
                    # The vehicle leaving beats the sensor going unknown at one instant, whatever
                    # the order the two events came in.
                    reason = "vehicle_left"
                self._end_session(bay_id, state, time, reason, out)
            state.state, state.since = event.state, time
        self._recompute(bay_id, state, after)

    def _vacant_queued(self, bay_id: str, time: Instant) -> bool:
        """Whether a vacant event of the bay waits to take effect at ``time`` (after the one in
        hand: those before it have been taken). Only the heap's entries at ``time`` are looked
        at: a parent is never later than its children, so a branch that starts later is left."""
        heap = self._heap
        size = len(heap)
        todo = [0]
        while todo:
            i = todo.pop()
            if i >= size:
                continue
            entry = heap[i]
            if entry[0] > time:
                continue
            record = entry[4]
            if (
                entry[0] == time
                and entry[1] == 0
                and isinstance(record, OccupancyEvent)
                and record.bay_id == bay_id
                and record.state == "vacant"
            ):
                return True
            todo += (2 * i + 1, 2 * i + 2)
        return False

    def _end_session(
        self, bay_id: str, state: BayState, time: Instant, reason: str, out: list[AlertChange]
    ) -> None:
        for alert in (state.alerts or {}).values():
            if alert.status in ACTIVE:
                self._clear(
                    bay_id,
                    state,
                    alert=alert,
                    at=max(time, alert.raised_at),
                    reason=reason,
                    out=out,
                )
            self._alert_home.pop(alert.alert_id, None)
        state.alerts, state.arrival = None, None

    def _take_right(
        self, right: Right, after: Instant, out: list[AlertChange], *, late: bool
    ) -> None:
        touched = self._forget_right(right.right_id)
        interval = (right.start, right.end)
        if right.bay_id is None and right.zone_id is None:
            pass  # the right now covers bays of another engine's: this one only forgets it
        elif right.zone_id is not None:
            self._zone_rights.setdefault(right.zone_id, {})[right.right_id] = interval
            self._right_home[right.right_id] = (True, right.zone_id)
            touched.extend(self._bays_of(True, right.zone_id))
            if not late:
                self._prune_zone_rights(right.zone_id, right.start)
        else:
            assert right.bay_id is not None
            home = self._state(right.bay_id)
            if home.rights is None:
                home.rights = {}
            home.rights[right.right_id] = interval
            self._right_home[right.right_id] = (False, right.bay_id)
            touched.append(right.bay_id)
        covers = set(self._bays_of(right.zone_id is not None, right.zone_id or right.bay_id or ""))
        for bay_id in dict.fromkeys(touched):
            found = self._bays.get(bay_id)
            if found is None or found.state != "occupied":
                continue
            state = found
            if not late:
                # Its clears happen at the bay's wake at this instant, after every record of the
                # instant, so that a departure at the same instant wins (clear precedence).
                self._recompute(bay_id, state, after, wake_now=True)
                continue
            if bay_id in covers:
                for alert in list((state.alerts or {}).values()):
                    if (
                        alert.kind in _RIGHT_KINDS
                        and alert.status in ACTIVE
                        and right.end > alert.raised_at
                    ):
                        at = max(right.start, alert.raised_at)
                        self._clear(
                            bay_id, state, alert=alert, at=at, reason="right_added", out=out
                        )
            self._recompute(bay_id, state, after)

    def _rights_at(self, is_zone: bool, target: str) -> dict[str, Interval] | None:
        if is_zone:
            return self._zone_rights.get(target)
        state = self._bays.get(target)
        return None if state is None else state.rights

    def _forget_right(self, right_id: str) -> list[str]:
        """Drop the earlier version of a right (replacement by id); the bays it concerned."""
        home = self._right_home.pop(right_id, None)
        if home is None:
            return []
        is_zone, target = home
        rights = self._rights_at(is_zone, target)
        if rights is not None:
            rights.pop(right_id, None)
        return list(self._bays_of(is_zone, target))

    def _prune_zone_rights(self, zone_id: str, now: Instant) -> None:
        rights = self._zone_rights[zone_id]
        for right_id, (_start, end) in list(rights.items()):
            if end <= now - _ZONE_RIGHT_KEEP_MS:
                del rights[right_id]
                self._right_home.pop(right_id, None)

    def _take_suspension(
        self, suspension: Suspension, after: Instant, out: list[AlertChange], *, late: bool
    ) -> None:
        touched: list[str] = []
        for bay_id in self._suspension_home.pop(suspension.suspension_id, ()):
            if bay_id not in self._bays:
                continue
            old = self._bays[bay_id].suspensions
            if old is not None:
                old.pop(suspension.suspension_id, None)
            touched.append(bay_id)
        for bay_id in suspension.bay_ids:
            state = self._state(bay_id)
            if state.suspensions is None:
                state.suspensions = {}
            state.suspensions[suspension.suspension_id] = (suspension.start, suspension.end)
            touched.append(bay_id)
        if suspension.bay_ids:
            self._suspension_home[suspension.suspension_id] = suspension.bay_ids
        for bay_id in dict.fromkeys(touched):
            state = self._bays[bay_id]
            if state.state == "occupied":
                if late:
                    self._settle(bay_id, state, after, out)
                self._recompute(bay_id, state, after, wake_now=not late)

    # -- the rules ------------------------------------------------------------------------
    def _evaluate(self, bay_id: str, state: BayState, now: Instant, out: list[AlertChange]) -> None:
        """A bay's wake at ``now``: clear what ended, raise what is due exactly now."""
        if state.state != "occupied":
            return
        self._settle(bay_id, state, now, out)
        bay = self.site.bays[bay_id]
        # An unpaid or expired alert is only ever active while no right covers the bay, so
        # cover now means a right started covering it now.
        if self._covered(bay, state, now):
            for alert in list((state.alerts or {}).values()):
                if alert.kind in _RIGHT_KINDS and alert.status in ACTIVE:
                    self._clear(bay_id, state, alert=alert, at=now, reason="right_added", out=out)
        candidates = self._candidates(bay_id, state, now)
        for due, kind, key, end in sorted(candidates, key=lambda c: _KIND_ORDER[c[1]]):
            if due == now:
                self._raise(bay_id, state, kind=kind, key=key, now=now, end=end, out=out)
        # What was due later than now still is; what ends a period or run at now + 1 is a
        # wake of its own, so the candidates need not be worked out again.
        self._recompute(bay_id, state, now + 1, candidates=candidates)

    def _settle(self, bay_id: str, state: BayState, now: Instant, out: list[AlertChange]) -> None:
        """Clear alerts whose period or suspended run ended at or before ``now``."""
        for alert in list((state.alerts or {}).values()):
            if alert.status not in ACTIVE:
                continue
            if alert.kind in _PERIOD_KINDS:
                if alert.end <= now:
                    self._clear(
                        bay_id,
                        state,
                        alert=alert,
                        at=alert.end,
                        reason="restriction_ended",
                        out=out,
                    )
                continue
            run = run_at(state, alert.raised_at)
            if run is None:  # its suspensions were replaced: the run is gone
                at = max(now, alert.raised_at)
                self._clear(bay_id, state, alert=alert, at=at, reason="suspension_ended", out=out)
            elif run[1] <= now:
                self._clear(
                    bay_id, state, alert=alert, at=run[1], reason="suspension_ended", out=out
                )

    def _candidates(self, bay_id: str, state: BayState, now: Instant) -> list[Candidate]:
        """Alerts that would be raised at some instant >= ``now`` if nothing else happened."""
        bay = self.site.bays[bay_id]
        arrival = state.arrival
        alerts = state.alerts
        assert arrival is not None
        assert alerts is not None
        found: list[Candidate] = []
        if bay.max_stay_minutes is not None or bay.needs_right:
            p_start, p_end, controlled = self._schedules[bay_id].segment_at(now)
            if controlled:
                s = max(arrival, p_start)
                grace = bay.grace_minutes * MINUTE_MS
                if bay.max_stay_minutes is not None and ("overstay", s) not in alerts:
                    due = s + bay.max_stay_minutes * MINUTE_MS + grace
                    if now <= due < p_end:
                        found.append((due, "overstay", s, p_end))
                if bay.needs_right:
                    due = s + bay.observation_minutes * MINUTE_MS
                    if (
                        ("unpaid", s) not in alerts
                        and now <= due < p_end
                        and not self._covered_during(bay, state, s, due)
                    ):
                        found.append((due, "unpaid", s, p_end))
                    for e in self._right_ends(bay, state):
                        due = e + grace
                        if (
                            e > s
                            and now <= due < p_end
                            and ("expired", e) not in alerts
                            and not self._covered(bay, state, e)
                            and not self._covered(bay, state, due)
                        ):
                            found.append((due, "expired", e, p_end))
        if state.suspensions:
            run = run_at(state, now)
            if run is not None:
                key = max(arrival, run[0])
                due = key + bay.observation_minutes * MINUTE_MS
                if now <= due < run[1] and not any(
                    a.kind == "suspended" and run[0] <= a.raised_at < run[1]
                    for a in alerts.values()
                ):
                    found.append((due, "suspended", key, run[1]))
        return found

    def _recompute(
        self,
        bay_id: str,
        state: BayState,
        now: Instant,
        *,
        wake_now: bool = False,
        candidates: list[Candidate] | None = None,
    ) -> None:
        """Schedule the bay's next wake: the first instant >= ``now`` something can happen
        (``now`` itself with ``wake_now``). ``candidates`` worked out at ``now - 1`` may be
        passed in."""
        self._prune(state, now)
        wake: Instant | None = None
        if state.state == "occupied":
            bay = self.site.bays[bay_id]
            if candidates is None:
                candidates = self._candidates(bay_id, state, now)
            times = [c[0] for c in candidates if c[0] >= now]
            if wake_now:
                times.append(now)
            if bay.max_stay_minutes is not None or bay.needs_right:
                times.append(self._schedules[bay_id].segment_at(now)[1])
            if state.suspensions:
                times.append(run_boundary(state, now))
            times.extend(
                alert.end
                for alert in (state.alerts or {}).values()
                if alert.status in ACTIVE and alert.kind in _PERIOD_KINDS
            )
            wake = min(times, default=POS_INF)
            if wake >= POS_INF:
                wake = None
        if wake == state.wake:
            return
        state.version += 1
        state.wake = wake
        if wake is not None:
            heapq.heappush(self._heap, (wake, 1, self._order[bay_id], state.version, bay_id))

    def _prune(self, state: BayState, now: Instant) -> None:
        """Forget rights and suspensions that ended before anything they could still matter to:
        the current session's arrival, or now for an empty bay."""
        horizon = state.arrival if state.arrival is not None else now
        if state.rights:
            for right_id, (_start, end) in list(state.rights.items()):
                if end <= horizon:
                    del state.rights[right_id]
                    self._right_home.pop(right_id, None)
        if state.suspensions:
            for suspension_id, (_start, end) in list(state.suspensions.items()):
                if end <= horizon:
                    del state.suspensions[suspension_id]
                    self._forget_suspension_if_unused(suspension_id)

    def _forget_suspension_if_unused(self, suspension_id: str) -> None:
        for bay_id in self._suspension_home.get(suspension_id, ()):
            state = self._bays.get(bay_id)
            if state is not None and state.suspensions and suspension_id in state.suspensions:
                return
        self._suspension_home.pop(suspension_id, None)

    def _raise(
        self,
        bay_id: str,
        state: BayState,
        *,
        kind: AlertKind,
        key: Instant,
        now: Instant,
        end: Instant,
        out: list[AlertChange],
    ) -> None:
        assert state.arrival is not None
        assert state.alerts is not None
        alert_id = make_alert_id(bay_id, kind, state.arrival, key)
        alert = SessionAlert(alert_id, kind, key, now, end=end)
        state.alerts[(kind, key)] = alert
        self._alert_home[alert_id] = (bay_id, (kind, key))
        out.append(self._change(bay_id, state, alert, "raised", now))

    def _clear(
        self,
        bay_id: str,
        state: BayState,
        *,
        alert: SessionAlert,
        at: Instant,
        reason: str,
        out: list[AlertChange],
    ) -> None:
        alert.status, alert.cleared_at, alert.clear_reason = "cleared", at, reason
        out.append(self._change(bay_id, state, alert, "cleared", at))

    # -- rights ---------------------------------------------------------------------------
    def _rights_of(self, bay: Bay, state: BayState) -> list[Interval]:
        rights = list(state.rights.values()) if state.rights else []
        zone_rights = self._zone_rights.get(bay.zone_id)
        if zone_rights:
            rights.extend(zone_rights.values())
        return rights

    def _covered(self, bay: Bay, state: BayState, at: Instant) -> bool:
        return any(start <= at < end for start, end in self._rights_of(bay, state))

    def _covered_during(self, bay: Bay, state: BayState, lo: Instant, hi: Instant) -> bool:
        """Whether a right covers the bay at any instant of the closed interval [lo, hi]."""
        return any(start <= hi and end > lo for start, end in self._rights_of(bay, state))

    def _right_ends(self, bay: Bay, state: BayState) -> set[Instant]:
        return {end for _start, end in self._rights_of(bay, state)}

    # -- helpers --------------------------------------------------------------------------
    def _state(self, bay_id: str) -> BayState:
        state = self._bays.get(bay_id)
        if state is None:
            state = self._bays[bay_id] = BayState()
        return state

    def _bays_of(self, is_zone: bool, target: str) -> list[str]:
        if is_zone:
            return [bay.id for bay in self.site.bays_of_zone(target)]
        return [target] if target in self.site.bays else []

    def _find(self, alert_id: str) -> tuple[str, SessionAlert, BayState] | None:
        home = self._alert_home.get(alert_id)
        if home is None:
            return None
        bay_id, key = home
        state = self._bays[bay_id]
        assert state.alerts is not None
        return bay_id, state.alerts[key], state

    def _public(self, bay_id: str, state: BayState, alert: SessionAlert) -> Alert:
        bay = self.site.bays[bay_id]
        assert state.arrival is not None
        return Alert(
            alert_id=alert.alert_id,
            kind=alert.kind,
            status=alert.status,
            bay_id=bay_id,
            zone_id=bay.zone_id,
            street=bay.street,
            location=bay.location,
            session_start=state.arrival,
            raised_at=alert.raised_at,
            cleared_at=alert.cleared_at,
            clear_reason=alert.clear_reason,
        )

    def _change(
        self, bay_id: str, state: BayState, alert: SessionAlert, change: ChangeKind, at: Instant
    ) -> AlertChange:
        return AlertChange(self._public(bay_id, state, alert), change, at)


def fit_record(record: JournalRecord, site: Site) -> JournalRecord | None:
    """The part of ``record`` an engine for ``site`` (a site or one zone of it) takes.

    An occupancy event of a bay it does not have: nothing. A right for another engine's bay or
    zone: the right with no target, which only forgets an earlier right of the same id. A
    suspension: restricted to the site's bays (with none, it only forgets an earlier one).
    Every engine sees every right and suspension id, so replacing one by id behaves as in a
    single engine whatever the zones of the old and new versions.
    """
    if isinstance(record, OccupancyEvent):
        return record if record.bay_id in site.bays else None
    if isinstance(record, Right):
        if (record.bay_id is not None and record.bay_id in site.bays) or (
            record.zone_id is not None and record.zone_id in site.zones
        ):
            return record
        if record.bay_id is None and record.zone_id is None:
            return record
        return Right(record.right_id, record.kind, None, None, record.start, record.end)
    bays = tuple(b for b in record.bay_ids if b in site.bays)
    if len(bays) == len(record.bay_ids):
        return record
    return Suspension(record.suspension_id, bays, record.start, record.end, record.reason)


def replaced_versions(accepted: Iterable[tuple[Instant, int, JournalRecord]]) -> set[int]:
    """The positions, among ``accepted`` records (time, position in the journal, record), of
    the versions of rights and suspensions that never take effect: a record later in the journal
    with the same id starts before them. An engine fed the journal in its order drops them from
    its queue when that record comes; one fed in time order must be spared them."""
    earliest: dict[VersionId, Instant] = {}
    replaced: set[int] = set()
    versions = [
        (position, time, _version_id(record))
        for time, position, record in accepted
        if not isinstance(record, OccupancyEvent)
    ]
    for position, time, version in sorted(versions, reverse=True):
        later = earliest.get(version)
        if later is not None and later < time:
            replaced.add(position)
        else:
            earliest[version] = time
    return replaced


def _version_id(record: Right | Suspension) -> VersionId:
    if isinstance(record, Right):
        return ("right", record.right_id)
    return ("suspension", record.suspension_id)


@dataclass(frozen=True)
class BayMove:
    """A bay leaving one engine for another (``release_bay``, ``adopt_bay``)."""

    bay_id: str
    state: BayState | None
    queued: list[tuple[Instant, JournalRecord]]  # records waiting for their time that name it


def _same_version(mine: object, theirs: JournalRecord) -> bool:
    if isinstance(mine, Right) and isinstance(theirs, Right):
        return (mine.right_id, mine.kind, mine.start, mine.end) == (
            theirs.right_id,
            theirs.kind,
            theirs.start,
            theirs.end,
        )
    if isinstance(mine, Suspension) and isinstance(theirs, Suspension):
        return (mine.suspension_id, mine.start, mine.end, mine.reason) == (
            theirs.suspension_id,
            theirs.start,
            theirs.end,
            theirs.reason,
        )
    return False


def _with_bay(mine: JournalRecord, theirs: JournalRecord, bay_id: str) -> JournalRecord:
    if isinstance(mine, Suspension):
        if bay_id in mine.bay_ids:
            return mine
        return Suspension(
            mine.suspension_id, (*mine.bay_ids, bay_id), mine.start, mine.end, mine.reason
        )
    return theirs  # a right: the version that names the bay
