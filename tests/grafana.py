"""The Grafana dashboard's queries: read from docs/grafana/kerbside.json, turned into the InfluxQL
Grafana would send (its variables substituted), turned into the form docs/analysts.md shows them
in, and checked against the time-series contract: each measurement, tag and field a query names
must be one the collector writes, used as what it is (a tag to group or filter by, a numeric
field to aggregate)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DOCS = Path(__file__).resolve().parents[1] / "docs"
DASHBOARD = DOCS / "grafana" / "kerbside.json"
DOC_RANGE = "time >= '2026-11-01T00:00:00Z' AND time < '2026-12-01T00:00:00Z'"

# What the collector writes (the contract's time-series table): tags, and fields with their type.
SCHEMA: dict[str, tuple[frozenset[str], dict[str, str]]] = {
    "bay_state": (
        frozenset({"bay_id", "zone_id", "street", "kind", "gateway_id"}),
        {"occupied": "int", "state": "string"},
    ),
    "zone_occupancy": (
        frozenset({"zone_id"}),
        {"occupied": "int", "vacant": "int", "unknown": "int", "total": "int", "rate": "float"},
    ),
    "bay_session": (
        frozenset({"bay_id", "zone_id", "street", "kind"}),
        {"duration_s": "float", "overstay_s": "float", "alerts": "int"},
    ),
    "alert": (frozenset({"kind", "zone_id", "bay_id"}), {"alert_id": "string", "open": "int"}),
    "sensor_health": (
        frozenset({"sensor_id", "bay_id", "gateway_id"}),
        {"battery_mv": "int", "temp_c": "float", "lost_frames": "int", "rssi": "int"},
    ),
    "gateway": (frozenset({"gateway_id"}), {"online": "int", "outbox_depth": "int"}),
}
# Functions whose first argument must be a number; count/last/first/distinct take any field.
NUMERIC_FUNCTIONS = frozenset(
    {"mean", "median", "sum", "min", "max", "spread", "stddev", "bottom", "top", "ceil", "floor"}
    | {"non_negative_difference", "difference", "derivative", "non_negative_derivative"}
)
ANY_FUNCTIONS = frozenset({"count", "last", "first", "distinct", "mode"})


@dataclass(frozen=True)
class Target:
    panel: str
    panel_type: str
    result_format: str
    query: str


def load() -> dict[str, Any]:
    dashboard: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return dashboard


def targets(dashboard: dict[str, Any] | None = None) -> list[Target]:
    board = dashboard or load()
    return [
        Target(panel["title"], panel["type"], target.get("resultFormat", ""), target["query"])
        for panel in board["panels"]
        for target in panel.get("targets", [])
    ]


def variables(dashboard: dict[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    board = dashboard or load()
    return {v["name"]: v for v in board["templating"]["list"]}


def doc_queries() -> dict[str, str]:
    """The named InfluxQL blocks of docs/analysts.md (``-- name`` on their first line)."""
    text = (DOCS / "analysts.md").read_text()
    blocks = re.findall(r"```sql\n-- ([a-z0-9-]+)\n(.*?)```", text, re.S)
    return {name: body.strip() for name, body in blocks}


def normal(query: str) -> str:
    return " ".join(query.split())


def _regex(values: list[str] | None) -> str:
    """A multi-value variable as Grafana puts it in ``=~ /^$var$/``: All (``None``) is the
    variable's custom all value ``.*``; one value as is; several as ``(a|b)``."""
    if values is None:
        return ".*"
    escaped = [re.escape(v).replace("/", r"\/") for v in values]
    return escaped[0] if len(escaped) == 1 else "(" + "|".join(escaped) + ")"


def to_influxql(
    query: str,
    time_filter: str,
    *,
    zones: list[str] | None = None,
    gateways: list[str] | None = None,
    time_zone: str = "Europe/London",
    interval: str = "5m",
) -> str:
    """The query as Grafana sends it: ``$timeFilter`` (here the caller's, half-open like the
    docs' ranges), the zone and gateway selections, the dashboard's time zone, ``$__interval``."""
    out = query.replace("$timeFilter", time_filter)
    out = out.replace("$zone", _regex(zones)).replace("$gateway", _regex(gateways))
    out = out.replace("${__timezone:raw}", time_zone).replace("$__interval", interval)
    assert re.search(r"\$\w|\$\{", out) is None, f"a variable left in {out}"
    return out


def to_doc_form(query: str) -> str:
    """What docs/analysts.md shows for a panel's query: the docs' example range, no variable
    filters, London days, 5-minute intervals."""
    out = re.sub(r' AND "(zone_id|gateway_id)" =~ /\^\$(zone|gateway)\$/', "", query)
    return normal(to_influxql(out, DOC_RANGE))


# -- checking a query against the contract ----------------------------------------------------

_QUOTED = re.compile(r'"([^"]+)"')


def split_subquery(query: str) -> tuple[str, str | None]:
    """(outer with the subquery replaced by ``(*)``, inner) or (query, None)."""
    match = re.search(r"FROM\s*\(", query)
    if match is None:
        return query, None
    depth, start = 0, match.end() - 1
    for i in range(start, len(query)):
        depth += {"(": 1, ")": -1}.get(query[i], 0)
        if depth == 0:
            return query[:start] + "(*)" + query[i + 1 :], query[start + 1 : i]
    raise ValueError(f"unbalanced parentheses: {query}")


def group_by_tags(query: str) -> set[str]:
    match = re.search(r"GROUP BY (.*?)(?: fill\(| tz\(|$)", query)
    if match is None:
        return set()
    return set(_QUOTED.findall(re.sub(r"time\([^)]*\)", "", match.group(1))))


def check(query: str) -> list[str]:
    """What in ``query`` does not match the contract (an empty list when all does)."""
    errors: list[str] = []
    show = re.fullmatch(r'SHOW TAG VALUES FROM "(\w+)" WITH KEY = "(\w+)"', normal(query))
    if show is not None:
        measurement, key = show.groups()
        if measurement not in SCHEMA:
            return [f"unknown measurement {measurement}"]
        if key not in SCHEMA[measurement][0]:
            return [f"{measurement} has no tag {key}"]
        return []
    outer, inner = split_subquery(normal(query))
    if inner is not None:
        errors += check(inner)
        inner_tags = group_by_tags(inner)
        aliases = set(re.findall(r'AS "(\w+)"', inner))
        schema = (frozenset(inner_tags), dict.fromkeys(aliases, "float"))
        return errors + _check_simple(outer, "subquery", schema)
    match = re.search(r'FROM "(\w+)"', outer)
    if match is None or match.group(1) not in SCHEMA:
        return [f"unknown or missing measurement in {query}"]
    return errors + _check_simple(outer, match.group(1), SCHEMA[match.group(1)])


def _check_simple(
    query: str, measurement: str, schema: tuple[frozenset[str], dict[str, str]]
) -> list[str]:
    tags, fields = schema
    errors = []
    used_as_tag = group_by_tags(query) | set(re.findall(r'"(\w+)" =~', query))
    used_as_tag |= set(re.findall(r'(?:bottom|top)\(\s*"\w+",\s*"(\w+)"', query))
    errors += [f"{measurement}: {tag} is not a tag" for tag in sorted(used_as_tag - tags)]
    for function, argument in re.findall(r'(\w+)\(\s*"(\w+)"', query):
        kind = fields.get(argument)
        if kind is None:
            errors.append(f"{measurement}: {function}() of {argument}, not a field")
        elif function in NUMERIC_FUNCTIONS and kind == "string":
            errors.append(f"{measurement}: {function}() of the string field {argument}")
        elif function not in NUMERIC_FUNCTIONS | ANY_FUNCTIONS:
            errors.append(f"{function}() is not a function this check knows")
    compared = {name for name, _ in re.findall(r'"(\w+)" = (\d+)', query)}
    errors += [
        f"{measurement}: {n} compared to a number, not a field" for n in compared - set(fields)
    ]
    named = set(_QUOTED.findall(query)) - {measurement} - set(re.findall(r'AS "(\w+)"', query))
    errors += [
        f"{measurement}: {name} is neither a tag nor a field"
        for name in sorted(named - tags - set(fields))
    ]
    return errors
