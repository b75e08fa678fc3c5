"""``kerbside-collector backfill``: a period's points rewritten from the store into InfluxDB 1.x."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from kerbside.collector.cli import main
from kerbside.collector.store import Store
from kerbside.collector.store.sqlite import SqliteStore
from kerbside.core.instants import format_instant, parse_instant
from tests.collector.store_rows import alert_write, closed, counted, opened, write
from tests.helpers import Influxd
from tests.pg import Stores

pytestmark = pytest.mark.slow  # starts processes (brokers, programs, servers)

SITE = """
site: backfill-test
timezone: Europe/London
zones:
  - {id: Z1, name: One, controlled_hours: any}
  - {id: Z2, name: Two, controlled_hours: any}
bays:
  - {id: B1, zone: Z1, street: High Street, kind: limited, max_stay_minutes: 60, sensor: S1,
     gateway: gw-1}
  - {id: B2, zone: Z1, street: High Street, kind: paid, sensor: S2, gateway: gw-1}
  - {id: B3, zone: Z2, street: Low Road, kind: free, sensor: S3, gateway: gw-2}
"""

T0 = parse_instant("2026-11-26T08:00:00Z")
MIN = 60_000


@pytest.fixture
def influx(tmp_path: Path) -> Iterator[Influxd]:
    server = Influxd(tmp_path / "influxd").start()
    server.query("CREATE DATABASE k")
    yield server
    server.stop()


def alert(
    alert_id: str,
    kind: str,
    bay: str,
    session: int,
    raised: int,
    cleared: int | None,
    reason: str | None,
) -> dict[str, object]:
    return {
        "v": 1,
        "alert_id": alert_id,
        "kind": kind,
        "status": "open" if cleared is None else "cleared",
        "bay_id": bay,
        "zone_id": "Z1",
        "street": "High Street",
        "location": None,
        "session_start": format_instant(session),
        "raised_at": format_instant(raised),
        "cleared_at": None if cleared is None else format_instant(cleared),
        "clear_reason": reason,
    }


def fill_store(store: Store, origins: dict[str, int] | None = None) -> None:
    """The store a collector running with SITE since 07:00 (or ``origins``) would have."""
    for bay, since in (origins or dict.fromkeys(("B1", "B2", "B3"), T0 - 60 * MIN)).items():
        store.note_bays([bay], since)
    b1 = T0 + 10 * MIN + 30_000
    # B1: vacant before the period, occupied 08:10:30 .. 09:30:00 (overstay raised 09:20:30).
    raised = T0 + 80 * MIN + 30_000
    a = alert("ov1", "overstay", "B1", b1, raised, T0 + 90 * MIN, "vehicle_left")
    # B2: occupied from before the period to the end (an open session: no bay_session).
    u = alert("up1", "unpaid", "B2", T0 - 5 * MIN, T0 + 2 * MIN, None, None)
    write(
        store,
        state_changes=[
            ("B1", T0 - 30 * MIN, "vacant"),
            ("B1", b1, "occupied"),
            ("B1", T0 + 90 * MIN, "vacant"),
            ("B2", T0 - 5 * MIN, "occupied"),
            # B3 never reported: unknown throughout. An event after the period is left alone.
            ("B1", T0 + 200 * MIN, "occupied"),
        ],
        sessions=[
            opened("B1", b1),
            closed("B1", b1, T0 + 90 * MIN),
            counted("B1", b1),
            opened("B2", T0 - 5 * MIN),
        ],
        alerts=[alert_write(a, raised), alert_write(u, T0 + 2 * MIN)],
    )
    store.close()


def test_backfill_rewrites_the_period(
    tmp_path: Path, influx: Influxd, capsys: pytest.CaptureFixture[str], stores: Stores
) -> None:
    (tmp_path / "site.yaml").write_text(SITE)
    fill_store(stores.open())
    (tmp_path / "collector.yaml").write_text(
        f"site: site.yaml\nstore: {stores.config}\n"
        f"influxdb: {{url: '{influx.url}', api: v1, database: k, batch_size: 50}}\n"
    )
    args = [
        "backfill",
        "--config",
        str(tmp_path / "collector.yaml"),
        "--from",
        format_instant(T0),
        "--to",
        format_instant(T0 + 120 * MIN),
    ]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "alert 3, bay_session 1, bay_state 2, zone_occupancy 240; 0 rejected" in out
    # Twice is the same as once: points overwrite themselves.
    assert main(args) == 0

    def q(text: str) -> list[list[object]]:
        result = influx.query(text, db="k")[0]
        return result["series"][0]["values"] if "series" in result else []

    assert q("SELECT count(occupied) FROM bay_state") == [[0, 2]]
    assert q("SELECT state, gateway_id FROM bay_state WHERE bay_id = 'B1'") == [
        [T0 + 10 * MIN + 30_000, "occupied", "gw-1"],
        [T0 + 90 * MIN, "vacant", "gw-1"],
    ]
    assert q("SELECT duration_s, overstay_s, alerts FROM bay_session") == [
        [T0 + 10 * MIN + 30_000, 79.5 * 60, 9.5 * 60, 1]
    ]
    assert q("SELECT alert_id, open, kind FROM alert") == [
        [T0 + 2 * MIN, "up1", 1, "unpaid"],
        [T0 + 80 * MIN + 30_000, "ov1", 1, "overstay"],
        [T0 + 90 * MIN, "ov1", 0, "overstay"],
    ]
    # Minute by minute: Z1 has B2 occupied throughout, B1 occupied from 08:11 to 09:29.
    z1 = q("SELECT occupied, vacant, unknown, total, rate FROM zone_occupancy WHERE zone_id = 'Z1'")
    assert len(z1) == 120
    assert z1[0] == [T0, 1, 1, 0, 2, 0.5]
    assert z1[10] == [T0 + 10 * MIN, 1, 1, 0, 2, 0.5]
    assert z1[11] == [T0 + 11 * MIN, 2, 0, 0, 2, 1.0]
    assert z1[89] == [T0 + 89 * MIN, 2, 0, 0, 2, 1.0]
    assert z1[90] == [T0 + 90 * MIN, 1, 1, 0, 2, 0.5]
    z2 = q("SELECT occupied, unknown, total, rate FROM zone_occupancy WHERE zone_id = 'Z2'")
    assert z2[0] == [T0, 0, 1, 1, None]


def backfill(tmp_path: Path, influx: Influxd, start: int, end: int) -> None:
    (tmp_path / "collector.yaml").write_text(
        "site: site.yaml\nstore: {path: collector.db}\nalert_delay_s: 15\n"
        f"influxdb: {{url: '{influx.url}', api: v1, database: k, batch_size: 50}}\n"
    )
    args = ["--config", str(tmp_path / "collector.yaml")]
    args += ["--from", format_instant(start), "--to", format_instant(end)]
    assert main(["backfill", *args]) == 0


def occupancy_minutes(influx: Influxd, zone: str) -> list[int]:
    result = influx.query(f"SELECT total FROM zone_occupancy WHERE zone_id = '{zone}'", db="k")
    return [row[0] for row in result[0]["series"][0]["values"]] if "series" in result[0] else []


def test_backfill_writes_no_minute_that_is_not_over(
    tmp_path: Path,
    influx: Influxd,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """At 08:22:10 (a stopped clock), a backfill to 09:00 writes zone_occupancy to 08:21 only:
    08:21 + alert_delay_s (15 s) has passed, 08:22 + 15 s has not."""
    (tmp_path / "site.yaml").write_text(SITE)
    fill_store(SqliteStore(tmp_path / "collector.db"))
    monkeypatch.setenv("KERBSIDE_COLLECTOR_CLOCK", f"{format_instant(T0 + 22 * MIN + 10_000)},0,0")
    backfill(tmp_path, influx, T0, T0 + 60 * MIN)
    out = capsys.readouterr().out
    assert "zone_occupancy 44;" in out  # 22 minutes x 2 zones
    assert "zone_occupancy: no points from 2026-11-26T08:22:00.000Z on" in out
    assert occupancy_minutes(influx, "Z1") == [T0 + k * MIN for k in range(22)]
    # The rest is written once it is over: a later backfill fills it in.
    monkeypatch.setenv("KERBSIDE_COLLECTOR_CLOCK", f"{format_instant(T0 + 2 * 60 * MIN)},0,0")
    backfill(tmp_path, influx, T0, T0 + 60 * MIN)
    assert occupancy_minutes(influx, "Z1") == [T0 + k * MIN for k in range(60)]


def test_backfill_writes_no_minute_before_the_bays_existed(
    tmp_path: Path, influx: Influxd, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Z1's bays came into being at 07:00, Z2's bay (B3) at 08:30 (a site reload added it)."""
    (tmp_path / "site.yaml").write_text(SITE)
    origins = {"B1": T0 - 60 * MIN, "B2": T0 - 60 * MIN, "B3": T0 + 30 * MIN}
    fill_store(SqliteStore(tmp_path / "collector.db"), origins)
    monkeypatch.setenv("KERBSIDE_COLLECTOR_CLOCK", f"{format_instant(T0 + 24 * 60 * MIN)},0,0")
    backfill(tmp_path, influx, T0 - 3 * 60 * MIN, T0 + 60 * MIN)
    assert occupancy_minutes(influx, "Z1") == [T0 + k * MIN for k in range(-60, 60)]
    assert occupancy_minutes(influx, "Z2") == [T0 + k * MIN for k in range(30, 60)]


def test_a_store_without_origins_counts_each_bay_from_its_first_state_change(
    store: Store,
) -> None:
    write(store, state_changes=[("B1", T0 + 5 * MIN, "vacant"), ("B1", T0 + 9 * MIN, "occupied")])
    assert store.bay_origins(["B1", "B2"]) == {"B1": T0 + 5 * MIN}  # B2: no trace, no origin
    # Noting the site later keeps the earlier evidence; a bay first met now starts now.
    assert store.note_bays(["B1", "B2"], T0 + 60 * MIN) == 2
    assert store.note_bays(["B1", "B2", "B3"], T0 + 90 * MIN) == 1
    assert store.bay_origins() == {"B1": T0 + 5 * MIN, "B2": T0 + 60 * MIN, "B3": T0 + 90 * MIN}
    store.close()


def test_backfill_refuses_bad_arguments(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "site.yaml").write_text(SITE)
    (tmp_path / "c.yaml").write_text("site: site.yaml\nstore: {path: collector.db}\n")
    assert (
        main(
            [
                "backfill",
                "--config",
                str(tmp_path / "c.yaml"),
                "--from",
                "2026-11-26T00:00:00Z",
                "--to",
                "2026-11-27T00:00:00Z",
            ]
        )
        == 2
    )
    assert "influxdb: not configured" in capsys.readouterr().err
    (tmp_path / "c.yaml").write_text(
        "site: site.yaml\nstore: {path: collector.db}\n"
        "influxdb: {url: 'http://127.0.0.1:9', api: v1, database: k}\n"
    )
    assert (
        main(
            [
                "backfill",
                "--config",
                str(tmp_path / "c.yaml"),
                "--from",
                "2026-11-27T00:00:00Z",
                "--to",
                "2026-11-26T00:00:00Z",
            ]
        )
        == 2
    )
    assert "--to: must be after --from" in capsys.readouterr().err
