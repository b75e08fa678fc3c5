"""Gateway status and health payloads (docs/protocols.md) and the dead letters of what is
rejected.

Checked as strictly as occupancy events (``records.py``): a bad one is rejected with a reason
and dead-lettered, and never raises or clears a maintenance alert.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from kerbside.collector.errors import RecordRejected
from kerbside.collector.records import decode_payload
from kerbside.core.ids import is_valid_id
from kerbside.core.instants import InstantError, parse_instant

DEADLETTER_KEEPS = 1024  # bytes of a rejected payload a dead letter carries


def deadletter_payload(topic: str, reason: str, payload: bytes) -> str:
    """A dead letter's payload: the first KiB of the text (or base64 of the first KiB when it is
    not UTF-8) and the whole payload's ``size`` in bytes. Never more: an oversize message echoed
    whole would cost the broker, every subscriber and the collector its size again."""
    head = payload[:DEADLETTER_KEEPS]
    try:
        payload.decode("utf-8")
    except UnicodeDecodeError:
        text = base64.b64encode(head).decode("ascii")
    else:
        text = head.decode("utf-8", "ignore")  # a character cut at the end is left out
    return json.dumps(
        {"v": 1, "topic": topic, "reason": reason, "payload": text, "size": len(payload)}
    )


def _decode(payload: bytes) -> dict[str, Any]:
    data = decode_payload(payload)
    if "v" not in data:
        raise RecordRejected("schema", "required", "v")
    version = data["v"]
    if version != 1 or isinstance(version, bool):
        reason = "unknown_version" if isinstance(version, int) else "schema"
        raise RecordRejected(reason, f"version {version!r} is not understood", "v")
    return data


def _common(data: dict[str, Any], topic_gateway: str) -> None:
    gateway_id = data.get("gateway_id")
    if not is_valid_id(gateway_id):
        raise RecordRejected("schema", "gateway_id is not an id", "gateway_id")
    if gateway_id != topic_gateway:
        raise RecordRejected(
            "gateway_mismatch", "gateway_id differs from the topic's", "gateway_id"
        )
    try:
        parse_instant(data.get("ts"))  # type: ignore[arg-type]
    except InstantError as exc:
        raise RecordRejected("schema", "ts is not an instant", "ts") from exc


def check_status(payload: bytes, topic_gateway: str) -> dict[str, Any]:
    data = _decode(payload)
    _common(data, topic_gateway)
    if not isinstance(data.get("online"), bool):
        raise RecordRejected("schema", "online is not a boolean", "online")
    return data


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_health(payload: bytes, topic_gateway: str) -> dict[str, Any]:
    data = _decode(payload)
    _common(data, topic_gateway)
    for key in ("outbox_depth", "events_dropped", "unknown_sensors", "uptime_s"):
        if key in data and not _is_int(data[key]):
            raise RecordRejected("schema", f"{key} is not an integer", key)
    sensors = data.get("sensors", [])
    if not isinstance(sensors, list):
        raise RecordRejected("schema", "sensors is not a list", "sensors")
    for i, sensor in enumerate(sensors):
        if not isinstance(sensor, dict) or not is_valid_id(sensor.get("sensor_id")):
            raise RecordRejected("schema", "sensor_id is not an id", f"sensors[{i}].sensor_id")
        for key in ("battery_mv", "frames", "lost_frames", "duplicates", "rssi"):
            value = sensor.get(key)
            if value is not None and not _is_int(value):
                raise RecordRejected("schema", f"{key} is not an integer", f"sensors[{i}].{key}")
        temp = sensor.get("temp_c")
        if temp is not None and (isinstance(temp, bool) or not isinstance(temp, int | float)):
            raise RecordRejected("schema", "temp_c is not a number", f"sensors[{i}].temp_c")
    return data
