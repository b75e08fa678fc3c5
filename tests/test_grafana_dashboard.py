"""docs/grafana/kerbside.json read as Grafana would: every query (panels and variables) names
only measurements, tags and fields the collector writes, used as what they are; the dashboard has
its zone and gateway variables, takes its time zone from its own setting, never counts time after
now, and has the panels operators asked for. (Every query is also run against a real InfluxDB
filled by a simulated street: tests/e2e/test_influx_analysts.py.)"""

from __future__ import annotations

import re

import pytest

from tests import grafana


def all_queries() -> list[tuple[str, str]]:
    panels = [(t.panel, t.query) for t in grafana.targets()]
    variables = [
        (f"variable {name}", v["query"])
        for name, v in grafana.variables().items()
        if v["type"] == "query"
    ]
    return panels + variables


@pytest.mark.parametrize(("where", "query"), all_queries(), ids=[w for w, _ in all_queries()])
def test_every_query_names_what_the_collector_writes(where: str, query: str) -> None:
    assert grafana.check(query) == [], where


@pytest.mark.parametrize(
    ("query", "error"),
    [
        ('SELECT mean("rate") FROM "zone_occupancies" WHERE $timeFilter', "unknown"),
        ('SELECT mean("occupancy") FROM "zone_occupancy"', "occupancy, not a field"),
        ('SELECT mean("zone_id") FROM "zone_occupancy"', "zone_id, not a field"),
        ('SELECT count("rate") FROM "zone_occupancy" GROUP BY "rate"', "rate is not a tag"),
        ('SELECT mean("state") FROM "bay_state"', "string field state"),
        ('SELECT last("open") FROM "alert" WHERE "gateway_id" =~ /^$gateway$/', "not a tag"),
        ('SHOW TAG VALUES FROM "gateway" WITH KEY = "zone_id"', "gateway has no tag zone_id"),
        (
            'SELECT sum("x") FROM (SELECT last("open") AS "o" FROM "alert" GROUP BY "kind")',
            "x, not a field",
        ),
        (
            'SELECT bottom("o", "bay_id", 3) FROM (SELECT last("open") AS "o" FROM "alert" '
            'GROUP BY "kind")',
            "bay_id is not a tag",
        ),
        ('SELECT "street" FROM "zone_occupancy"', "street is neither a tag nor a field"),
    ],
)
def test_the_check_catches_what_the_collector_does_not_write(query: str, error: str) -> None:
    assert any(error in e for e in grafana.check(query)), grafana.check(query)


def test_zone_and_gateway_variables_filter_every_panel_they_apply_to() -> None:
    variables = grafana.variables()
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "influxdb"
    for name, (measurement, tag) in {
        "zone": ("zone_occupancy", "zone_id"),
        "gateway": ("gateway", "gateway_id"),
    }.items():
        v = variables[name]
        assert v["query"] == f'SHOW TAG VALUES FROM "{measurement}" WITH KEY = "{tag}"'
        assert (v["multi"], v["includeAll"], v["allValue"]) == (True, True, ".*")
    for target in grafana.targets():
        measurements = set(re.findall(r'FROM "(\w+)"', target.query))
        tags = set().union(*(grafana.SCHEMA[m][0] for m in measurements))
        if "zone_id" in tags:
            assert '"zone_id" =~ /^$zone$/' in target.query, target.panel
        elif "gateway_id" in tags:
            assert '"gateway_id" =~ /^$gateway$/' in target.query, target.panel
        else:  # pragma: no cover - every measurement has one of the two
            pytest.fail(f"{target.panel}: neither zone nor gateway applies")


def test_time_zone_comes_from_the_dashboard() -> None:
    board = grafana.load()
    assert board["timezone"] == "Europe/London"  # the default; the dashboard's setting wins
    bucketed = 0
    for target in grafana.targets(board):
        assert re.findall(r"tz\('([^']*)'\)", target.query) in ([], ["${__timezone:raw}"])
        for unit in re.findall(r"GROUP BY time\((\d+[hd])\)", target.query):
            assert "tz('${__timezone:raw}')" in target.query, (target.panel, unit)
            bucketed += 1
    assert bucketed >= 3  # hourly occupancy, alerts per day, uptime per day


def test_no_query_reaches_past_now() -> None:
    """Grafana's "Today" ends at midnight, and its relative ranges may send no upper bound at
    all: every query that buckets by time, carries a state forward or takes the latest value
    bounds each of its SELECTs at now()."""
    for target in grafana.targets():
        query = grafana.normal(target.query)
        if not re.search(r"GROUP BY time|last\(|fill\(previous\)", query):
            continue
        outer, inner = grafana.split_subquery(query)
        for part in filter(None, (outer, inner)):
            if "FROM (*)" in part and "GROUP BY time" not in part:
                continue  # only regroups what the bounded subquery gave
            assert "time <= now()" in part, (target.panel, part)


def test_the_panels_operators_asked_for_are_there() -> None:
    found = {t.panel: t for t in grafana.targets()}

    def one(pattern: str) -> grafana.Target:
        matches = [t for t in found.values() if re.search(pattern, grafana.normal(t.query))]
        assert len(matches) == 1, (pattern, [t.panel for t in matches])
        return matches[0]

    now = one(r'SELECT last\("rate"\) .* FROM "zone_occupancy" .* GROUP BY "zone_id"$')
    assert "now" in now.panel.lower()
    assert "alert" in one(r'last\("open"\)').panel.lower()
    assert "outbox" in one(r'max\("outbox_depth"\)').panel.lower()
    assert "lost" in one(r'"lost_frames"').panel.lower()
    battery = one(r'bottom\("battery_mv", "sensor_id", \d+\)')
    assert (battery.panel_type, battery.result_format) == ("table", "table")
    # No chart draws a series per sensor: it does not scale past a street.
    for target in found.values():
        outer, _ = grafana.split_subquery(grafana.normal(target.query))
        if target.panel_type == "timeseries":
            assert "sensor_id" not in grafana.group_by_tags(outer), target.panel


def test_every_panel_reads_the_dashboards_data_source_variable() -> None:
    board = grafana.load()
    assert "__inputs" not in board  # nothing for provisioning to leave unresolved
    for panel in board["panels"]:
        sources = [panel["datasource"], *(t["datasource"] for t in panel["targets"])]
        assert all(s == {"type": "influxdb", "uid": "${datasource}"} for s in sources), panel
    for v in grafana.variables(board).values():
        if v["type"] == "query":
            assert v["datasource"]["uid"] == "${datasource}"
