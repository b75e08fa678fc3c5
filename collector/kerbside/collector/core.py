"""``CollectorCore``: the collector's decisions, without I/O and without a clock.

What the gateways say (a batch of MQTT messages), what time it is and what providers, the council
and officers ask for go in; ``Effects`` come out: the journal rows, bay and session rows, alert
changes, publications and time-series points they cause. The core owns the record validator,
the rules (an engine per zone, ``zones.py``), the maintenance alerts and the bay board. It never
reads the store: what it needs to know about earlier events (their digests, for de-duplication)
is handed to ``receive`` by the caller, who looked them up. ``cycle.py`` is the shell that writes
the effects and acts on them once they are committed; ``recovery.py`` builds a core from a store.

Live, events arrive backdated: the rules' clock runs ``alert_delay_ms`` behind ``now``. While the
broker hands over what it queued for us (``Flow.BACKLOG``), it stands still.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any, Literal, Protocol

from kerbside.collector.bayboard import BayBoard
from kerbside.collector.config import CollectorConfig
from kerbside.collector.effects import (
    AlertNote,
    AlertPoint,
    AlertWrite,
    Draft,
    Effects,
    GatewayPoint,
    GatewayRow,
    RightRow,
    SensorPoint,
    SensorRow,
    SessionStep,
    SuspensionRow,
)
from kerbside.collector.errors import CollectorError, RecordRejected
from kerbside.collector.gateway_payloads import check_health, check_status, deadletter_payload
from kerbside.collector.maintenance import KINDS as MAINTENANCE_KINDS
from kerbside.collector.maintenance import BayInfo, Maintenance
from kerbside.collector.records import (
    MAX_PAYLOAD_BYTES,
    OccupancyEvent,
    RecordValidator,
    Right,
    Suspension,
    decode_payload,
    from_journal_dict,
    to_journal_dict,
)
from kerbside.collector.rules import AlertChange
from kerbside.collector.store import JournalEntry, dumps
from kerbside.collector.zones import ZoneRules
from kerbside.core.instants import Instant, format_instant, parse_instant
from kerbside.core.site import Bay, Site

log = logging.getLogger(__name__)


class Flow(Enum):
    """Whether the rules' clock follows ``now``."""

    LIVE = "live"
    # the broker is away, or is handing over what it queued while we were down: those records
    # must come before the alerts, so the clock stands still and bay states wait
    BACKLOG = "backlog"


@dataclass(frozen=True, slots=True)
class CoreSettings:
    topic_root: str = "kerbside/v1"
    alert_delay_ms: int = 15_000
    offline_after_ms: int = 300_000
    low_battery_mv: int = 3300
    points: bool = False  # a time-series sink is configured: work out its points
    # False with several collectors: this core only journals the events it receives, and each
    # zone's owner runs the zone's rules on them (``follow``, ``cluster/``)
    rules_here: bool = True

    @classmethod
    def of(cls, config: CollectorConfig) -> CoreSettings:
        return cls(
            topic_root=config.mqtt.topic_root.rstrip("/"),
            alert_delay_ms=int(config.alert_delay_s * 1000),
            offline_after_ms=int(config.maintenance.gateway_offline_after_s * 1000),
            low_battery_mv=config.maintenance.low_battery_mv,
            points=config.influxdb is not None,
        )


class Received(Protocol):
    """A received MQTT message, as far as the core is concerned."""

    @property
    def topic(self) -> str: ...

    @property
    def payload(self) -> bytes: ...


@dataclass(frozen=True, slots=True)
class Intake:
    """A batch, read once: each event payload decoded, and the event ids to look up."""

    messages: Sequence[Received]
    decoded: dict[int, dict[str, Any]]  # message index -> its JSON object (events only)
    event_ids: list[str]


def read_batch(messages: Sequence[Received]) -> Intake:
    """Decode the batch's event payloads; what does not decode is rejected, with its reason, by
    ``CollectorCore.receive``."""
    decoded: dict[int, dict[str, Any]] = {}
    ids: list[str] = []
    for i, message in enumerate(messages):
        if not message.topic.endswith("/events") or len(message.payload) > MAX_PAYLOAD_BYTES:
            continue
        try:
            obj = decode_payload(message.payload)
        except Exception:  # noqa: BLE001, S112 (rejected, with its reason, when handled)
            continue
        decoded[i] = obj
        event_id = obj.get("event_id")
        if isinstance(event_id, str):
            ids.append(event_id)
    return Intake(messages, decoded, ids)


# -- commands (commands.py validates and looks up; the core acts) -----------------------------


@dataclass(frozen=True, slots=True)
class AddRight:
    right: Right
    owner: str | None = None  # the provider token's name (None: the council's journal file)


@dataclass(frozen=True, slots=True)
class AddSuspension:
    suspension: Suspension


@dataclass(frozen=True, slots=True)
class CancelRight:
    right_id: str
    body: dict[str, Any]  # the right as stored (journal shape)
    owner: str | None = None  # its owner, kept


@dataclass(frozen=True, slots=True)
class OfficerAction:
    alert_id: str
    action: Literal["ack", "resolve"]
    officer: str
    outcome: str | None
    note: str | None
    record: dict[str, Any]  # the alert as stored


Command = AddRight | AddSuspension | CancelRight | OfficerAction


class _BatchSeen:
    """The validator's memory of accepted event ids: those stored before the batch (looked up
    by the caller) and those accepted in it."""

    __slots__ = ("known", "pending")

    def __init__(self) -> None:
        self.known: Mapping[str, str] = {}
        self.pending: dict[str, str] = {}

    def fingerprint_of(self, event_id: str) -> str | None:
        return self.pending.get(event_id) or self.known.get(event_id)

    def remember(self, event_id: str, fingerprint: str) -> None:
        self.pending[event_id] = fingerprint


class CollectorCore:
    def __init__(
        self,
        site: Site,
        settings: CoreSettings,
        rules: ZoneRules,
        board: BayBoard,
        maintenance: Maintenance,
    ) -> None:
        self.settings = settings
        self._rules = rules
        self._board = board
        self._maintenance = maintenance
        self._seen = _BatchSeen()
        self._use_site(site)
        root = settings.topic_root
        self._topic_parts = len(root.split("/")) + 3  # {root}/gw/{id}/{kind}
        self._alert_topic = root + "/alerts/"
        self._deadletter_topic = root + "/deadletter"

    def _use_site(self, site: Site) -> None:
        self.site = site
        self._validator = RecordValidator(site, self._seen)
        # a gateway no longer in the site is not watched: its silence raises nothing
        self._maintenance.forget_gateways(lambda g: not site.bays_of_gateway(g))

    # -- looking inside (for the shell and tests) ---------------------------------------------

    @property
    def rules(self) -> ZoneRules:
        return self._rules

    @property
    def maintenance(self) -> Maintenance:
        return self._maintenance

    def next_wakeup(self) -> Instant | None:
        """When ``tick`` next has something to do (``now`` time)."""
        candidates = []
        due = self._rules.next_deadline()
        if due is not None:
            candidates.append(due + self.settings.alert_delay_ms)
        due = self._maintenance.next_deadline()
        if due is not None:
            candidates.append(due)
        return min(candidates, default=None)

    def snapshots(self) -> dict[str, dict[str, Any]]:
        """Each zone's rules, to be saved with the unit of work (``saved`` once stored)."""
        return self._rules.snapshots()

    def saved(self, pos: int) -> None:
        self._rules.saved(pos)

    # -- the gateways ---------------------------------------------------------------------------

    def receive(
        self, intake: Intake, known: Mapping[str, str], now: Instant, flow: Flow = Flow.LIVE
    ) -> Effects:
        """A batch of messages at ``now``; ``known`` maps the ids of ``intake.event_ids`` already
        stored to their digests."""
        draft = Draft()
        seen = self._seen
        seen.known, seen.pending = known, {}
        self._advance(now, draft, flow)
        if intake.messages:
            draft.count("messages_in", len(intake.messages))
        journaled = len(draft.journal)
        decoded = intake.decoded
        for i, message in enumerate(intake.messages):
            try:
                self._handle(message, now, decoded.get(i), draft, flow)
            except RecordRejected as exc:
                self._reject(message, exc.reason, draft)
            except Exception:
                log.exception("message on %s could not be processed", message.topic)
                self._reject(message, "internal_error", draft)
        accepted = len(draft.journal) - journaled  # only an accepted event is journaled
        if accepted:
            draft.count("events_in", accepted)
        self._advance(now, draft, flow)
        seen.known, seen.pending = {}, {}
        return draft.finish(self._rules.clock)

    def tick(self, now: Instant, flow: Flow = Flow.LIVE) -> Effects:
        """Time passed: raise and clear what fell due."""
        draft = Draft()
        self._advance(now, draft, flow)
        return draft.finish(self._rules.clock)

    def _advance(self, now: Instant, draft: Draft, flow: Flow) -> None:
        if flow is Flow.BACKLOG:
            return
        self._board.release(draft)
        target = now - self.settings.alert_delay_ms
        if target > self._rules.clock:
            self._alert_changes(self._rules.advance(target), draft)
        self._maintenance_changes(self._maintenance.advance(now), draft)

    def _reject(self, message: Received, reason: str, draft: Draft) -> None:
        draft.count("rejected." + reason)
        text = deadletter_payload(message.topic, reason, message.payload)
        draft.deadletters.append((self._deadletter_topic, text))

    def _handle(
        self,
        message: Received,
        now: Instant,
        obj: dict[str, Any] | None,
        draft: Draft,
        flow: Flow,
    ) -> None:
        topic = message.topic
        parts = topic.split("/")
        if len(parts) != self._topic_parts or parts[-3] != "gw":
            raise RecordRejected("schema", f"unexpected topic {topic}", "topic")
        gateway_id, kind = parts[-2], parts[-1]
        payload = message.payload
        if len(payload) > MAX_PAYLOAD_BYTES:
            raise RecordRejected("too_large", f"{len(payload)} bytes over {MAX_PAYLOAD_BYTES}")
        if not self.site.bays_of_gateway(gateway_id):
            # a gateway the site gives no bay (a retained last will of one taken out of service,
            # a gateway not yet added): nothing it says may raise or clear an alert
            raise RecordRejected("unknown_gateway", f"no bay of the site is on {gateway_id}")
        if kind == "events":
            if obj is None:
                obj = decode_payload(payload)
            checked = self._validator.examine_event(obj, gateway_id, received=now)
            if checked is None:
                draft.count("duplicates")
                return
            self._accept_event(*checked, draft, flow)
        elif kind == "status":
            self._gateway_status(gateway_id, check_status(payload, gateway_id), now, draft)
        elif kind == "health":
            self._gateway_health(gateway_id, check_health(payload, gateway_id), now, draft)
        else:
            raise RecordRejected("schema", f"unexpected topic {topic}", "topic")

    def _accept_event(self, ev: OccupancyEvent, digest: str, draft: Draft, flow: Flow) -> None:
        # Journaled and remembered last: an event whose handling fails half-way is rejected
        # (internal_error), and only accepted events' ids are remembered, so its corrected (or
        # same) retry is taken rather than refused as a repeat.
        watermark = self._rules.clock
        bay = self.site.bays.get(ev.bay_id)
        if self.settings.rules_here:
            self._take_event(ev, bay, draft, defer=flow is Flow.BACKLOG)
        text = dumps(to_journal_dict(ev))
        zone_id = None if bay is None else bay.zone_id
        draft.journal.append(("occupancy", ev.ts, watermark, text, ev.event_id, digest, zone_id))
        self._seen.remember(ev.event_id, digest)

    def _take_event(
        self, ev: OccupancyEvent, bay: Bay | None, draft: Draft, *, defer: bool
    ) -> None:
        """An accepted event's effects: the rules, the sensor's maintenance alerts, the board."""
        self._alert_changes(self._rules.apply(ev), draft)
        if bay is not None:
            self._maintenance_changes(
                self._maintenance.sensor_state(
                    # only an unknown state raises an alert that names the bay
                    ev.sensor_id,
                    _bay_info(bay) if ev.state == "unknown" else None,
                    ev.state,
                    ev.reason,
                    ev.ts,
                ),
                draft,
            )
            self._board.event(ev, bay, draft, defer=defer)

    def _gateway_status(
        self, gateway_id: str, status: dict[str, Any], now: Instant, draft: Draft
    ) -> None:
        online = bool(status["online"])
        draft.gateways.append(GatewayRow(gateway_id, online, now, status, None))
        self._maintenance_changes(self._maintenance.gateway_heard(gateway_id, now, online), draft)
        if self.settings.points:
            ts = parse_instant(status["ts"]) if online else now
            draft.points.append(GatewayPoint(gateway_id, online, None, ts))

    def _gateway_health(
        self, gateway_id: str, health: dict[str, Any], now: Instant, draft: Draft
    ) -> None:
        draft.gateways.append(GatewayRow(gateway_id, True, now, None, health))
        self._maintenance_changes(self._maintenance.gateway_heard(gateway_id, now, True), draft)
        ts = parse_instant(health["ts"])
        points = self.settings.points
        heard: set[str] = set()
        for sensor in health.get("sensors", []):
            sensor_id = sensor["sensor_id"]
            bay = self.site.bay_of_sensor.get(sensor_id)
            if bay is None or bay.gateway != gateway_id:
                # A gateway speaks for its own sensors only: one that reports others' (or
                # invented ones) must not raise or clear their alerts, nor fill the store.
                draft.count("foreign_sensor")
                continue
            if sensor_id in heard:
                continue  # the first entry of a sensor counts; repeats would flap its alert
            heard.add(sensor_id)
            bay_id = bay.id
            draft.sensors.append(SensorRow(sensor_id, gateway_id, bay_id, sensor))
            battery = sensor.get("battery_mv")
            if isinstance(battery, int):
                changes = self._maintenance.battery(sensor_id, _bay_info(bay), battery, ts)
                self._maintenance_changes(changes, draft)
            if points:
                draft.points.append(
                    SensorPoint(
                        sensor_id,
                        bay_id,
                        gateway_id,
                        ts,
                        sensor.get("battery_mv"),
                        sensor.get("temp_c"),
                        sensor.get("lost_frames"),
                        sensor.get("rssi"),
                    )
                )
        if points:
            draft.points.append(GatewayPoint(gateway_id, True, health.get("outbox_depth"), ts))

    # -- alerts ---------------------------------------------------------------------------------

    def _alert_changes(self, changes: list[AlertChange], draft: Draft) -> None:
        points = self.settings.points
        for change in changes:
            alert = change.alert
            record = alert.to_record()
            text = dumps(record)
            draft.alerts.append(AlertWrite(record, alert.raised_at, text))
            draft.alert_messages.append((self._alert_topic + alert.zone_id, text, False))
            if points:
                draft.points.append(AlertPoint(record))
                self._board.alert_changed(record)
            if change.change == "raised":
                draft.count("alerts." + alert.kind)
                draft.sessions.append((SessionStep.ALERT, alert.bay_id, alert.session_start, None))
                draft.raised.append(alert.raised_at)

    def _maintenance_changes(self, records: list[dict[str, Any]], draft: Draft) -> None:
        for record in records:
            text = dumps(record)
            draft.alerts.append(AlertWrite(record, parse_instant(record["raised_at"]), text))
            draft.alert_messages.append((self._alert_topic + "maintenance", text, False))
            if self.settings.points:
                draft.points.append(AlertPoint(record))
            if record["status"] == "open":
                draft.count("alerts." + record["kind"])

    # -- providers, the council and officers -------------------------------------------------

    def act(self, commands: Sequence[Command], now: Instant) -> Effects:
        """Commands, journaled and carried out (with several collectors, only journaled: the
        zones' owners carry them out as they follow the journal)."""
        draft = Draft()
        rules = self._rules
        here = self.settings.rules_here
        for command in commands:
            if isinstance(command, AddRight | AddSuspension):
                record: Right | Suspension
                if isinstance(command, AddRight):
                    record = command.right
                    body = to_journal_dict(record)
                    draft.rights.append(RightRow(record.right_id, body, False, command.owner))
                else:
                    record = command.suspension
                    body = to_journal_dict(record)
                    draft.suspensions.append(SuspensionRow(record.suspension_id, body))
                draft.journal.append(
                    (body["type"], record.start, rules.clock, dumps(body), None, None, None)
                )
                if here:
                    self._alert_changes(rules.apply(record), draft)
            elif isinstance(command, CancelRight):
                body = {"right_id": command.right_id, "at": now}
                draft.journal.append(
                    ("right_cancel", now, rules.clock, dumps(body), None, None, None)
                )
                draft.rights.append(RightRow(command.right_id, command.body, True, command.owner))
                if here:
                    self._alert_changes(rules.cancel_right(command.right_id, now), draft)
            else:
                self._officer(command, now, draft)
        return draft.finish(rules.clock)

    def _officer(self, command: OfficerAction, now: Instant, draft: Draft) -> None:
        entry = {
            "at": format_instant(now),
            "action": command.action,
            "officer": command.officer,
            "outcome": command.outcome,
            "note": command.note,
        }
        draft.notes.append(AlertNote(command.alert_id, entry))
        record = command.record
        rules = self._rules
        body = {"alert_id": command.alert_id, "at": now}
        if not self.settings.rules_here:
            # the alert's owner (its zone's, or the maintenance alerts') carries it out
            draft.journal.append((command.action, now, rules.clock, dumps(body), None, None, None))
            return
        if record["kind"] in MAINTENANCE_KINDS:
            status = "acknowledged" if command.action == "ack" else "resolved"
            new = {**record, "status": status}
            if status == "resolved":
                new.update(cleared_at=format_instant(now), clear_reason="resolved")
            self._maintenance.update(new)
            self._maintenance_changes([new], draft)
            return
        draft.journal.append((command.action, now, rules.clock, dumps(body), None, None, None))
        if command.action == "ack":
            self._alert_changes(rules.acknowledge(command.alert_id, now), draft)
        else:
            self._alert_changes(rules.resolve(command.alert_id, now), draft)

    def replace_site(self, site: Site) -> Effects:
        """A reloaded site file, keeping state (SIGHUP)."""
        draft = Draft()
        self._use_site(site)
        self._board.replace_site(site)
        self._alert_changes(self._rules.replace_site(site), draft)
        return draft.finish(self._rules.clock)

    # -- recovery ---------------------------------------------------------------------------

    def reexecute(self, entry: JournalEntry) -> None:
        """Apply a stored journal record again, under the watermark it first ran under (its
        effects were stored then; only the rules' state is rebuilt). Raises what an unreadable
        record makes it raise; recovery skips such a record."""
        rules = self._rules
        rules.advance_to(entry.watermark)
        body = entry.body
        pos = entry.pos
        kind = entry.type
        if kind == "occupancy":
            rules.apply(from_journal_dict(body), pos)
        elif kind == "right":
            rules.apply(self._validator.check_right(body), pos)
        elif kind == "suspension":
            rules.apply(self._validator.check_suspension(body), pos)
        elif kind == "right_cancel":
            rules.cancel_right(body["right_id"], int(body["at"]), pos)
        elif kind == "ack":
            rules.acknowledge(body["alert_id"], int(body["at"]), pos)
        elif kind == "resolve":
            rules.resolve(body["alert_id"], int(body["at"]), pos)

    # -- several collectors: a zone's owner follows the journal ------------------------------

    def follow(self, entries: Iterable[JournalEntry], quiet_through: int = 0) -> Effects:
        """Records the collectors stored, in journal order, run live: each moves the rules'
        clock to the watermark it was stored under (raising what fell due), then takes effect
        as it did for the collector that received it, with the same effects. Run on every
        collector's copy of a zone's records, it decides the same (a zone's new owner carries
        on exactly where the last one stopped). Records at or before ``quiet_through`` are only
        re-executed (``reexecute``): their effects are stored already. A record that cannot be
        read is skipped and logged."""
        draft = Draft()
        for entry in entries:
            try:
                if entry.pos <= quiet_through:
                    self.reexecute(entry)
                else:
                    self._follow(entry, draft)
            except (CollectorError, KeyError, TypeError, ValueError) as exc:
                log.error(  # noqa: TRY400 (one line per record, no trace)
                    "journal record %d (%s) cannot be read, skipped: %s", entry.pos, entry.type, exc
                )
        return draft.finish(self._rules.clock)

    def _follow(self, entry: JournalEntry, draft: Draft) -> None:
        rules = self._rules
        if entry.watermark > rules.clock:
            self._alert_changes(rules.advance(entry.watermark), draft)
        kind = entry.type
        if kind == "tick":  # the clock alone
            return
        body = entry.body
        if kind == "occupancy":
            event = from_journal_dict(body)
            if isinstance(event, OccupancyEvent):
                self._take_event(event, self.site.bays.get(event.bay_id), draft, defer=False)
        elif kind == "right":
            self._alert_changes(rules.apply(self._validator.check_right(body)), draft)
        elif kind == "suspension":
            self._alert_changes(rules.apply(self._validator.check_suspension(body)), draft)
        elif kind == "right_cancel":
            self._alert_changes(rules.cancel_right(body["right_id"], int(body["at"])), draft)
        elif kind in ("ack", "resolve"):
            alert_id, at = str(body["alert_id"]), int(body["at"])
            record = self._maintenance.alert(alert_id)
            if record is not None:
                status = "acknowledged" if kind == "ack" else "resolved"
                new = {**record, "status": status}
                if status == "resolved":
                    new.update(cleared_at=format_instant(at), clear_reason="resolved")
                self._maintenance.update(new)
                self._maintenance_changes([new], draft)
            elif kind == "ack":
                self._alert_changes(rules.acknowledge(alert_id, at), draft)
            else:
                self._alert_changes(rules.resolve(alert_id, at), draft)


def _bay_info(bay: Bay) -> BayInfo:
    location = None if bay.location is None else {"lat": bay.location.lat, "lon": bay.location.lon}
    return BayInfo(bay.id, bay.zone_id, bay.street, location)
