"""Identifiers of gateways, sensors, bays and zones (docs/protocols.md): they become MQTT topic
levels, so they are restricted to ``[A-Za-z0-9_-]{1,64}``."""

from __future__ import annotations

import re

# \Z, not $: a $ also matches before a final newline, and "gw-1\n" is no topic level
ID_RE = re.compile(r"\A[A-Za-z0-9_-]{1,64}\Z")
SENSOR_ID_RE = re.compile(r"\A[A-Za-z0-9_-]{1,32}\Z")


def is_valid_id(value: object) -> bool:
    return isinstance(value, str) and ID_RE.match(value) is not None
