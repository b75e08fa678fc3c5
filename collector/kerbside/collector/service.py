"""``CollectorService``: the one object that owns the collector's state.

Everything runs on the collector's event loop: MQTT batches, the alert timer, and the HTTP API's
calls. Each change is one SQLite transaction (an ingest batch is one transaction), then the
broker acks, then the publications; the rules engine's state is saved with the journal position
it reflects, and on start the journal after that position is re-executed with the watermarks it
first ran under, so a restart (SIGKILL included) rebuilds exactly the state it had.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import json
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

from kerbside.collector.config import CollectorConfig
from kerbside.collector.gateway_stats import gateway_summaries
from kerbside.collector.ingest import Message, check_health, check_status
from kerbside.collector.maintenance import BayInfo, Maintenance
from kerbside.collector.publish import MAINTENANCE_KINDS, Publisher
from kerbside.collector.records import (
    OccupancyEvent,
    RecordValidator,
    Rejected,
    Right,
    Suspension,
    decode_payload,
    from_journal_dict,
    record_time,
    to_journal_dict,
)
from kerbside.collector.rules import AlertChange, RulesEngine
from kerbside.collector.store import Store, dumps
from kerbside.core.instants import format_instant, parse_instant
from kerbside.core.site import Bay, Site, SiteError, load_site

log = logging.getLogger(__name__)

MAX_PAYLOAD = 64 * 1024
# The engine is saved at most this often (wall seconds), and never more often than 50 times
# what the last save took: a save costs in proportion to the open sessions, and only bounds how
# much journal a restart re-executes.
SNAPSHOT_EVERY_S = 5.0
SNAPSHOT_COST_FACTOR = 50


class NotFound(Exception):  # noqa: N818 (the API maps it to 404)
    """No such alert, right or bay."""


class RecordRejected(Exception):  # noqa: N818 (the API maps it to 4xx)
    """A record the service will not take; ``field`` names the offending field."""

    def __init__(self, reason: str, field: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.field = field


def wall_ms() -> int:
    return int(time.time() * 1000)


class StoreSeenEvents:
    """The validator's memory of accepted event ids, backed by the store (and the batch not
    yet written)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.pending: dict[str, str] = {}
        # a batch's ids looked up in one query before it is validated: ``looked_up`` holds the
        # ids asked about, ``stored`` the digests of those found
        self.looked_up: set[str] = set()
        self.stored: dict[str, str] = {}

    def prefetch(self, event_ids: list[str]) -> None:
        self.looked_up = set(event_ids)
        self.stored = self.store.event_digests(event_ids)

    def forget_prefetch(self) -> None:
        self.looked_up = set()
        self.stored = {}

    def fingerprint_of(self, event_id: str) -> str | None:
        pending = self.pending.get(event_id)
        if pending is not None:
            return pending
        if event_id in self.looked_up:  # stored before the batch, or accepted in it
            return self.stored.get(event_id) or self.store.pending_digest(event_id)
        return self.store.event_digest(event_id)

    def remember(self, event_id: str, fingerprint: str) -> None:
        self.pending[event_id] = fingerprint


class _BayNow:
    __slots__ = ("gateway_id", "session_start", "since", "state")

    def __init__(
        self, state: str, since: int, gateway_id: str | None, session_start: int | None
    ) -> None:
        self.state = state
        self.since = since
        self.gateway_id = gateway_id
        self.session_start = session_start


class CollectorService:
    def __init__(
        self,
        config: CollectorConfig,
        site: Site,
        store: Store,
        *,
        clock: Callable[[], int] = wall_ms,
        clock_speed: float = 1.0,
        sink: Any = None,
    ) -> None:
        self.config = config
        self.site = site
        self.store = store
        self.clock = clock
        self.clock_speed = clock_speed  # event-clock ms per wall ms (tests run time faster)
        # While True the engine's clock stands still: the broker is away, or is still handing
        # us what it queued while we were down (those records must come before the alerts).
        self._holding = False
        self.sink = sink
        self.delay_ms = int(config.alert_delay_s * 1000)
        self.seen = StoreSeenEvents(store)
        self.validator = RecordValidator(site, self.seen)
        self.publisher = Publisher(store, config.mqtt.topic_root)
        self._topic_parts = len(self.publisher.root.split("/")) + 3  # {root}/gw/{id}/{kind}
        self.link: Any = None
        self.counters: collections.Counter[str] = collections.Counter()
        self._counter_delta: collections.Counter[str] = collections.Counter()
        for name, value in store.counters().items():
            self.counters[name] = value
        self._latency: list[float] = []
        self._latency_sum = 0.0
        self._latency_count = 0
        self._sink_calls: list[Callable[[], None]] = []
        self._ring: collections.deque[tuple[int, dict[str, Any]]] = collections.deque(maxlen=2000)
        self._alert_changed: asyncio.Event | None = None
        self._last_change = store.last_alert_change()
        self._alerts_moved = False
        self._bays: dict[str, _BayNow] = {b: _BayNow(*row) for b, row in store.bays().items()}
        self._timer: asyncio.TimerHandle | None = None
        self._wake: Callable[[], None] | None = None
        # the first save waits like the others: recovery has just rebuilt the engine, and a
        # backlog drained after a restart should not start with the cost of a save
        self._next_snapshot = time.monotonic() + SNAPSHOT_EVERY_S
        self.site_loader: Callable[[], Site] = lambda: load_site(config.site)
        self._snapshot_pos = 0
        self.engine = self._recover_engine()
        now = clock()
        # When each bay came into being: occupancy counts no time before it (docs/analysts.md).
        store.note_bays(site.bays, now)
        self.bay_origins: dict[str, int] = store.bay_origins(site.bays)
        gateways = {g: (online, max(seen, now)) for g, (online, seen) in store.gateways().items()}
        self.maintenance = Maintenance(
            int(config.maintenance.gateway_offline_after_s * 1000),
            config.maintenance.low_battery_mv,
            store.alerts(status="open", kinds=MAINTENANCE_KINDS, limit=1_000_000)
            + store.alerts(status="acknowledged", kinds=MAINTENANCE_KINDS, limit=1_000_000),
            gateways,
        )
        if config.journal_file is not None:
            self._load_journal_file(config.journal_file)

    @property
    def holding(self) -> bool:
        return self._holding

    @holding.setter
    def holding(self, value: bool) -> None:
        self._holding = value
        if value:
            self.publisher.deferring = True

    # -- recovery ----------------------------------------------------------------------------

    def _recover_engine(self) -> RulesEngine:
        snapshot = self.store.get_kv("engine")
        if snapshot is None:
            engine = RulesEngine(self.site)
        else:
            engine = RulesEngine.restore(self.site, json.loads(snapshot))
        self._snapshot_pos = int(self.store.get_kv("engine_pos") or 0)
        replayed = 0
        for entry in self.store.journal(after_pos=self._snapshot_pos):
            if entry.watermark > engine.clock:
                engine.advance(entry.watermark)
            self._reexecute(engine, entry.type, entry.body)
            replayed += 1
        watermark = int(self.store.get_kv("watermark") or 0)
        if watermark > engine.clock:
            engine.advance(watermark)
        log.info("rules engine recovered: %d journal records after the snapshot", replayed)
        return engine

    def _reexecute(self, engine: RulesEngine, type_: str, body: dict[str, Any]) -> None:
        if type_ == "occupancy":
            engine.apply(from_journal_dict(body))
        elif type_ == "right":
            engine.apply(self.validator.check_right(body))
        elif type_ == "suspension":
            engine.apply(self.validator.check_suspension(body))
        elif type_ == "right_cancel":
            engine.cancel_right(body["right_id"], body["at"])
        elif type_ == "ack":
            engine.acknowledge(body["alert_id"], body["at"])
        elif type_ == "resolve":
            engine.resolve(body["alert_id"], body["at"])

    def _load_journal_file(self, path: Any) -> None:
        """Rights and suspensions from a journal file (before the API takes over)."""
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            log.error("journal_file %s: %s", path, exc)  # noqa: TRY400 (one line, no trace)
            return
        records: list[Right | Suspension] = []
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                rec = self.validator.check_journal_line(line)
            except Rejected as exc:
                log.warning("journal_file %s:%d rejected: %s", path, number, exc)
                continue
            if isinstance(rec, Right | Suspension):
                records.append(rec)
        with self._commit():
            for rec in records:
                self._accept_record(rec, skip_same=True)

    # -- the commit cycle --------------------------------------------------------------------

    def _commit(self) -> _Commit:
        return _Commit(self)

    def _after_commit(self) -> None:
        self.publisher.send()
        calls, self._sink_calls = self._sink_calls, []
        for call in calls:
            try:
                call()
            except Exception:
                log.exception("time series sink failed")
        if self._alerts_moved:
            self._alerts_moved = False
            if self._alert_changed is not None:
                self._alert_changed.set()
        self._rearm()

    def _before_commit(self, now: int) -> None:
        self.publisher.stage()
        if self._counter_delta:
            self.store.add_counters(dict(self._counter_delta))
            self._counter_delta.clear()
        self.store.put_kv("watermark", str(self.engine.clock))
        if time.monotonic() >= self._next_snapshot:
            self._save_snapshot(now)

    def _save_snapshot(self, now: int) -> None:
        began = time.monotonic()
        self.store.put_kv("engine", dumps(self.engine.snapshot()))
        self._snapshot_pos = self.store.last_journal_pos()
        self.store.put_kv("engine_pos", str(self._snapshot_pos))
        took = time.monotonic() - began
        self._next_snapshot = time.monotonic() + max(SNAPSHOT_EVERY_S, SNAPSHOT_COST_FACTOR * took)

    def snapshot_pos(self) -> int:
        """Journal entries after this position are still needed to rebuild the engine."""
        return self._snapshot_pos

    def _count(self, name: str, by: int = 1) -> None:
        self.counters[name] += by
        self._counter_delta[name] += by

    def _advance(self, now: int) -> None:
        if self.holding:
            return
        if self.publisher.deferring:
            self.publisher.release()
        target = now - self.delay_ms
        if target > self.engine.clock:
            self._record_changes(self.engine.advance(target), now)
        self._record_maintenance(self.maintenance.advance(now))

    # -- ingest ------------------------------------------------------------------------------

    def process_batch(self, messages: Iterable[Message]) -> None:
        """Validate, apply and store a batch in one transaction, then ack and publish."""
        batch = list(messages)
        due = self.next_wakeup()
        if batch and due is not None and due <= self.clock():
            # alerts are due: raise and publish them before a batch that may take a while
            self.tick()
        with self._commit() as now:
            self._advance(now)
            decoded = self._prefetch(batch)
            for i, message in enumerate(batch):
                try:
                    self._handle(message, now, decoded.get(i))
                except Rejected as exc:
                    self._reject(message, exc.reason)
                except Exception:
                    log.exception("message on %s could not be processed", message.topic)
                    self._reject(message, "internal_error")
            self._advance(now)
            self.seen.forget_prefetch()
        if self.link is not None:
            for message in batch:
                self.link.ack(message)

    def tick(self) -> None:
        """The alert timer fired (or a wake-up without messages)."""
        if self.holding:
            return
        with self._commit() as now:
            self._advance(now)

    def _reject(self, message: Message, reason: str) -> None:
        self._count(f"rejected.{reason}")
        self.publisher.deadletter(message.topic, reason, message.payload)

    def _prefetch(self, batch: list[Message]) -> dict[int, dict[str, Any]]:
        """Decode the batch's event payloads once and look their ids up in one query; what
        does not decode is left to ``_handle`` to reject."""
        decoded: dict[int, dict[str, Any]] = {}
        ids: list[str] = []
        for i, message in enumerate(batch):
            if not message.topic.endswith("/events") or len(message.payload) > MAX_PAYLOAD:
                continue
            try:
                obj = decode_payload(message.payload)
            except Exception:  # noqa: BLE001, S112 (rejected, with its reason, by _handle)
                continue
            decoded[i] = obj
            event_id = obj.get("event_id")
            if isinstance(event_id, str):
                ids.append(event_id)
        if ids:
            self.seen.prefetch(ids)
        return decoded

    def _handle(self, message: Message, now: int, obj: dict[str, Any] | None = None) -> None:
        self._count("messages_in")
        parts = message.topic.split("/")
        if len(parts) != self._topic_parts or parts[-3] != "gw":
            raise Rejected("schema", f"unexpected topic {message.topic}", "topic")
        gateway_id, kind = parts[-2], parts[-1]
        if len(message.payload) > MAX_PAYLOAD:
            raise Rejected("too_large", f"{len(message.payload)} bytes over {MAX_PAYLOAD}")
        if kind == "events":
            if obj is not None:
                event = self.validator.check_event_obj(obj, gateway_id)
            else:
                event = self.validator.check_event(message.payload, gateway_id)
            if event is None:
                self._count("duplicates")
                return
            self._accept_record(event)
            self._count("events_in")
        elif kind == "status":
            status = check_status(message.payload, gateway_id)
            self._gateway_status(gateway_id, status, now)
        elif kind == "health":
            health = check_health(message.payload, gateway_id)
            self._gateway_health(gateway_id, health, now)
        else:
            raise Rejected("schema", f"unexpected topic {message.topic}", "topic")

    def _accept_record(
        self, rec: OccupancyEvent | Right | Suspension, skip_same: bool = False
    ) -> None:
        body = to_journal_dict(rec)
        if isinstance(rec, Right):
            existing = self.store.right(rec.right_id)
            if skip_same and existing is not None and existing[0] == body:
                return
            self.store.put_right(rec.right_id, body)
        elif isinstance(rec, Suspension):
            if skip_same and rec.suspension_id in {
                s["suspension_id"] for s in self.store.suspensions()
            }:
                return
            self.store.put_suspension(rec.suspension_id, body)
        pos = self.store.append_journal(body["type"], record_time(rec), self.engine.clock, body)
        if isinstance(rec, OccupancyEvent):
            digest = self.seen.pending.pop(rec.event_id, None)
            if digest is not None:
                self.store.add_event(rec.event_id, pos, digest)
        self._record_changes(self.engine.apply(rec), self.clock())
        if isinstance(rec, OccupancyEvent):
            self._bay_event(rec)

    # -- bays, sessions ----------------------------------------------------------------------

    def _bay_event(self, ev: OccupancyEvent) -> None:
        bay = self.site.bays.get(ev.bay_id)
        if bay is None:
            return
        self._record_maintenance(
            self.maintenance.sensor_state(
                # only an unknown state raises an alert that names the bay
                ev.sensor_id,
                _bay_info(bay) if ev.state == "unknown" else None,
                ev.state,
                ev.reason,
                ev.ts,
            )
        )
        cur = self._bays.get(ev.bay_id)
        if cur is not None and ev.ts < cur.since:
            return  # older than what we already know: history only
        if cur is not None and cur.state == ev.state:
            return
        session_start = None
        if ev.state == "occupied":
            session_start = ev.ts
            self.store.open_session(ev.bay_id, ev.ts)
        elif cur is not None and cur.state == "occupied" and cur.session_start is not None:
            self._close_session(bay, cur.session_start, ev.ts)
        self._bays[ev.bay_id] = _BayNow(ev.state, ev.ts, ev.gateway_id, session_start)
        self.store.set_bay(ev.bay_id, ev.state, ev.ts, ev.gateway_id, session_start)
        self.store.add_state_change(ev.bay_id, ev.ts, ev.state)
        self.publisher.bay(
            ev.bay_id,
            {
                "v": 1,
                "bay_id": ev.bay_id,
                "zone_id": bay.zone_id,
                "state": ev.state,
                "since": format_instant(ev.ts),
                "gateway_id": ev.gateway_id,
            },
        )
        if self.sink is not None:
            sink = self.sink
            self._sink_calls.append(lambda: sink.bay_state(bay, ev.state, ev.ts, ev.gateway_id))

    def _close_session(self, bay: Bay, start: int, end: int) -> None:
        self.store.close_session(bay.id, start, end)
        if self.sink is None:
            return
        from kerbside.collector.timeseries import session_figures  # noqa: PLC0415 (optional)

        start_iso = format_instant(start)
        records = [
            r
            for r in self.store.alerts(bay_id=bay.id, limit=10_000, after=(start - 1, ""))
            if r.get("session_start") == start_iso
        ]
        overstay_s, alerts = session_figures(records, end)
        sink = self.sink
        self._sink_calls.append(lambda: sink.session_closed(bay, start, end, overstay_s, alerts))

    # -- gateways ----------------------------------------------------------------------------

    def _gateway_status(self, gateway_id: str, status: dict[str, Any], now: int) -> None:
        online = bool(status["online"])
        self.store.put_gateway(gateway_id, online, now, status=status)
        self._record_maintenance(self.maintenance.gateway_heard(gateway_id, now, online))
        if self.sink is not None:
            sink = self.sink
            ts = parse_instant(status["ts"]) if online else now
            self._sink_calls.append(lambda: sink.gateway(gateway_id, online, None, ts))

    def _gateway_health(self, gateway_id: str, health: dict[str, Any], now: int) -> None:
        self.store.put_gateway(gateway_id, True, now, health=health)
        self._record_maintenance(self.maintenance.gateway_heard(gateway_id, now, True))
        ts = parse_instant(health["ts"])
        sink = self.sink
        for sensor in health.get("sensors", []):
            sensor_id = sensor["sensor_id"]
            bay = self.site.bay_of_sensor.get(sensor_id)
            bay_id = bay.id if bay is not None else sensor.get("bay_id")
            self.store.put_sensor(sensor_id, gateway_id, bay_id, sensor)
            battery = sensor.get("battery_mv")
            if isinstance(battery, int):
                info = _bay_info(bay) if bay is not None else None
                self._record_maintenance(self.maintenance.battery(sensor_id, info, battery, ts))
            if sink is not None:
                args = (
                    sensor_id,
                    bay_id,
                    gateway_id,
                    ts,
                    sensor.get("battery_mv"),
                    sensor.get("temp_c"),
                    sensor.get("lost_frames"),
                    sensor.get("rssi"),
                )
                self._sink_calls.append(functools.partial(sink.sensor_health, *args))
        if sink is not None:
            depth = health.get("outbox_depth")
            self._sink_calls.append(lambda: sink.gateway(gateway_id, True, depth, ts))

    # -- alerts ------------------------------------------------------------------------------

    def _record_changes(self, changes: list[AlertChange], now: int) -> None:
        for change in changes:
            record = change.alert.to_record()
            self._store_alert(record, change.alert.raised_at)
            if change.change == "raised":
                self._count(f"alerts.{record['kind']}")
                if change.alert.session_start is not None:
                    self.store.count_session_alert(record["bay_id"], change.alert.session_start)
                late = (now - change.alert.raised_at - self.delay_ms) / 1000
                self._latency_count += 1
                self._latency_sum += max(late, 0.0)
                self._latency.append(late)
                if len(self._latency) > 10_000:
                    del self._latency[: len(self._latency) - 10_000]

    def _record_maintenance(self, records: list[dict[str, Any]]) -> None:
        for record in records:
            self._store_alert(record, parse_instant(record["raised_at"]))
            if record["status"] == "open":
                self._count(f"alerts.{record['kind']}")

    def _store_alert(self, record: dict[str, Any], raised_at: int) -> None:
        text = dumps(record)
        change_id = self.store.put_alert(record, raised_at, text)
        self._last_change = change_id
        self._alerts_moved = True
        self._ring.append((change_id, record))
        self.publisher.alert(record, text)
        if self.sink is not None:
            sink = self.sink
            self._sink_calls.append(lambda: sink.alert(record))

    # -- the timer ---------------------------------------------------------------------------

    def set_waker(self, wake: Callable[[], None]) -> None:
        """The runtime's way to run ``tick`` (through the batcher, so it joins a batch)."""
        self._wake = wake

    def next_wakeup(self) -> int | None:
        candidates = []
        engine_next = self.engine.next_deadline()
        if engine_next is not None:
            candidates.append(engine_next + self.delay_ms)
        maintenance_next = self.maintenance.next_deadline()
        if maintenance_next is not None:
            candidates.append(maintenance_next)
        return min(candidates) if candidates else None

    def _rearm(self) -> None:
        if self._wake is None or self.holding:
            return  # while holding, the runtime ticks when it lets go
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        due = self.next_wakeup()
        if due is None:
            return
        delay = max(0.0, (due - self.clock()) / 1000 / self.clock_speed)
        self._timer = loop.call_later(delay, self._wake)

    # -- site reload -------------------------------------------------------------------------

    def reload_site(self) -> bool:
        try:
            site = self.site_loader()
        except SiteError as exc:
            log.error("site reload refused, keeping the old site: %s", "; ".join(exc.errors))  # noqa: TRY400
            return False
        except Exception:
            log.exception("site reload refused, keeping the old site")
            return False
        with self._commit() as now:
            self.site = site
            self.validator = RecordValidator(site, self.seen)
            self._record_changes(self.engine.replace_site(site), now)
            self._save_snapshot(now)
            self.store.note_bays(site.bays, now)
        self.bay_origins = self.store.bay_origins(site.bays)
        log.info("site reloaded: %d zones, %d bays", len(site.zones), len(site.bays))
        return True

    def save_state(self) -> None:
        """A clean stop: save the engine so the next start re-executes nothing."""
        with self._commit() as now:
            self._save_snapshot(now)

    # -- what the API calls: writes ------------------------------------------------------------

    def _checked(self, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except Rejected as exc:
            raise RecordRejected(exc.detail, exc.field) from exc

    async def post_right(self, body: dict[str, Any]) -> dict[str, Any]:
        rec: Right = self._checked(lambda: self.validator.check_right(body))
        with self._commit():
            self._accept_record(rec)
        return to_journal_dict(rec)

    async def delete_right(self, right_id: str) -> dict[str, Any]:
        existing = self.store.right(right_id)
        if existing is None or existing[1]:
            raise NotFound(f"no right {right_id}")
        with self._commit() as now:
            body = {"right_id": right_id, "at": now}
            self.store.append_journal("right_cancel", now, self.engine.clock, body)
            self.store.put_right(right_id, existing[0], deleted=True)
            self._record_changes(self.engine.cancel_right(right_id, now), now)
        return existing[0]

    async def post_suspension(self, body: dict[str, Any]) -> dict[str, Any]:
        rec: Suspension = self._checked(lambda: self.validator.check_suspension(body))
        with self._commit():
            self._accept_record(rec)
        return to_journal_dict(rec)

    async def ack_alert(
        self, alert_id: str, officer: str, outcome: str | None = None, note: str | None = None
    ) -> dict[str, Any]:
        return self._officer("ack", alert_id, officer, outcome, note)

    async def resolve_alert(
        self, alert_id: str, officer: str, outcome: str | None = None, note: str | None = None
    ) -> dict[str, Any]:
        return self._officer("resolve", alert_id, officer, outcome, note)

    def _officer(
        self, action: str, alert_id: str, officer: str, outcome: str | None, note: str | None
    ) -> dict[str, Any]:
        record = self.store.alert(alert_id)
        if record is None:
            raise NotFound(f"no alert {alert_id}")
        if record["status"] in ("cleared", "resolved"):
            raise RecordRejected(f"alert is {record['status']}", "alert_id")
        with self._commit() as now:
            entry = {
                "at": format_instant(now),
                "action": action,
                "officer": officer,
                "outcome": outcome,
                "note": note,
            }
            self.store.add_alert_history(alert_id, entry)
            if record["kind"] in MAINTENANCE_KINDS:
                status = "acknowledged" if action == "ack" else "resolved"
                new = {**record, "status": status}
                if status == "resolved":
                    new.update(cleared_at=format_instant(now), clear_reason="resolved")
                self.maintenance.update(new)
                self._record_maintenance([new])
            else:
                body = {"alert_id": alert_id, "at": now}
                self.store.append_journal(action, now, self.engine.clock, body)
                fn = self.engine.acknowledge if action == "ack" else self.engine.resolve
                self._record_changes(fn(alert_id, now), now)
        found = self.alert(alert_id)
        assert found is not None
        return found

    # -- what the API calls: reads -------------------------------------------------------------

    def _bay_dict(self, bay: Bay) -> dict[str, Any]:
        cur = self._bays.get(bay.id)
        return {
            "bay_id": bay.id,
            "zone_id": bay.zone_id,
            "street": bay.street,
            "kind": bay.kind,
            "location": None
            if bay.location is None
            else {"lat": bay.location.lat, "lon": bay.location.lon},
            "state": "unknown" if cur is None else cur.state,
            "since": None if cur is None else format_instant(cur.since),
            "gateway_id": bay.gateway if cur is None else cur.gateway_id,
        }

    def bays(
        self, zone_id: str | None = None, limit: int = 100, cursor: str | None = None
    ) -> tuple[list[dict[str, Any]], str | None]:
        bays = list(self.site.bays_of_zone(zone_id) if zone_id else self.site.bays.values())
        start = int(cursor) if cursor and cursor.isdigit() else 0
        page = bays[start : start + limit]
        more = str(start + limit) if start + limit < len(bays) else None
        return [self._bay_dict(b) for b in page], more

    def bay(self, bay_id: str) -> dict[str, Any] | None:
        bay = self.site.bays.get(bay_id)
        return None if bay is None else self._bay_dict(bay)

    def sessions(
        self,
        bay_id: str,
        start: int | None = None,
        end: int | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> tuple[list[dict[str, Any]], str | None]:
        bay = self.site.bays.get(bay_id)
        if bay is None:
            raise NotFound(f"no bay {bay_id}")
        after = int(cursor) if cursor and cursor.lstrip("-").isdigit() else None
        rows = self.store.sessions(bay_id, start, end, limit + 1, after)
        out = [
            {
                "bay_id": bay_id,
                "zone_id": bay.zone_id,
                "start": format_instant(s),
                "end": None if e is None else format_instant(e),
                "alerts": n,
            }
            for s, e, n in rows[:limit]
        ]
        return out, (str(rows[limit - 1][0]) if len(rows) > limit else None)

    def alerts(
        self,
        status: str | None = None,
        zone: str | None = None,
        kind: str | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> tuple[list[dict[str, Any]], str | None]:
        after = None
        if cursor and "|" in cursor:
            raised, _, alert_id = cursor.partition("|")
            if raised.lstrip("-").isdigit():
                after = (int(raised), alert_id)
        rows = self.store.alerts(
            status=status, zone_id=zone, kind=kind, limit=limit + 1, after=after
        )
        page = rows[:limit]
        more = None
        if len(rows) > limit:
            last = page[-1]
            more = f"{parse_instant(last['raised_at'])}|{last['alert_id']}"
        return page, more

    def alert(self, alert_id: str) -> dict[str, Any] | None:
        found = self.store.alert_with_history(alert_id)
        if found is None:
            return None
        record, history = found
        return {**record, "history": history}

    def alert_changes_since(self, after: int, limit: int = 100) -> list[tuple[int, dict[str, Any]]]:
        if self._ring and self._ring[0][0] <= after + 1:
            return [(i, r) for i, r in self._ring if i > after][:limit]
        return self.store.alert_changes_since(after, limit)

    def last_alert_change_id(self) -> int:
        return self._last_change

    async def wait_alert_change(self, after: int, timeout: float) -> None:  # noqa: ASYNC109
        if self._last_change > after:
            return
        if self._alert_changed is None:
            self._alert_changed = asyncio.Event()
        event = self._alert_changed
        try:
            await asyncio.wait_for(event.wait(), timeout)
        except TimeoutError:
            return
        finally:
            if event.is_set():
                # A fresh event for the next wait; every current waiter has been woken.
                self._alert_changed = asyncio.Event()

    def state_changes(
        self, zone_id: str | None, start: int, end: int
    ) -> dict[str, list[tuple[int, str]]]:
        bay_ids = [b.id for b in self.site.bays_of_zone(zone_id)] if zone_id else None
        return self.store.state_changes(bay_ids, start, end)

    def zone_counts(self, now: int | None = None) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for bay in self.site.bays.values():
            counts = out.setdefault(
                bay.zone_id, {"occupied": 0, "vacant": 0, "unknown": 0, "total": 0}
            )
            cur = self._bays.get(bay.id)
            counts[cur.state if cur is not None else "unknown"] += 1
            counts["total"] += 1
        return out

    def suspended_bays(self, now: int) -> set[str]:
        return {b for b in self.site.bays if self.engine.suspended(b, now)}

    def metrics(self) -> dict[str, Any]:
        rejected = {
            k.split(".", 1)[1]: float(v)
            for k, v in self.counters.items()
            if k.startswith("rejected.")
        }
        alerts = {
            k.split(".", 1)[1]: float(v)
            for k, v in self.counters.items()
            if k.startswith("alerts.")
        }
        out: dict[str, Any] = {
            "events_in": float(self.counters["events_in"]),
            "messages_in": float(self.counters["messages_in"]),
            "duplicates": float(self.counters["duplicates"]),
            "rejected": rejected,
            "alerts": alerts,
            "rule_latency_s": {"count": self._latency_count, "sum": self._latency_sum},
            "alerts_open": float(self.store.count_alerts("open")),
            "publish_pending": float(self.publisher.pending),
        }
        if self.sink is not None:
            for key, value in self.sink.stats().items():
                if isinstance(value, int | float) and not isinstance(value, bool):
                    out[key] = float(value)
        return out

    def latencies(self) -> list[float]:
        """Recent (raised - due) delays in seconds, for the bench."""
        return list(self._latency)

    def gateways(self) -> list[dict[str, Any]]:
        """Per-gateway delivery figures (GET /api/v1/gateways). Reads the store file on its own
        connection, so the API runs it in a worker thread, off this loop."""
        return gateway_summaries(self.config.store.path)

    def healthz(self) -> dict[str, Any]:
        broker = "ok" if self.link is not None and self.link.connected else "down"
        try:
            self.store.get_kv("watermark")
            store = "ok"
        except Exception:  # noqa: BLE001 (any failure of the store is "down")
            store = "down"
        sink = "disabled"
        if self.sink is not None:
            sink = "ok" if self.sink.healthy() else "down"
        return {
            "broker": broker,
            "store": store,
            "sink": sink,
            "clock": format_instant(self.engine.clock),
        }

    def export_journal(self) -> Iterable[dict[str, Any]]:
        """The accepted occupancy events, rights and suspensions as a journal; right
        cancellations become the shortened right (what replay understands)."""
        rights: dict[str, dict[str, Any]] = {}
        for entry in self.store.journal(types=("occupancy", "right", "suspension", "right_cancel")):
            if entry.type == "right":
                rights[entry.body["right_id"]] = entry.body
            if entry.type == "right_cancel":
                right = rights.get(entry.body["right_id"])
                at = entry.body["at"]
                if right is None or at <= parse_instant(right["start"]):
                    continue
                if at < parse_instant(right["end"]):
                    yield {**right, "end": format_instant(at)}
                continue
            yield entry.body


class _Commit:
    """``with service._commit() as now``: one transaction, then acks, publications, sink."""

    def __init__(self, service: CollectorService) -> None:
        self.service = service
        self._tx: Any = None

    def __enter__(self) -> int:
        self.now = self.service.clock()
        self._tx = self.service.store.transaction()
        self._tx.__enter__()
        return self.now

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        service = self.service
        if exc_type is None:
            try:
                service._before_commit(self.now)
            except BaseException as err:
                self._tx.__exit__(type(err), err, err.__traceback__)
                self._discard()
                raise
            try:
                self._tx.__exit__(None, None, None)  # writes the buffered rows and commits
            except BaseException:
                self._discard()
                raise
            service._after_commit()
        else:
            self._tx.__exit__(exc_type, exc, tb)
            self._discard()

    def _discard(self) -> None:
        self.service.publisher.discard()
        self.service.seen.pending.clear()
        self.service.seen.forget_prefetch()


def _bay_info(bay: Bay) -> BayInfo:
    location = None if bay.location is None else {"lat": bay.location.lat, "lon": bay.location.lon}
    return BayInfo(bay.id, bay.zone_id, bay.street, location)
