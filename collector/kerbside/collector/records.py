"""Journal records and their validation (docs/protocols.md), shared by replay and live ingest.

``RecordValidator`` turns untrusted bytes into typed records or raises ``RecordRejected`` with a
reason that callers count (dead letters) and a message that names the field. Repeated occupancy
events are recognised by ``event_id`` through a ``SeenEvents`` memory the caller provides, so the
live collector can keep it in its store while replay keeps it in a dict.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Final, NamedTuple, Protocol

import orjson

from kerbside.collector.errors import RecordRejected
from kerbside.core.ids import ID_RE
from kerbside.core.instants import Instant, InstantError, format_instant, parse_instant
from kerbside.core.site import Site

MAX_PAYLOAD_BYTES: Final = 64 * 1024
STATES: Final = ("occupied", "vacant", "unknown")
UNKNOWN_REASONS: Final = ("sensor_silent", "sensor_fault")
RIGHT_KINDS: Final = ("payment", "permit")
MAX_RECORD_ID = 256
REJECT_REASONS: Final = (
    "too_large",
    "not_utf8",
    "not_json",
    "schema",
    "unknown_version",
    "unknown_bay",
    "unknown_zone",
    "unknown_gateway",
    "wrong_gateway",
    "gateway_mismatch",
    "duplicate_conflict",
    "ts_out_of_range",
    "too_deep",
)
# JSON nested deeper than this is refused (an event is 1 level, a health message 3): parsing
# deeper structures recurses, and a 64 KiB payload of "[" exhausts Python's recursion limit.
MAX_JSON_DEPTH: Final = 8
# An event's ts and confirmed_ts lie between this and a few minutes after the collector's clock
# when it arrived (docs/protocols.md).
EARLIEST_TS: Final = 1_577_836_800_000  # 2020-01-01T00:00:00Z
LATEST_AHEAD_MS: Final = 5 * 60_000


class OccupancyEvent(NamedTuple):
    """An accepted occupancy event (a tuple: one is made for every event, and a frozen
    dataclass takes 2.5 times as long to make)."""

    event_id: str
    gateway_id: str
    seq: int
    bay_id: str
    sensor_id: str
    state: str
    ts: Instant
    confirmed_ts: Instant
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class Right:
    right_id: str
    kind: str
    bay_id: str | None
    zone_id: str | None
    start: Instant
    end: Instant


@dataclass(frozen=True, slots=True)
class Suspension:
    suspension_id: str
    bay_ids: tuple[str, ...]
    start: Instant
    end: Instant
    reason: str | None = None


JournalRecord = OccupancyEvent | Right | Suspension


def record_time(record: JournalRecord) -> Instant:
    """A record's time on the event clock: ``ts`` of an occupancy event, else ``start``."""
    return record.ts if isinstance(record, OccupancyEvent) else record.start


def to_journal_dict(record: JournalRecord) -> dict[str, Any]:
    """The record as a journal line (docs/protocols.md), ``type`` first."""
    if isinstance(record, OccupancyEvent):
        return {
            "type": "occupancy",
            "v": 1,
            "event_id": record.event_id,
            "gateway_id": record.gateway_id,
            "seq": record.seq,
            "bay_id": record.bay_id,
            "sensor_id": record.sensor_id,
            "state": record.state,
            "ts": format_instant(record.ts),
            "confirmed_ts": format_instant(record.confirmed_ts),
            "reason": record.reason,
        }
    if isinstance(record, Right):
        out: dict[str, Any] = {"type": "right", "right_id": record.right_id, "kind": record.kind}
        if record.bay_id is not None:
            out["bay_id"] = record.bay_id
        else:
            out["zone_id"] = record.zone_id
        out["start"] = format_instant(record.start)
        out["end"] = format_instant(record.end)
        return out
    return {
        "type": "suspension",
        "suspension_id": record.suspension_id,
        "bay_ids": list(record.bay_ids),
        "start": format_instant(record.start),
        "end": format_instant(record.end),
        "reason": record.reason,
    }


def canonical_body(obj: dict[str, Any]) -> str:
    """What two copies of an event must share to be the same event: every key but ``type``,
    sorted, compact."""
    body = {k: v for k, v in obj.items() if k != "type"}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def fingerprint(body: str) -> str:
    """A short digest of a canonical body (24 hex digits)."""
    return hashlib.blake2b(body.encode(), digest_size=12).hexdigest()


_EVENT_KEYS: Final = frozenset(
    {
        "type",
        "v",
        "event_id",
        "gateway_id",
        "seq",
        "bay_id",
        "sensor_id",
        "state",
        "ts",
        "confirmed_ts",
        "reason",
    }
)


def event_fingerprint(obj: dict[str, Any]) -> str:
    """The fingerprint of an occupancy event's body: equal for the same keys and values in any
    order, with or without the journal's ``type``. Cheaper than ``canonical_body`` for the
    usual keys (a journal has a million events); extra keys go in canonically."""
    extra = None
    if not obj.keys() <= _EVENT_KEYS:
        extra = {k: v for k, v in obj.items() if k not in _EVENT_KEYS}
    key = repr(
        (
            obj.get("v"),
            obj.get("event_id"),
            obj.get("gateway_id"),
            obj.get("seq"),
            obj.get("bay_id"),
            obj.get("sensor_id"),
            obj.get("state"),
            obj.get("ts"),
            obj.get("confirmed_ts"),
            obj.get("reason"),
            canonical_body(extra) if extra else None,
        )
    )
    return hashlib.blake2b(key.encode(), digest_size=12).hexdigest()


class SeenEvents(Protocol):
    """The memory of accepted event ids. Only accepted events are remembered."""

    def fingerprint_of(self, event_id: str) -> str | None: ...

    def remember(self, event_id: str, fingerprint: str) -> None: ...


class MemorySeenEvents:
    """SeenEvents in a dict (replay and tests); fingerprints kept as ints to stay small."""

    def __init__(self) -> None:
        self._seen: dict[str, int] = {}

    def fingerprint_of(self, event_id: str) -> str | None:
        value = self._seen.get(event_id)
        return None if value is None else f"{value:024x}"

    def remember(self, event_id: str, fingerprint: str) -> None:
        self._seen[event_id] = int(fingerprint, 16)

    def __len__(self) -> int:
        return len(self._seen)


def decode_payload(payload: bytes | str) -> dict[str, Any]:
    """Bytes to a JSON object, or RecordRejected (too_large, not_utf8, not_json, too_deep,
    schema)."""
    if isinstance(payload, bytes) and len(payload) <= MAX_PAYLOAD_BYTES:
        # orjson first (~4x faster); what it refuses goes the long way below, which names the
        # reason (and takes what json takes that orjson does not, like integers over 64 bits)
        try:
            obj = orjson.loads(payload)
        except orjson.JSONDecodeError:
            pass
        else:
            return _object(obj)
    if isinstance(payload, str):
        # A character is at most 4 bytes of UTF-8: only long texts need encoding to measure.
        if len(payload) * 4 > MAX_PAYLOAD_BYTES and len(payload.encode()) > MAX_PAYLOAD_BYTES:
            raise RecordRejected("too_large", f"payload over {MAX_PAYLOAD_BYTES} bytes")
        text = payload
    else:
        if len(payload) > MAX_PAYLOAD_BYTES:
            raise RecordRejected("too_large", f"payload over {MAX_PAYLOAD_BYTES} bytes")
        try:
            text = payload.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise RecordRejected("not_utf8", f"not UTF-8 at byte {exc.start}") from exc
    if _text_depth(text) > MAX_JSON_DEPTH:
        # before json.loads, which recurses once per level: 64 KiB of "[" would exhaust the
        # interpreter's recursion limit (orjson, above, stops at 1,024 levels by itself)
        raise RecordRejected("too_deep", f"nested deeper than {MAX_JSON_DEPTH} levels")
    try:
        obj = json.loads(text)
    except ValueError as exc:
        raise RecordRejected("not_json", f"not JSON: {exc}") from exc
    return _object(obj)


_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKET = re.compile(r"[\[\]{}]")


def _text_depth(text: str) -> int:
    """How deeply a JSON text's brackets nest outside its strings (up to one past the limit);
    for text that is not JSON, a guess that errs high only where json.loads would fail."""
    depth = deepest = 0
    for match in _BRACKET.finditer(_JSON_STRING.sub("", text)):
        if match.group() in "[{":
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > MAX_JSON_DEPTH:
                    break
        else:
            depth -= 1
    return deepest


def _object(obj: Any) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise RecordRejected("schema", "expected a JSON object")
    if json_depth(obj) > MAX_JSON_DEPTH:
        raise RecordRejected("too_deep", f"nested deeper than {MAX_JSON_DEPTH} levels")
    return obj


_CONTAINERS: Final = frozenset((dict, list))  # the exact types a JSON parser makes


def json_depth(value: Any) -> int:
    """How deeply a parsed JSON value nests (a scalar 0, ``{}`` or ``[]`` 1), without recursion
    and stopping once past ``MAX_JSON_DEPTH``."""
    if not isinstance(value, dict | list):
        return 0
    items = value.values() if isinstance(value, dict) else value
    if _CONTAINERS.isdisjoint(map(type, items)):
        return 1  # flat, as an event is: the usual case, settled in one pass in C
    deepest = 1
    level: list[Any] = [value]
    while level and deepest <= MAX_JSON_DEPTH:
        inner: list[Any] = []
        for container in level:
            items = container.values() if isinstance(container, dict) else container
            inner.extend(v for v in items if isinstance(v, dict | list))
        if inner:
            deepest += 1
        level = inner
    return deepest


def _instant(obj: dict[str, Any], key: str) -> Instant:
    value = obj.get(key)
    if not isinstance(value, str):
        raise RecordRejected("schema", "expected an ISO 8601 UTC instant", key)
    try:
        return parse_instant(value)
    except InstantError as exc:
        raise RecordRejected("schema", str(exc), key) from exc


def _record_id(obj: dict[str, Any], key: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str) or not value or len(value) > MAX_RECORD_ID:
        raise RecordRejected("schema", f"expected a string of 1..{MAX_RECORD_ID} characters", key)
    return value


def _ident(obj: dict[str, Any], key: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str) or ID_RE.match(value) is None:
        raise RecordRejected("schema", "expected an id matching [A-Za-z0-9_-]{1,64}", key)
    return value


class RecordValidator:
    """Validates records against one site; dedups occupancy events through ``seen``."""

    def __init__(self, site: Site, seen: SeenEvents | None = None) -> None:
        self.site = site
        self.seen: SeenEvents = seen if seen is not None else MemorySeenEvents()

    def check_event(
        self,
        payload: bytes | str,
        topic_gateway: str | None = None,
        received: Instant | None = None,
    ) -> OccupancyEvent | None:
        """An MQTT event payload: the event, None for a repeat to ignore, or RecordRejected."""
        return self.check_event_obj(decode_payload(payload), topic_gateway, received)

    def check_event_obj(
        self,
        obj: dict[str, Any],
        topic_gateway: str | None = None,
        received: Instant | None = None,
    ) -> OccupancyEvent | None:
        """An event's JSON object: the event (its id now remembered), None for a repeat, or
        RecordRejected; see ``examine_event``."""
        checked = self.examine_event(obj, topic_gateway, received)
        if checked is None:
            return None
        event, body_print = checked
        self.seen.remember(event.event_id, body_print)
        return event

    def examine_event(
        self,
        obj: dict[str, Any],
        topic_gateway: str | None = None,
        received: Instant | None = None,
    ) -> tuple[OccupancyEvent, str] | None:
        """An event's JSON object: the event and its body's fingerprint, None for a repeat, or
        RecordRejected. Nothing is remembered: only an event the caller goes on to accept is
        (``seen.remember``), so a rejected one's corrected retry is not a conflict. With
        ``received`` (the collector's clock when it came), instants after it by more than a few
        minutes are out of range; before 2020 they always are (a journal has no receipt)."""
        if "v" not in obj:
            raise RecordRejected("schema", "required", "v")
        version = obj["v"]
        if version != 1 or isinstance(version, bool):
            if isinstance(version, int) and not isinstance(version, bool):
                raise RecordRejected("unknown_version", f"version {version} is not understood", "v")
            raise RecordRejected("schema", "expected the integer 1", "v")
        event_id = _record_id(obj, "event_id")
        gateway_id = obj.get("gateway_id")
        bays = self.site.bays
        bay_id = obj.get("bay_id")
        bay = bays.get(bay_id) if isinstance(bay_id, str) else None
        if bay is None or gateway_id != bay.gateway:  # a known bay's own gateway is a valid id
            gateway_id = _ident(obj, "gateway_id")
        seq = obj.get("seq")
        if isinstance(seq, bool) or not isinstance(seq, int) or seq < 0:
            raise RecordRejected("schema", "expected a whole number >= 0", "seq")
        if bay is None:
            bay_id = _ident(obj, "bay_id")
        sensor_id = obj.get("sensor_id")
        if not isinstance(sensor_id, str) or not sensor_id:
            raise RecordRejected("schema", "expected a sensor id", "sensor_id")
        state = obj.get("state")
        if state not in STATES:
            raise RecordRejected("schema", "expected occupied, vacant or unknown", "state")
        reason = obj.get("reason")
        if reason is not None and (state != "unknown" or reason not in UNKNOWN_REASONS):
            raise RecordRejected(
                "schema", "expected null, or for unknown sensor_silent/sensor_fault", "reason"
            )
        ts = _instant(obj, "ts")
        confirmed_ts = _instant(obj, "confirmed_ts")
        latest = None if received is None else received + LATEST_AHEAD_MS
        for key, value in (("ts", ts), ("confirmed_ts", confirmed_ts)):
            if value < EARLIEST_TS or (latest is not None and value > latest):
                raise RecordRejected(
                    "ts_out_of_range", "before 2020 or more than 5 minutes ahead of ours", key
                )
        if topic_gateway is not None and gateway_id != topic_gateway:
            raise RecordRejected(
                "gateway_mismatch",
                f"{gateway_id} differs from the topic's {topic_gateway}",
                "gateway_id",
            )
        if bay is None:
            raise RecordRejected("unknown_bay", f"unknown bay {bay_id}", "bay_id")
        if bay.gateway is None or bay.gateway != gateway_id:
            raise RecordRejected(
                "wrong_gateway", f"bay {bay_id} is not assigned to gateway {gateway_id}", "bay_id"
            )
        body_print = event_fingerprint(obj)
        seen_print = self.seen.fingerprint_of(event_id)
        if seen_print is not None:
            if seen_print == body_print:
                return None
            raise RecordRejected("duplicate_conflict", "repeated with a different body", "event_id")
        event = OccupancyEvent(
            event_id=event_id,
            gateway_id=bay.gateway,
            seq=seq,
            bay_id=bay.id,
            sensor_id=sensor_id,
            state=str(state),
            ts=ts,
            confirmed_ts=confirmed_ts,
            reason=None if reason is None else str(reason),
        )
        return event, body_print

    def check_right(self, obj: dict[str, Any]) -> Right:
        """A right (journal shape, ``type`` optional): known bay or zone, exactly one of
        ``bay_id``/``zone_id``, end after start."""
        right_id = _record_id(obj, "right_id")
        kind = obj.get("kind")
        if kind not in RIGHT_KINDS:
            raise RecordRejected("schema", "expected payment or permit", "kind")
        has_bay, has_zone = obj.get("bay_id") is not None, obj.get("zone_id") is not None
        if has_bay == has_zone:
            raise RecordRejected("schema", "give exactly one of bay_id and zone_id", "bay_id")
        start, end = _instant(obj, "start"), _instant(obj, "end")
        if end <= start:
            raise RecordRejected("schema", "must be after start", "end")
        if has_bay:
            bay = self.site.bays.get(obj["bay_id"]) if isinstance(obj["bay_id"], str) else None
            if bay is None:
                raise RecordRejected("unknown_bay", f"unknown bay {obj['bay_id']!r}", "bay_id")
            return Right(right_id, str(kind), bay.id, None, start, end)
        zone = self.site.zones.get(obj["zone_id"]) if isinstance(obj["zone_id"], str) else None
        if zone is None:
            raise RecordRejected("unknown_zone", f"unknown zone {obj['zone_id']!r}", "zone_id")
        return Right(right_id, str(kind), None, zone.id, start, end)

    def check_suspension(self, obj: dict[str, Any]) -> Suspension:
        """A suspension (journal shape): every bay known, end after start."""
        suspension_id = _record_id(obj, "suspension_id")
        bay_ids = obj.get("bay_ids")
        if not isinstance(bay_ids, list) or not bay_ids:
            raise RecordRejected("schema", "expected a non-empty list of bay ids", "bay_ids")
        bays: list[str] = []
        for i, bay_id in enumerate(bay_ids):
            bay = self.site.bays.get(bay_id) if isinstance(bay_id, str) else None
            if bay is None:
                raise RecordRejected("unknown_bay", f"unknown bay {bay_id!r}", f"bay_ids[{i}]")
            if bay.id not in bays:
                bays.append(bay.id)
        start, end = _instant(obj, "start"), _instant(obj, "end")
        if end <= start:
            raise RecordRejected("schema", "must be after start", "end")
        reason = obj.get("reason")
        if reason is not None and not isinstance(reason, str):
            raise RecordRejected("schema", "expected a string or null", "reason")
        return Suspension(suspension_id, tuple(bays), start, end, reason)

    def check_journal_line(self, line: bytes | str) -> JournalRecord | None:
        """One journal line: a record, None for a repeated event to ignore, or RecordRejected."""
        obj = decode_payload(line)
        kind = obj.get("type")
        if kind == "occupancy":
            return self.check_event_obj(obj)
        if kind == "right":
            return self.check_right(obj)
        if kind == "suspension":
            return self.check_suspension(obj)
        raise RecordRejected("schema", "expected occupancy, right or suspension", "type")

    def check_journal_lines(
        self, lines: Iterable[bytes | str]
    ) -> Iterator[tuple[int, JournalRecord | RecordRejected | None]]:
        """Each line but blank ones, numbered from 1, with what ``check_journal_line`` made of
        it: a record, None (a repeated event) or the rejection."""
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                yield number, self.check_journal_line(line)
            except RecordRejected as exc:
                yield number, exc


def from_journal_dict(obj: dict[str, Any]) -> JournalRecord:
    """Rebuild a record this module wrote (snapshots); trusts its input's shape."""
    kind = obj["type"]
    if kind == "occupancy":
        return OccupancyEvent(
            obj["event_id"],
            obj["gateway_id"],
            obj["seq"],
            obj["bay_id"],
            obj["sensor_id"],
            obj["state"],
            parse_instant(obj["ts"]),
            parse_instant(obj["confirmed_ts"]),
            obj.get("reason"),
        )
    if kind == "right":
        return Right(
            obj["right_id"],
            obj["kind"],
            obj.get("bay_id"),
            obj.get("zone_id"),
            parse_instant(obj["start"]),
            parse_instant(obj["end"]),
        )
    return Suspension(
        obj["suspension_id"],
        tuple(obj["bay_ids"]),
        parse_instant(obj["start"]),
        parse_instant(obj["end"]),
        obj.get("reason"),
    )
