"""Every analysts' query (docs/analysts.md) and every Grafana panel query, run for real on
InfluxDB 1.x after a simulated street went through the collector; each answer checked against
the same figure computed from the simulator's ground truth (counts exact, rates and means within
1 %), and backfill checked against what the live path wrote."""

from __future__ import annotations

import json
import re
import statistics
from collections import Counter, defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from kerbside.collector.cli import main as collector_main
from kerbside.core.instants import Instant, format_instant, parse_instant
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

DOCS = Path(__file__).resolve().parents[2] / "docs"
DOC_RANGE = "time >= '2026-11-01T00:00:00Z' AND time < '2026-12-01T00:00:00Z'"
LONDON = ZoneInfo("Europe/London")
SENSORS, HOURS, START, SEED = 30, 6, "2026-07-01T19:00:00Z", 3
SILENCE_S = 900  # the edge's detector.silence_s in the simulator's edge.yaml


def doc_queries() -> dict[str, str]:
    text = (DOCS / "analysts.md").read_text()
    blocks = re.findall(r"```sql\n-- ([a-z0-9-]+)\n(.*?)```", text, re.S)
    return {name: body.strip() for name, body in blocks}


def dashboard_queries() -> list[tuple[str, str]]:
    dashboard = json.loads((DOCS / "grafana" / "kerbside.json").read_text())
    return [
        (panel["title"], target["query"])
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
    ]


@pytest.fixture(scope="module")
def street(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Street, Influxd]]:
    workdir = tmp_path_factory.mktemp("street")
    influx = Influxd(workdir / "influxd").start()
    influx.query("CREATE DATABASE kerbside")
    st = build_street(workdir, SENSORS, HOURS, START, SEED)
    messages = merged(
        gateway_messages(workdir / "sim", st.start, st.end),
        aux_messages(st.start, st.end, st.aux_offline),
    )
    _, recorder = drive(
        st, influx.url, "kerbside", messages, until=st.end + (ALERT_DELAY_S + 1) * 1000
    )
    assert recorder.writer.wait_drained(60)
    recorder.writer.close()
    stats = recorder.writer.stats()
    assert (stats.points_rejected, stats.points_dropped) == (0, 0)
    yield st, influx
    influx.stop()


def run(
    influx: Influxd, query: str, st: Street, db: str = "kerbside"
) -> dict[tuple[Any, ...], Any]:
    """{(tag values..., time): row values} of a query's answer, for the street's period."""
    period = f"time >= '{format_instant(st.start)}' AND time < '{format_instant(st.end)}'"
    text = query.replace(DOC_RANGE, period).replace("$timeFilter", period)
    out: dict[tuple[Any, ...], Any] = {}
    for series in influx.query(text, db=db)[0].get("series", []):  # type: ignore[attr-defined]
        tags = tuple(v for _, v in sorted(series.get("tags", {}).items()))
        for row in series["values"]:
            out[(*tags, row[0])] = row[1] if len(row) == 2 else tuple(row[1:])
    return out


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


def expected_occupancy(st: Street) -> dict[tuple[str, int], float]:
    unknown = unknown_windows(st)
    truth = sessions(st)
    per_hour: dict[tuple[str, int], list[float]] = defaultdict(list)
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
            per_hour[(zone, t // 3_600_000 * 3_600_000)].append(occ[zone] / n)
    return {k: statistics.fmean(v) for k, v in per_hour.items()}


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


def expected_uptime(st: Street) -> dict[tuple[str, int], float]:
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
    return {k: statistics.fmean(v) for k, v in out.items()}


# -- the tests ------------------------------------------------------------------------------------


def test_the_truth_is_unambiguous_for_this_seed(street: tuple[Street, Influxd]) -> None:
    check_unambiguous(street[0])


def test_occupancy_rate_per_zone_per_hour(street: tuple[Street, Influxd]) -> None:
    st, influx = street
    got = run(influx, doc_queries()["occupancy-rate-per-zone-per-hour"], st)
    expected = expected_occupancy(st)
    assert set(got) == set(expected)
    worst = max(abs(got[k] - expected[k]) / max(expected[k], 1e-9) for k in expected)
    assert all(near(got[k], expected[k]) for k in expected), f"worst relative error {worst:.4f}"


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
    assert min(expected.values()) < 0.95  # the aux gateway's outage shows
    assert all(near(got[k], expected[k]) for k in expected)


def test_grafana_panels_run_the_documented_queries(street: tuple[Street, Influxd]) -> None:
    st, influx = street
    docs = {
        " ".join(q.replace(DOC_RANGE, "$timeFilter").split()): n for n, q in doc_queries().items()
    }
    panels = dashboard_queries()
    assert sorted(docs.values()) == sorted(docs[" ".join(q.split())] for _, q in panels)
    for title, query in panels:
        name = docs[" ".join(query.split())]
        answer = run(influx, query, st)
        assert answer, f"panel {title!r} returned nothing"
        assert answer == run(influx, doc_queries()[name], st), title


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
