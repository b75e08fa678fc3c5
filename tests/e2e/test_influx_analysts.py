"""Every analysts' query (docs/analysts.md) and every Grafana panel and variable query, run for
real on InfluxDB 1.x after a simulated street went through the collector; each answer checked
against the same figure computed from the simulator's ground truth (counts exact, rates and means
within 1 %), the dashboard's zone and gateway variables checked as filters, every query checked
not to count time after now, and backfill checked against what the live path wrote."""

from __future__ import annotations

import itertools
import json
import statistics
import time
import urllib.request
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from kerbside.collector.cli import main as collector_main
from kerbside.collector.runtime import Collector
from kerbside.core.instants import Instant, format_instant, parse_instant
from tests import grafana
from tests.e2e.influx_street import (
    ALERT_DELAY_S,
    AUX,
    GRACE_MIN,
    LOW_BATTERY_MV,
    MAX_STAY_MIN,
    MIN,
    OBSERVATION_MIN,
    Street,
    aux_messages,
    battery_readings,
    build_street,
    drive,
    gateway_messages,
    merged,
)
from tests.helpers import Influxd

pytestmark = pytest.mark.slow

DOC_RANGE = grafana.DOC_RANGE
LONDON = ZoneInfo("Europe/London")
SENSORS, HOURS, START, SEED = 30, 6, "2026-07-01T19:00:00Z", 3
SILENCE_S = 900  # the edge's detector.silence_s in the simulator's edge.yaml
FIVE_MIN = 5 * MIN  # the docs' interval for outbox depth and lost frames


def doc_queries() -> dict[str, str]:
    return grafana.doc_queries()


@dataclass
class Driven:
    """The street, the InfluxDB it was written to, the collector that wrote it, and what the
    gateways published (for figures the simulator's truth does not hold, like lost frames)."""

    street: Street
    influx: Influxd
    service: Collector
    messages: list[tuple[int, str, bytes]]


@pytest.fixture(scope="module")
def driven(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Driven]:
    workdir = tmp_path_factory.mktemp("street")
    influx = Influxd(workdir / "influxd").start()
    influx.query("CREATE DATABASE kerbside")
    st = build_street(workdir, SENSORS, HOURS, START, SEED)
    messages = merged(
        gateway_messages(workdir / "sim", st.start, st.end),
        aux_messages(st.start, st.end, st.aux_offline),
    )
    service, recorder = drive(
        st, influx.url, "kerbside", messages, until=st.end + (ALERT_DELAY_S + 1) * 1000
    )
    assert recorder.writer.wait_drained(60)
    recorder.writer.close()
    stats = recorder.writer.stats()
    assert (stats.points_rejected, stats.points_dropped) == (0, 0)
    yield Driven(st, influx, service, messages)
    influx.stop()


@pytest.fixture(scope="module")
def street(driven: Driven) -> tuple[Street, Influxd]:
    return driven.street, driven.influx


def period(st: Street) -> str:
    return f"time >= '{format_instant(st.start)}' AND time < '{format_instant(st.end)}'"


def rows(influx: Influxd, text: str, db: str = "kerbside") -> dict[tuple[Any, ...], Any]:
    """{(tag values..., time): row values} of a query's answer (one value, or a tuple)."""
    out: dict[tuple[Any, ...], Any] = {}
    for series in influx.query(text, db=db)[0].get("series", []):
        tags = tuple(v for _, v in sorted((series.get("tags") or {}).items()))
        for row in series["values"]:
            out[(*tags, row[0])] = row[1] if len(row) == 2 else tuple(row[1:])
    return out


def run(
    influx: Influxd, query: str, st: Street, db: str = "kerbside"
) -> dict[tuple[Any, ...], Any]:
    """A documented query (or a panel's, all zones and gateways) over the street's period."""
    text = query.replace(DOC_RANGE, period(st))
    if "$" in text:
        text = grafana.to_influxql(text, period(st))
    return rows(influx, text, db)


def panel(
    influx: Influxd,
    title: str,
    st: Street,
    *,
    zones: list[str] | None = None,
    gateways: list[str] | None = None,
) -> dict[tuple[Any, ...], Any]:
    """A dashboard panel's answer over the street's period, for the variables' selection."""
    (target,) = [t for t in grafana.targets() if t.panel == title]
    text = grafana.to_influxql(target.query, period(st), zones=zones, gateways=gateways)
    return rows(influx, text)


def panel_of(query_name: str) -> str:
    """The title of the dashboard panel that runs the documented query ``query_name``."""
    doc = grafana.normal(doc_queries()[query_name])
    (title,) = [t.panel for t in grafana.targets() if grafana.to_doc_form(t.query) == doc]
    return title


def london_day(t: Instant) -> Instant:
    """Epoch ms of the London midnight starting t's local day (the tz() bucket's time)."""
    local = datetime.fromtimestamp(t / 1000, tz=UTC).astimezone(LONDON)
    midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
    return int(midnight.timestamp() * 1000)


def near(value: float, expected: float, rel: float = 0.01) -> bool:
    return abs(value - expected) <= rel * abs(expected) + 1e-9


# -- ground truth ---------------------------------------------------------------------------------


def sessions(st: Street) -> list[tuple[str, int, int | None]]:
    return [
        (
            s["bay_id"],
            parse_instant(s["arrival"]),
            None if s["departure"] is None else parse_instant(s["departure"]),
        )
        for s in st.truth["sessions"]
    ]


def ambiguous(t: int, boundary: int, margin_s: int = 15) -> bool:
    return abs(t - boundary) < margin_s * 1000


def check_unambiguous(st: Street) -> None:
    """The truth must not sit on a threshold the detector's few seconds could tip over."""
    for bay, arrival, departure in sessions(st):
        stay = (departure or st.end + 10**9) - arrival
        kind = st.bays[bay]["kind"]
        for limit in (MAX_STAY_MIN + GRACE_MIN, OBSERVATION_MIN):
            assert not ambiguous(stay, limit * MIN), f"seed {SEED}: {bay} stays ~{limit} min"
            assert not ambiguous(arrival + limit * MIN, st.end), f"seed {SEED}: {bay} at end"
        for edge in (arrival, arrival + OBSERVATION_MIN * MIN, arrival + 40 * MIN):
            assert not ambiguous(edge, london_day(edge) + 86_400_000) or kind == "free"


def unknown_windows(st: Street) -> dict[str, list[tuple[int, int]]]:
    """When the collector sees each bay as unknown, from the truth: from a fault's start, or
    silence_s after a silence starts (the detector can only tell then), to the next state."""
    bay_of = {s["sensor_id"]: s["bay_id"] for s in st.truth["sensors"]}
    out: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for item in st.truth["faults"]:
        out[bay_of[item["sensor_id"]]].append(
            (parse_instant(item["start"]), parse_instant(item["end"]))
        )
    for item in st.truth["silent"]:
        start = parse_instant(item["start"]) + SILENCE_S * 1000
        out[bay_of[item["sensor_id"]]].append((start, parse_instant(item["end"])))
    return out


def expected_rates(st: Street) -> dict[tuple[str, int], float]:
    """Each zone's occupied / known bays at each minute of the street, from the truth."""
    unknown = unknown_windows(st)
    truth = sessions(st)
    out: dict[tuple[str, int], float] = {}
    for t in range(st.start + MIN, st.end, MIN):  # at st.start no bay has reported yet
        occ: Counter[str] = Counter()
        known: Counter[str] = Counter()
        for bay, info in st.bays.items():
            if any(a <= t < b for a, b in unknown.get(bay, [])):
                continue
            known[info["zone_id"]] += 1
            if any(b == bay and a <= t and (d is None or t < d) for b, a, d in truth):
                occ[info["zone_id"]] += 1
        for zone, n in known.items():
            out[(zone, t)] = occ[zone] / n
    return out


def expected_occupancy(st: Street) -> dict[tuple[str, int], tuple[float, int]]:
    """(mean rate, minutes) per zone and hour."""
    per_hour: dict[tuple[str, int], list[float]] = defaultdict(list)
    for (zone, t), rate in expected_rates(st).items():
        per_hour[(zone, t // 3_600_000 * 3_600_000)].append(rate)
    return {k: (statistics.fmean(v), len(v)) for k, v in per_hour.items()}


def closed_sessions(st: Street) -> list[tuple[str, int, int]]:
    return [(b, a, d) for b, a, d in sessions(st) if d is not None and st.start <= a < st.end]


def expected_alerts(st: Street) -> Counter[tuple[str, int]]:
    counts: Counter[tuple[str, int]] = Counter()
    for bay, arrival, departure in sessions(st):
        kind = st.bays[bay]["kind"]
        rule = {
            "limited": ("overstay", MAX_STAY_MIN + GRACE_MIN),
            "paid": ("unpaid", OBSERVATION_MIN),
        }.get(kind)
        if rule is None:
            continue
        due = arrival + rule[1] * MIN
        if due < st.end and (departure is None or departure > due):
            counts[(rule[0], london_day(due))] += 1
    for item in st.truth["faults"]:
        counts[("sensor_fault", london_day(parse_instant(item["start"])))] += 1
    for item in st.truth["silent"]:
        start = parse_instant(item["start"])
        assert not ambiguous(start + SILENCE_S * 1000, st.end, 90)
        if start + SILENCE_S * 1000 < st.end:
            counts[("sensor_silent", london_day(start))] += 1
    counts[("gateway_offline", london_day(st.aux_offline[0]))] += 1
    # low_battery: a health report below the threshold raises it, one at or above clears it.
    for sensor, values in battery_readings(st.workdir / "sim").items():
        open_, i, last = False, 0, None
        for h in health_times(st):
            while i < len(values) and values[i][0] < h:
                last = values[i][1]
                i += 1
            if last is None:
                continue
            if last < LOW_BATTERY_MV and not open_:
                counts[("low_battery", london_day(h))] += 1
            open_ = last < LOW_BATTERY_MV
        del sensor
    return counts


def health_times(st: Street) -> range:
    return range(st.start + MIN, st.end, MIN)


def expected_battery(st: Street) -> dict[tuple[str, int], float]:
    out: dict[tuple[str, int], list[int]] = defaultdict(list)
    for sensor, values in battery_readings(st.workdir / "sim").items():
        i, last = 0, None
        for h in health_times(st):
            while i < len(values) and values[i][0] < h:
                last = values[i][1]
                i += 1
            if last is not None:
                out[(sensor, london_day(h))].append(last)
    return {k: statistics.fmean(v) for k, v in out.items()}


def expected_uptime(st: Street) -> dict[tuple[str, int], tuple[float, int]]:
    gw = st.truth["gateway_id"]
    points = {
        gw: [(st.start, 1)] + [(h, 1) for h in health_times(st)],
        AUX: sorted(
            [(st.start, 1), (st.aux_offline[0] + 100, 0), (st.aux_offline[1], 1)]
            + [(h, 1) for h in health_times(st) if not st.aux_offline[0] <= h < st.aux_offline[1]]
        ),
    }
    out: dict[tuple[str, int], list[int]] = defaultdict(list)
    for gateway, pts in points.items():
        state = None
        for m in range(st.start, st.end, MIN):
            inside = [v for t, v in pts if m <= t < m + MIN]
            state = inside[-1] if inside else state
            if state is not None:
                out[(gateway, london_day(m))].append(state)
    return {k: (statistics.fmean(v), len(v)) for k, v in out.items()}


# -- the tests ------------------------------------------------------------------------------------


def test_the_truth_is_unambiguous_for_this_seed(street: tuple[Street, Influxd]) -> None:
    check_unambiguous(street[0])


def test_occupancy_rate_per_zone_per_hour(street: tuple[Street, Influxd]) -> None:
    st, influx = street
    got = run(influx, doc_queries()["occupancy-rate-per-zone-per-hour"], st)
    expected = expected_occupancy(st)
    assert set(got) == set(expected)
    worst = max(abs(got[k][0] - expected[k][0]) / max(expected[k][0], 1e-9) for k in expected)
    assert all(near(got[k][0], expected[k][0]) for k in expected), f"worst relative error {worst}"
    assert {k: got[k][1] for k in got} == {k: v[1] for k, v in expected.items()}  # minutes
    assert sorted({m for _, m in got.values()})[-1] == 60  # whole hours say so


def test_occupancy_now_per_zone(street: tuple[Street, Influxd]) -> None:
    st, influx = street
    got = run(influx, doc_queries()["occupancy-now"], st)
    last = st.end - MIN  # the latest minute written in the period
    rates = expected_rates(st)
    assert got == {
        (zone, last): pytest.approx(rates[(zone, last)]) for zone in ("Z-NORTH", "Z-SOUTH")
    }


def test_mean_and_median_stay_per_street(street: tuple[Street, Influxd]) -> None:
    st, influx = street
    got = run(influx, doc_queries()["stay-per-street"], st)
    stays: dict[str, list[float]] = defaultdict(list)
    for bay, arrival, departure in closed_sessions(st):
        stays[st.bays[bay]["street"]].append((departure - arrival) / 60_000)
    assert {k[0] for k in got} == set(stays)
    for (street_name, _), (count, mean, median) in got.items():
        assert count == len(stays[street_name])
        assert near(mean, statistics.fmean(stays[street_name]))
        assert near(median, statistics.median(stays[street_name]))


def test_overstay_rate_per_street(street: tuple[Street, Influxd]) -> None:
    st, influx = street
    got = run(influx, doc_queries()["overstay-rate-per-street"], st)
    totals: Counter[str] = Counter()
    over: Counter[str] = Counter()
    for bay, arrival, departure in closed_sessions(st):
        name = st.bays[bay]["street"]
        totals[name] += 1
        limit = (MAX_STAY_MIN + GRACE_MIN) * MIN
        over[name] += st.bays[bay]["kind"] == "limited" and departure - arrival > limit
    assert over["Parkway"] > 0  # the street with a maximum stay does overstay
    assert {k[0]: (v[1], v[2]) for k, v in got.items()} == {s: (over[s], totals[s]) for s in totals}
    for (name, _), (rate, _, _) in got.items():
        assert near(rate, over[name] / totals[name])


def test_alerts_per_kind_per_day(street: tuple[Street, Influxd]) -> None:
    st, influx = street
    got = run(influx, doc_queries()["alerts-per-kind-per-day"], st)
    expected = expected_alerts(st)
    assert {"overstay", "unpaid", "sensor_fault", "sensor_silent", "gateway_offline"} <= {
        kind for kind, _ in expected
    }
    assert len({day for _, day in expected}) == 2  # the period spans two London days
    assert dict(got) == dict(expected)


def test_battery_trend_per_sensor(street: tuple[Street, Influxd]) -> None:
    st, influx = street
    got = run(influx, doc_queries()["battery-trend-per-sensor"], st)
    expected = expected_battery(st)
    assert set(got) == set(expected)
    assert all(near(got[k], expected[k]) for k in expected)


def test_gateway_uptime(street: tuple[Street, Influxd]) -> None:
    st, influx = street
    got = run(influx, doc_queries()["gateway-uptime"], st)
    expected = expected_uptime(st)
    assert set(got) == set(expected)
    assert min(u for u, _ in expected.values()) < 0.95  # the aux gateway's outage shows
    assert all(near(got[k][0], expected[k][0]) for k in expected)
    assert {k: got[k][1] for k in got} == {k: v[1] for k, v in expected.items()}  # minutes


def test_open_alerts_per_kind(driven: Driven) -> None:
    st, influx, service = driven.street, driven.influx, driven.service
    got = run(influx, doc_queries()["open-alerts"], st)
    store = service.store
    still_open = Counter(
        a["kind"]
        for status in ("open", "acknowledged")
        for a in store.alerts(status=status, limit=100_000)
    )
    assert sum(still_open.values()) > 0  # the street ends with some open (low batteries)
    kinds = {a["kind"] for a in store.alerts(limit=100_000)}
    assert got == {(kind, 0): still_open[kind] for kind in kinds}


def last_health(st: Street) -> int:
    return health_times(st)[-1]


def test_lowest_batteries(street: tuple[Street, Influxd]) -> None:
    st, influx = street
    (answer,) = run(influx, doc_queries()["lowest-batteries"], st).values()
    assert answer  # one series: its rows are the sensors
    result = influx.query(
        doc_queries()["lowest-batteries"].replace(DOC_RANGE, period(st)), db="kerbside"
    )[0]
    (series,) = result["series"]
    columns = series["columns"]
    got = [dict(zip(columns, row, strict=True)) for row in series["values"]]
    at = last_health(st)
    latest = {}
    for sensor, values in battery_readings(st.workdir / "sim").items():
        before = [mv for t, mv in values if t < at]
        if before:
            latest[sensor] = before[-1]
    lowest = sorted(latest.values())[:20]
    assert sorted(r["battery_mv"] for r in got) == lowest
    bays = {info["sensor_id"]: bay for bay, info in st.bays.items()}
    for row in got:
        assert row["time"] == at
        assert latest[row["sensor_id"]] == row["battery_mv"]
        assert (row["bay_id"], row["gateway_id"]) == (
            bays[row["sensor_id"]],
            st.truth["gateway_id"],
        )


def test_outbox_depth(street: tuple[Street, Influxd]) -> None:
    st, influx = street
    got = run(influx, doc_queries()["outbox-depth"], st)
    # The simulated gateway reports an empty outbox every minute, the aux gateway two events
    # waiting, except while it is offline.
    expected = {}
    for h in health_times(st):
        bucket = h // FIVE_MIN * FIVE_MIN
        expected[(st.truth["gateway_id"], bucket)] = 0
        if not st.aux_offline[0] <= h < st.aux_offline[1]:
            expected[(AUX, bucket)] = 2
    assert got == expected


def test_lost_frames(driven: Driven) -> None:
    st, influx = driven.street, driven.influx
    got = run(influx, doc_queries()["lost-frames"], st)
    # From what the gateway reported (each sensor's counter at each health message): per sensor
    # and 5 minutes the largest count, its increase over the sensor's previous 5 minutes (none
    # for the first), summed per gateway.
    counters: dict[tuple[str, str], dict[int, int]] = defaultdict(dict)
    for at, topic, payload in driven.messages:
        if topic.endswith("/health") and st.start <= at < st.end:
            body = json.loads(payload)
            for sensor in body["sensors"]:
                if sensor.get("lost_frames") is not None:
                    per = counters[(body["gateway_id"], sensor["sensor_id"])]
                    bucket = at // FIVE_MIN * FIVE_MIN
                    per[bucket] = max(per.get(bucket, 0), sensor["lost_frames"])
    expected: Counter[tuple[str, int]] = Counter()
    for (gateway, _), per in counters.items():
        buckets = sorted(per)
        for before, bucket in itertools.pairwise(buckets):
            expected[(gateway, bucket)] += max(0, per[bucket] - per[before])
    assert sum(expected.values()) > 0  # the street loses frames
    assert got == dict(expected)


def test_every_panel_runs_its_documented_query(driven: Driven) -> None:
    """Each panel's query is a documented one with the dashboard's variables in it; with every
    zone and gateway selected and the London time zone, it answers what the documented one does
    (each of those is checked against the truth above)."""
    st, influx = driven.street, driven.influx
    docs = {grafana.normal(q): name for name, q in doc_queries().items()}
    for target in grafana.targets():
        name = docs.get(grafana.to_doc_form(target.query))
        assert name is not None, f"panel {target.panel!r} runs no documented query"
        answer = panel(influx, target.panel, st)
        assert answer, f"panel {target.panel!r} returned nothing"
        assert answer == run(influx, doc_queries()[name], st), target.panel


def test_variables_list_the_streets_zones_and_gateways(driven: Driven) -> None:
    values = {}
    for name, variable in grafana.variables().items():
        if variable["type"] == "query":
            (series,) = driven.influx.query(variable["query"], db="kerbside")[0]["series"]
            values[name] = sorted(value for _key, value in series["values"])
    assert values == {
        "zone": ["Z-NORTH", "Z-SOUTH"],
        "gateway": sorted([AUX, driven.street.truth["gateway_id"]]),
    }


def test_zone_variable_filters_the_zone_panels(driven: Driven) -> None:
    st, influx = driven.street, driven.influx
    north = {b for b, info in st.bays.items() if info["zone_id"] == "Z-NORTH"}
    for name in ("occupancy-now", "occupancy-rate-per-zone-per-hour"):
        everything = panel(influx, panel_of(name), st)
        assert panel(influx, panel_of(name), st, zones=["Z-NORTH"]) == {
            k: v for k, v in everything.items() if k[0] == "Z-NORTH"
        }
        both = panel(influx, panel_of(name), st, zones=["Z-NORTH", "Z-SOUTH"])
        assert both == everything
    stays = panel(influx, panel_of("stay-per-street"), st, zones=["Z-NORTH"])
    sessions_north = Counter(st.bays[b]["street"] for b, _, _ in closed_sessions(st) if b in north)
    assert {k[0]: v[0] for k, v in stays.items()} == dict(sessions_north)
    overstays = panel(influx, panel_of("overstay-rate-per-street"), st, zones=["Z-NORTH"])
    assert {k[0]: v[2] for k, v in overstays.items()} == dict(sessions_north)
    # Alerts: a zone's own; maintenance alerts without a zone only under All.
    per_day = panel(influx, panel_of("alerts-per-kind-per-day"), st, zones=["Z-NORTH"])
    alerts_north = Counter(
        (a["kind"], london_day(parse_instant(a["raised_at"])))
        for a in driven.service.store.alerts(limit=100_000)
        if a.get("zone_id") == "Z-NORTH"
    )
    assert per_day == dict(alerts_north)
    assert ("gateway_offline", london_day(st.aux_offline[0])) in panel(
        influx, panel_of("alerts-per-kind-per-day"), st
    )
    open_north = panel(influx, panel_of("open-alerts"), st, zones=["Z-NORTH"])
    assert ("gateway_offline", 0) not in open_north


def test_gateway_variable_filters_the_gateway_panels(driven: Driven) -> None:
    st, influx = driven.street, driven.influx
    for name in ("outbox-depth", "gateway-uptime", "lost-frames"):
        everything = panel(influx, panel_of(name), st)
        aux = panel(influx, panel_of(name), st, gateways=[AUX])
        assert aux == {k: v for k, v in everything.items() if k[0] == AUX}, name
    assert panel(influx, panel_of("outbox-depth"), st, gateways=[AUX])  # it has points
    assert panel(influx, panel_of("lowest-batteries"), st, gateways=[AUX]) == {}  # no sensors
    sim = st.truth["gateway_id"]
    assert panel(influx, panel_of("lowest-batteries"), st, gateways=[sim]) == panel(
        influx, panel_of("lowest-batteries"), st
    )


def test_a_panel_in_another_time_zone_buckets_by_that_zones_days(driven: Driven) -> None:
    """The dashboard's time zone, not London, decides the days: in New York (UTC-4 in July) the
    street's evening is one day; in London it spans midnight."""
    st, influx = driven.street, driven.influx
    (target,) = [t for t in grafana.targets() if t.panel == panel_of("alerts-per-kind-per-day")]
    london = rows(influx, grafana.to_influxql(target.query, period(st)))
    new_york = rows(
        influx, grafana.to_influxql(target.query, period(st), time_zone="America/New_York")
    )
    assert len({day for _, day in london}) == 2
    (day,) = {day for _, day in new_york}
    midnight = datetime(2026, 7, 1, tzinfo=ZoneInfo("America/New_York"))
    assert day == int(midnight.timestamp() * 1000)
    per_kind_london: Counter[str] = Counter()
    for (kind, _), n in london.items():
        per_kind_london[kind] += n
    assert {k: n for (k, _), n in new_york.items()} == dict(per_kind_london)


def write_points(influx: Influxd, db: str, lines: list[str]) -> None:
    request = urllib.request.Request(
        f"{influx.url}/write?db={db}&precision=ms", data="\n".join(lines).encode(), method="POST"
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        response.read()


def test_no_query_counts_time_after_now(driven: Driven) -> None:
    """Today, in a database holding points up to now and stray points after it (what an older
    backfill with ``--to`` in the future wrote): every documented query and every panel, over a
    range that runs to the end of the day, answers nothing after now; the current hour's
    occupancy and today's uptime count only the minutes so far."""
    influx = driven.influx
    influx.query("CREATE DATABASE today")
    now = int(time.time() * 1000)
    minute_now = now // MIN * MIN
    start = minute_now - 3 * 60 * MIN  # three hours of history
    offline_at = minute_now - 10 * MIN  # the gateway's last will, ten minutes ago
    lines = []
    for t in range(start, minute_now + 1, MIN):
        lines.append(
            f"zone_occupancy,zone_id=Z occupied=1i,vacant=1i,unknown=0i,total=2i,rate=0.5 {t}"
        )
        if t < offline_at:
            lines.append(f"gateway,gateway_id=g online=1i,outbox_depth=0i {t}")
            lost = (t - start) // MIN  # one frame lost a minute
            health = f"battery_mv=3600i,lost_frames={lost}i"
            lines.append(f"sensor_health,bay_id=B,gateway_id=g,sensor_id=S {health} {t}")
    lines.append(f"gateway,gateway_id=g online=0i {offline_at}")
    lines.append(f'alert,kind=unpaid,zone_id=Z,bay_id=B alert_id="a1",open=1i {start + MIN}')
    for t in range(minute_now + MIN, minute_now + 60 * MIN, MIN):  # the future
        lines.append(
            f"zone_occupancy,zone_id=Z occupied=9i,vacant=1i,unknown=0i,total=10i,rate=0.9 {t}"
        )
        lines.append(f"gateway,gateway_id=g online=1i,outbox_depth=99i {t}")
        lines.append(f"sensor_health,bay_id=B,gateway_id=g,sensor_id=S battery_mv=1000i {t}")
    lines.append(
        f'alert,kind=unpaid,zone_id=Z,bay_id=B alert_id="a1",open=0i {minute_now + 5 * MIN}'
    )
    write_points(influx, "today", lines)
    end = start + 24 * 60 * MIN  # far past now
    day_range = f"time >= '{format_instant(start)}' AND time < '{format_instant(end)}'"
    answers = {}
    checked_now = int(time.time() * 1000)
    for name, query in doc_queries().items():
        answers[name] = rows(influx, query.replace(DOC_RANGE, day_range), db="today")
    for target in grafana.targets():
        text = grafana.to_influxql(target.query, day_range, interval="5m")
        answers[target.panel] = rows(influx, text, db="today")
    for name, answer in answers.items():
        for key, value in answer.items():
            assert key[-1] <= checked_now, (name, key)  # no bucket or row after now
            assert value not in (0.9, 99, 1000), (name, key, value)
    # The hour now is partial: its minutes so far (the minute now included), not 60.
    hourly = answers["occupancy-rate-per-zone-per-hour"]
    current_hour = max(t for _, t in hourly)
    assert hourly[("Z", current_hour)] == (0.5, (minute_now - current_hour) // MIN + 1)
    assert answers["occupancy-now"] == {("Z", minute_now): 0.5}
    # Uptime: online until the last will, offline since; no minute of the rest of the day.
    uptime = answers["gateway-uptime"]
    minutes = sum(m for _, m in uptime.values())
    online = sum(u * m for u, m in uptime.values())
    assert minutes == (minute_now - start) // MIN + 1
    assert online == pytest.approx((offline_at - start) // MIN)
    assert answers["open-alerts"] == {("unpaid", 0): 1}  # its clearing is in the future


def test_backfill_rewrites_what_the_live_path_wrote(
    street: tuple[Street, Influxd], capsys: pytest.CaptureFixture[str]
) -> None:
    st, influx = street
    assert st.config_path is not None
    influx.query("CREATE DATABASE backfilled")
    text = st.config_path.read_text().replace("database: kerbside", "database: backfilled")
    config = st.config_path.with_name("backfill.yaml")
    config.write_text(text)
    args = [
        "backfill",
        "--config",
        str(config),
        "--from",
        format_instant(st.start),
        "--to",
        format_instant(st.end),
    ]
    assert collector_main(args) == 0
    assert "0 rejected" in capsys.readouterr().out
    for measurement, fields in (
        ("bay_state", "occupied, state"),
        ("bay_session", "duration_s, overstay_s, alerts"),
        ("alert", "alert_id, open"),
    ):
        query = f"SELECT {fields} FROM {measurement} WHERE {DOC_RANGE} GROUP BY *"
        live, back = run(influx, query, st), run(influx, query, st, db="backfilled")
        assert live
        assert back == live, measurement
    # zone_occupancy: the same occupied and total counts every minute. (`unknown` may differ:
    # live, a silent sensor turns unknown only once its silence is detected; backfill knows
    # when it began.)
    query = f"SELECT occupied, total FROM zone_occupancy WHERE {DOC_RANGE} GROUP BY *"
    live, back = run(influx, query, st), run(influx, query, st, db="backfilled")
    assert len(live) == 2 * (st.end - st.start) // MIN
    assert back == live
