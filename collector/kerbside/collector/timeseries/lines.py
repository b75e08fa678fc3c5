"""InfluxDB line protocol for the measurements of docs/analysts.md (pure: no I/O, no clock).

Every builder returns one line (``str``) with a millisecond timestamp; writers send them with
``precision=ms``. Field types are fixed per measurement (an integer field is always written with
the ``i`` suffix), because InfluxDB rejects a point whose field type differs from the shard's.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from kerbside.collector.rules.alerts import KINDS
from kerbside.core.instants import Instant, parse_instant

FieldValue = int | float | str | bool

OPEN_STATUSES = frozenset({"open", "acknowledged"})
CLOSED_STATUSES = frozenset({"cleared", "resolved"})
ENFORCEMENT_KINDS = frozenset(KINDS)


class BayLike(Protocol):
    """What the builders read of a site bay (the rules' ``Bay`` has these attributes)."""

    @property
    def id(self) -> str: ...
    @property
    def zone_id(self) -> str: ...
    @property
    def street(self) -> str | None: ...
    @property
    def kind(self) -> str: ...


@dataclass(frozen=True)
class BayTags:
    """A bay's tag values, for callers without a site model at hand."""

    id: str
    zone_id: str
    street: str | None
    kind: str


_NEEDS_ESCAPE = re.compile(r"[\\\n\r, =]")


def _escape_key(text: str) -> str:
    # Tag keys, tag values and field keys: commas, equals signs and spaces are escaped. A
    # backslash or line break cannot round-trip through both 1.x and 2.x parsers, so it goes.
    if _NEEDS_ESCAPE.search(text) is None:
        return text
    cleaned = text.replace("\\", "/").replace("\n", " ").replace("\r", " ")
    return cleaned.replace(",", r"\,").replace("=", r"\=").replace(" ", r"\ ")


def _escape_measurement(text: str) -> str:
    return text.replace(",", r"\,").replace(" ", r"\ ")


def _field(value: FieldValue) -> str | None:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return f"{value}i"
    if isinstance(value, float):
        if not math.isfinite(value):
            return None
        return repr(value)
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ")
    return f'"{escaped}"'


@functools.lru_cache(maxsize=65_536)
def _series(measurement: str, tags: tuple[tuple[str, str | None], ...]) -> str:
    """``measurement,k=v,...`` with tags sorted by key (InfluxDB's own order, cheaper for it to
    parse); cached because a street has a bounded set of series and this runs on the loop."""
    tag_text = "".join(f",{_escape_key(k)}={_escape_key(v)}" for k, v in sorted(tags) if v)
    return _escape_measurement(measurement) + tag_text


def encode_line(
    measurement: str,
    tags: Mapping[str, str | None],
    fields: Mapping[str, FieldValue | None],
    time: Instant,
) -> str:
    """One line of line protocol; ``None`` (and empty) tags and ``None`` fields are omitted."""
    parts = []
    for key, value in fields.items():
        if value is None:
            continue
        encoded = _field(value)
        if encoded is not None:
            parts.append(f"{_escape_key(key)}={encoded}")
    if not parts:
        raise ValueError(f"{measurement}: a point needs at least one field")
    return f"{_series(measurement, tuple(tags.items()))} {','.join(parts)} {int(time)}"


def _bay_series(measurement: str, bay: BayLike, gateway_id: str | None = None) -> str:
    tags: tuple[tuple[str, str | None], ...] = (
        ("bay_id", bay.id),
        ("zone_id", bay.zone_id),
        ("street", bay.street),
        ("kind", bay.kind),
    )
    if measurement == "bay_state":
        tags += (("gateway_id", gateway_id),)
    return _series(measurement, tags)


def bay_state_line(bay: BayLike, state: str, ts: Instant, gateway_id: str | None) -> str:
    # Written for every state change on the collector's loop: a direct f-string, not the
    # generic encoder (same output; tests compare them).
    occupied = 1 if state == "occupied" else 0
    text = _field(state)
    return f"{_bay_series('bay_state', bay, gateway_id)} occupied={occupied}i,state={text} {ts}"


def bay_session_line(
    bay: BayLike, start: Instant, end: Instant, overstay_s: float, alerts: int
) -> str:
    duration = (end - start) / 1000.0
    overstay = float(overstay_s) if math.isfinite(overstay_s) else 0.0
    return (
        f"{_bay_series('bay_session', bay)} duration_s={duration!r},"
        f"overstay_s={overstay!r},alerts={int(alerts)}i {start}"
    )


@dataclass(frozen=True)
class ZoneCounts:
    occupied: int = 0
    vacant: int = 0
    unknown: int = 0

    @property
    def total(self) -> int:
        return self.occupied + self.vacant + self.unknown

    @property
    def rate(self) -> float | None:
        known = self.total - self.unknown
        return self.occupied / known if known else None


def zone_occupancy_line(zone_id: str, counts: ZoneCounts, time: Instant) -> str:
    fields: dict[str, FieldValue | None] = {
        "occupied": counts.occupied,
        "vacant": counts.vacant,
        "unknown": counts.unknown,
        "total": counts.total,
        "rate": counts.rate,  # omitted when no bay of the zone is known: 0/0 is no rate
    }
    return encode_line("zone_occupancy", {"zone_id": zone_id}, fields, time)


def count_zones(
    zone_of_bay: Mapping[str, str],
    state_of_bay: Mapping[str, str],
    origins: Mapping[str, Instant] | None = None,
    at: Instant | None = None,
) -> dict[str, ZoneCounts]:
    """Counts per zone; a bay without a state (never heard of) counts as unknown.

    With ``origins`` (when each bay came into being) and ``at``, a bay whose origin is unknown
    or after ``at`` is not counted at all, and a zone with no bay counted has no entry: no point
    is written for minutes before a zone's bays existed.
    """
    tallies: dict[str, list[int]] = {}
    for bay_id, zone_id in zone_of_bay.items():
        if origins is not None and at is not None:
            origin = origins.get(bay_id)
            if origin is None or origin > at:
                continue
        tally = tallies.setdefault(zone_id, [0, 0, 0])
        state = state_of_bay.get(bay_id, "unknown")
        tally[0 if state == "occupied" else 1 if state == "vacant" else 2] += 1
    return {z: ZoneCounts(t[0], t[1], t[2]) for z, t in tallies.items()}


def _instant(value: Any) -> Instant | None:
    if value is None:
        return None
    if isinstance(value, int):
        return value
    return parse_instant(str(value))


def alert_line(record: Mapping[str, Any]) -> str | None:
    """The point for one alert change (docs/rules.md record), or None when the change has none.

    ``open`` and ``acknowledged`` give ``open=1`` at ``raised_at`` (the same point: an
    acknowledgement rewrites it unchanged); ``cleared`` and ``resolved`` give ``open=0`` at
    ``cleared_at``.
    """
    status = record.get("status")
    if status in OPEN_STATUSES:
        time, is_open = _instant(record.get("raised_at")), 1
    elif status in CLOSED_STATUSES:
        time, is_open = _instant(record.get("cleared_at")), 0
    else:
        return None
    if time is None:
        return None
    tags = {
        "kind": record.get("kind"),
        "zone_id": record.get("zone_id"),
        "bay_id": record.get("bay_id"),
    }
    fields: dict[str, FieldValue | None] = {
        "alert_id": str(record.get("alert_id", "")),
        "open": is_open,
    }
    return encode_line("alert", tags, fields, time)


def sensor_health_line(  # noqa: PLR0917 - one argument per field of the health entry
    sensor_id: str,
    bay_id: str | None,
    gateway_id: str,
    ts: Instant,
    battery_mv: int | None,
    temp_c: float | None,
    lost_frames: int | None,
    rssi: int | None,
) -> str | None:
    tags = {"sensor_id": sensor_id, "bay_id": bay_id, "gateway_id": gateway_id}
    fields: dict[str, FieldValue | None] = {
        "battery_mv": None if battery_mv is None else int(battery_mv),
        "temp_c": None if temp_c is None else float(temp_c),
        "lost_frames": None if lost_frames is None else int(lost_frames),
        "rssi": None if rssi is None else int(rssi),
    }
    if all(v is None for v in fields.values()):
        return None  # a sensor not heard from yet: nothing to record
    return encode_line("sensor_health", tags, fields, ts)


def gateway_line(gateway_id: str, online: bool, outbox_depth: int | None, ts: Instant) -> str:
    fields: dict[str, FieldValue | None] = {
        "online": 1 if online else 0,
        "outbox_depth": None if outbox_depth is None else int(outbox_depth),
    }
    return encode_line("gateway", {"gateway_id": gateway_id}, fields, ts)


def session_figures(alert_records: Iterable[Mapping[str, Any]], end: Instant) -> tuple[float, int]:
    """``(overstay_s, alerts)`` of a session that ended at ``end``, from its alert records.

    ``alerts`` counts its enforcement alerts. ``overstay_s`` sums, over its ``overstay`` alerts,
    the time from ``raised_at`` to the end of the vehicle's presence in that controlled period:
    the alert's ``cleared_at`` when the period ended first (``restriction_ended``) or the bay
    went unknown, else the session's end (an officer resolving the alert does not move the car).
    """
    overstay_ms = 0
    alerts = 0
    for record in alert_records:
        kind = record.get("kind")
        if kind not in ENFORCEMENT_KINDS:
            continue
        alerts += 1
        raised = _instant(record.get("raised_at"))
        if kind != "overstay" or raised is None:
            continue
        stop = end
        cleared = _instant(record.get("cleared_at"))
        if cleared is not None and record.get("clear_reason") in (
            "restriction_ended",
            "sensor_unknown",
        ):
            stop = min(stop, cleared)
        overstay_ms += max(0, stop - raised)
    return overstay_ms / 1000.0, alerts
