"""Line protocol of the time series: exact tags, fields and field types, read back from InfluxDB."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from kerbside.collector.timeseries import BayTags, InfluxV1Sink, session_figures
from kerbside.collector.timeseries import lines as lp
from kerbside.core.instants import parse_instant
from tests.helpers import Influxd

pytestmark = pytest.mark.slow  # starts processes (brokers, programs, servers)

BAY = BayTags(id="CA-F-PKW-001", zone_id="CA-F", street="Camden High Street, north", kind="paid")
T0 = parse_instant("2026-11-26T08:00:05.120Z")


@pytest.fixture(scope="module")
def influx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Influxd]:
    server = Influxd(tmp_path_factory.mktemp("influxd")).start()
    yield server
    server.stop()


def test_bay_state_line_is_exact() -> None:
    line = lp.bay_state_line(BAY, "occupied", T0, "gw-parkway-01")
    assert line == (
        "bay_state,bay_id=CA-F-PKW-001,gateway_id=gw-parkway-01,kind=paid,"
        r"street=Camden\ High\ Street\,\ north,zone_id=CA-F"
        ' occupied=1i,state="occupied" 1795680005120'
    )
    assert " occupied=0i," in lp.bay_state_line(BAY, "unknown", T0, "gw")


def test_session_zone_alert_health_gateway_lines() -> None:
    assert lp.bay_session_line(BAY, T0, T0 + 90_500, 30.25, 2).endswith(
        " duration_s=90.5,overstay_s=30.25,alerts=2i 1795680005120"
    )
    counts = lp.ZoneCounts(occupied=3, vacant=1, unknown=2)
    assert lp.zone_occupancy_line("CA-F", counts, T0) == (
        "zone_occupancy,zone_id=CA-F occupied=3i,vacant=1i,unknown=2i,total=6i,rate=0.75"
        " 1795680005120"
    )
    # Every bay unknown: 0/0 is no rate, so the field is left out rather than faked.
    assert "rate" not in lp.zone_occupancy_line("Z", lp.ZoneCounts(unknown=4), T0)
    record = {
        "alert_id": "a1b2",
        "kind": "overstay",
        "status": "open",
        "bay_id": "B1",
        "zone_id": "Z1",
        "raised_at": "2026-11-26T08:00:05.120Z",
        "cleared_at": None,
    }
    assert lp.alert_line(record) == (
        'alert,bay_id=B1,kind=overstay,zone_id=Z1 alert_id="a1b2",open=1i 1795680005120'
    )
    cleared = {**record, "status": "cleared", "cleared_at": "2026-11-26T08:10:00Z"}
    assert lp.alert_line(cleared) == (
        'alert,bay_id=B1,kind=overstay,zone_id=Z1 alert_id="a1b2",open=0i 1795680600000'
    )
    # A maintenance alert without bay or zone: those tags are simply absent.
    offline = {"alert_id": "g1", "kind": "gateway_offline", "status": "open", "raised_at": T0}
    assert lp.alert_line(offline) == (
        'alert,kind=gateway_offline alert_id="g1",open=1i 1795680005120'
    )
    assert lp.sensor_health_line("S-1", "B1", "gw", T0, 3600, 11.5, 4, None) == (
        "sensor_health,bay_id=B1,gateway_id=gw,sensor_id=S-1"
        " battery_mv=3600i,temp_c=11.5,lost_frames=4i 1795680005120"
    )
    assert (lp.sensor_health_line("S-1", "B1", "gw", T0, 3600, 11.0, 0, -71) or "").endswith(
        "rssi=-71i 1795680005120"
    )
    assert lp.gateway_line("gw", False, None, T0) == "gateway,gateway_id=gw online=0i 1795680005120"
    assert lp.gateway_line("gw", True, 12, T0).endswith(" online=1i,outbox_depth=12i 1795680005120")


def test_session_figures_sums_overstay_until_presence_ends() -> None:
    end = T0 + 3_600_000
    alerts = [
        {"kind": "overstay", "raised_at": T0, "cleared_at": end, "clear_reason": "vehicle_left"},
        {"kind": "unpaid", "raised_at": T0, "cleared_at": end, "clear_reason": "vehicle_left"},
        # Ended by the controlled period first: only counts until the period's end.
        {
            "kind": "overstay",
            "raised_at": T0 + 1_000_000,
            "cleared_at": T0 + 1_600_000,
            "clear_reason": "restriction_ended",
        },
        # Resolved by an officer: the car stayed until the session's end.
        {
            "kind": "overstay",
            "raised_at": T0 + 3_000_000,
            "cleared_at": T0 + 3_100_000,
            "clear_reason": "resolved",
        },
        {"kind": "low_battery", "raised_at": T0},
    ]
    overstay_s, count = session_figures(alerts, end)
    assert count == 4
    assert overstay_s == pytest.approx(3600 + 600 + 600)
    assert session_figures([], end) == (0.0, 0)


def test_field_types_and_awkward_tags_round_trip_through_influxdb(influx: Influxd) -> None:
    influx.query("CREATE DATABASE lines")
    odd = BayTags(id="B=1", zone_id="Z 1", street='Wall\\St "x", 2', kind="paid")
    lines = [
        lp.bay_state_line(odd, "vacant", T0, "gw,1"),
        lp.bay_session_line(odd, T0, T0 + 61_000, 0.0, 0),
        lp.zone_occupancy_line("Z 1", lp.ZoneCounts(1, 1, 0), T0),
        lp.sensor_health_line("S-1", "B=1", "gw,1", T0, 3000, -2.5, 0, -80) or "",
        lp.gateway_line("gw,1", True, 0, T0),
    ]
    InfluxV1Sink(influx.url, "lines").write(lines)
    keys = influx.query("SHOW FIELD KEYS", db="lines")[0]["series"]
    types = {(s["name"], k): t for s in keys for k, t in s["values"]}
    assert types == {
        ("bay_state", "occupied"): "integer",
        ("bay_state", "state"): "string",
        ("bay_session", "alerts"): "integer",
        ("bay_session", "duration_s"): "float",
        ("bay_session", "overstay_s"): "float",
        ("gateway", "online"): "integer",
        ("gateway", "outbox_depth"): "integer",
        ("sensor_health", "battery_mv"): "integer",
        ("sensor_health", "lost_frames"): "integer",
        ("sensor_health", "rssi"): "integer",
        ("sensor_health", "temp_c"): "float",
        ("zone_occupancy", "occupied"): "integer",
        ("zone_occupancy", "rate"): "float",
        ("zone_occupancy", "total"): "integer",
        ("zone_occupancy", "unknown"): "integer",
        ("zone_occupancy", "vacant"): "integer",
    }
    rows = influx.query("SELECT * FROM bay_state WHERE \"bay_id\" = 'B=1'", db="lines")
    series = rows[0]["series"][0]
    got = dict(zip(series["columns"], series["values"][0], strict=True))
    assert got["zone_id"] == "Z 1"
    assert got["gateway_id"] == "gw,1"
    assert got["street"] == 'Wall/St "x", 2'  # a backslash cannot round-trip 1.x and 2.x alike
    assert got["time"] == T0
    duration = influx.query("SELECT duration_s FROM bay_session", db="lines")
    assert duration[0]["series"][0]["values"] == [[T0, 61.0]]


def test_a_point_needs_a_field() -> None:
    with pytest.raises(ValueError, match="at least one field"):
        lp.encode_line("m", {"a": "b"}, {"x": None, "y": float("nan")}, T0)
    assert lp.sensor_health_line("S", None, "gw", T0, None, None, None, None) is None


@pytest.mark.parametrize(
    "bay",
    [
        BAY,
        BayTags(id="B=1", zone_id="Z 1", street=None, kind="paid"),
        BayTags(id="B2", zone_id="Z2", street='Wall\\St "x"', kind="free"),
    ],
)
def test_fast_builders_equal_the_generic_encoder(bay: BayTags) -> None:
    for state in ("occupied", "vacant", "unknown"):
        tags = {
            "bay_id": bay.id,
            "zone_id": bay.zone_id,
            "street": bay.street,
            "kind": bay.kind,
            "gateway_id": "gw,1",
        }
        fields = {"occupied": int(state == "occupied"), "state": state}
        assert lp.bay_state_line(bay, state, T0, "gw,1") == lp.encode_line(
            "bay_state", tags, fields, T0
        )
    tags = {"bay_id": bay.id, "zone_id": bay.zone_id, "street": bay.street, "kind": bay.kind}
    session_fields: dict[str, lp.FieldValue | None] = {
        "duration_s": 61.5,
        "overstay_s": 0.0,
        "alerts": 3,
    }
    assert lp.bay_session_line(bay, T0, T0 + 61_500, 0, 3) == lp.encode_line(
        "bay_session", tags, session_fields, T0
    )
