"""The gateway's health and status payloads (docs/protocols.md), from counters, without I/O."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from kerbside.core.instants import Instant, format_instant

# The collector dead-letters payloads over 64 KiB; a gateway with hundreds of sensors splits its
# sensor list over several health messages, each a complete payload, each under this size.
MAX_HEALTH_BYTES = 60 * 1024


@dataclass(frozen=True, slots=True)
class PortHealth:
    src: str
    bytes: int
    bad_frames: int


class SensorCounters(Protocol):
    """What the detector keeps per sensor (``kerbside.edge.detector.SensorStats``)."""

    frames: int
    lost_frames: int
    duplicates: int
    last_seen: Instant | None
    battery_mv: int | None
    temp_c: float | None
    rssi: int | None


def status_payload(
    gateway_id: str, *, online: bool, ts: Instant, version: str, clock_synced: bool
) -> bytes:
    body = {
        "v": 1,
        "gateway_id": gateway_id,
        "online": online,
        "ts": format_instant(ts),
        "version": version,
        "clock_synced": clock_synced,
    }
    return json.dumps(body, separators=(",", ":")).encode()


def sensor_entry(sensor_id: str, bay_id: str, stats: SensorCounters | None) -> dict[str, object]:
    """One ``sensors[]`` item; a configured sensor not heard from yet has nulls and zeros."""
    if stats is None:
        return {
            "sensor_id": sensor_id,
            "bay_id": bay_id,
            "last_seen": None,
            "battery_mv": None,
            "temp_c": None,
            "frames": 0,
            "lost_frames": 0,
            "duplicates": 0,
            "rssi": None,
        }
    return {
        "sensor_id": sensor_id,
        "bay_id": bay_id,
        "last_seen": None if stats.last_seen is None else format_instant(stats.last_seen),
        "battery_mv": stats.battery_mv,
        "temp_c": stats.temp_c,
        "frames": stats.frames,
        "lost_frames": stats.lost_frames,
        "duplicates": stats.duplicates,
        "rssi": stats.rssi,
    }


def health_payloads(
    gateway_id: str,
    *,
    ts: Instant,
    uptime_s: int,
    outbox_depth: int,
    events_dropped: int,
    unknown_sensors: int,
    ports: Iterable[PortHealth],
    bay_of_sensor: Mapping[str, str],
    stats: Mapping[str, SensorCounters],
    max_bytes: int = MAX_HEALTH_BYTES,
) -> list[bytes]:
    """The health message(s): one payload, or several when the sensor list would be too big."""
    head: dict[str, object] = {
        "v": 1,
        "gateway_id": gateway_id,
        "ts": format_instant(ts),
        "uptime_s": uptime_s,
        "outbox_depth": outbox_depth,
        "events_dropped": events_dropped,
        "unknown_sensors": unknown_sensors,
        "ports": [{"src": p.src, "bytes": p.bytes, "bad_frames": p.bad_frames} for p in ports],
    }
    head_size = len(json.dumps(head, separators=(",", ":"))) + len(',"sensors":[]')
    entries = [
        json.dumps(sensor_entry(sid, bay, stats.get(sid)), separators=(",", ":"))
        for sid, bay in bay_of_sensor.items()
    ]
    payloads: list[bytes] = []
    for group in _pack(entries, max_bytes - head_size):
        sensors = "[" + ",".join(group) + "]"
        text = json.dumps(head, separators=(",", ":"))[:-1] + ',"sensors":' + sensors + "}"
        payloads.append(text.encode())
    return payloads


def _pack(entries: Sequence[str], budget: int) -> list[list[str]]:
    groups: list[list[str]] = [[]]
    size = 0
    for entry in entries:
        if groups[-1] and size + len(entry) + 1 > budget:
            groups.append([])
            size = 0
        groups[-1].append(entry)
        size += len(entry) + 1
    return groups
