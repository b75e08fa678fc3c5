"""Prometheus text exposition of the collector's metrics (format 0.0.4, no client library)."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

_NAME_OK = re.compile(r"[^a-zA-Z0-9_]")

# metrics key -> (metric name, type, help, label name for dict values)
_KNOWN: dict[str, tuple[str, str, str, str]] = {
    "events_in": ("kerbside_events_in_total", "counter", "Occupancy events received", ""),
    "rejected": (
        "kerbside_rejected_total",
        "counter",
        "Messages rejected to the dead letter topic, by reason",
        "reason",
    ),
    "alerts": ("kerbside_alerts_total", "counter", "Alerts raised, by kind", "kind"),
    "alerts_open": ("kerbside_alerts_open", "gauge", "Alerts open now, by kind", "kind"),
    "spool_depth": (
        "kerbside_spool_depth",
        "gauge",
        "Time series points waiting to be written to InfluxDB",
        "",
    ),
}


def _number(value: Any) -> str:
    number = float(value)
    if math.isnan(number):
        return "NaN"
    if math.isinf(number):
        return "+Inf" if number > 0 else "-Inf"
    return repr(int(number)) if number.is_integer() else repr(number)


def _label(value: Any) -> str:
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def render(metrics: Mapping[str, Any], extra: Mapping[str, float] | None = None) -> str:
    """Render ``Queries.metrics()`` as Prometheus text."""
    lines: list[str] = []
    for key, value in metrics.items():
        if key == "rule_latency_s" and isinstance(value, Mapping):
            lines.extend(_histogram("kerbside_rule_latency_seconds", value))
            continue
        name, kind, help_text, label = _KNOWN.get(
            key, ("kerbside_" + _NAME_OK.sub("_", key), "gauge", key.replace("_", " "), "key")
        )
        if isinstance(value, Mapping):
            lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
            lines += [
                f'{name}{{{label or "key"}="{_label(k)}"}} {_number(v)}'
                for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))
                if isinstance(v, int | float)
            ]
        elif isinstance(value, int | float) and not isinstance(value, bool):
            lines += [
                f"# HELP {name} {help_text}",
                f"# TYPE {name} {kind}",
                f"{name} {_number(value)}",
            ]
        elif isinstance(value, bool):
            lines += [f"# TYPE {name} gauge", f"{name} {int(value)}"]
    for name, number in (extra or {}).items():
        lines += [f"# TYPE {name} gauge", f"{name} {_number(number)}"]
    return "\n".join(lines) + "\n"


def _histogram(name: str, value: Mapping[str, Any]) -> list[str]:
    kind = "histogram" if "buckets" in value else "summary"
    lines = [f"# HELP {name} Time to apply one record to the rules engine", f"# TYPE {name} {kind}"]
    buckets = value.get("buckets")
    if isinstance(buckets, Mapping):
        for le, count in sorted(buckets.items(), key=lambda kv: float(kv[0])):
            lines.append(f'{name}_bucket{{le="{_number(le)}"}} {_number(count)}')
        lines.append(f'{name}_bucket{{le="+Inf"}} {_number(value.get("count", 0))}')
    lines.append(f"{name}_count {_number(value.get('count', 0))}")
    lines.append(f"{name}_sum {_number(value.get('sum', 0.0))}")
    return lines
