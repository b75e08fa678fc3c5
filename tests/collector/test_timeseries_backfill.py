"""``kerbside-collector backfill``: a period's points rewritten from the store into InfluxDB 1.x."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from kerbside.collector.cli import main
from kerbside.collector.store import Store
from kerbside.core.instants import format_instant, parse_instant
from tests.helpers import Influxd

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


def fill_store(path: Path) -> None:
    store = Store(path)
    with store.transaction():
        # B1: vacant before the period, occupied 08:10:30 .. 09:30:00 (overstay raised 09:20:30).
        store.add_state_change("B1", T0 - 30 * MIN, "vacant")
        store.add_state_change("B1", T0 + 10 * MIN + 30_000, "occupied")
        store.open_session("B1", T0 + 10 * MIN + 30_000)
        store.add_state_change("B1", T0 + 90 * MIN, "vacant")
        store.close_session("B1", T0 + 10 * MIN + 30_000, T0 + 90 * MIN)
        store.count_session_alert("B1", T0 + 10 * MIN + 30_000)
        raised = T0 + 80 * MIN + 30_000
        a = alert(
            "ov1", "overstay", "B1", T0 + 10 * MIN + 30_000, raised, T0 + 90 * MIN, "vehicle_left"
        )
        store.put_alert(a, raised)
        # B2: occupied from before the period to the end (an open session: no bay_session).
        store.add_state_change("B2", T0 - 5 * MIN, "occupied")
        store.open_session("B2", T0 - 5 * MIN)
        u = alert("up1", "unpaid", "B2", T0 - 5 * MIN, T0 + 2 * MIN, None, None)
        store.put_alert(u, T0 + 2 * MIN)
        # B3 never reported: unknown throughout. An event after the period is left alone.
        store.add_state_change("B1", T0 + 200 * MIN, "occupied")
    store.close()


def test_backfill_rewrites_the_period(
    tmp_path: Path, influx: Influxd, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "site.yaml").write_text(SITE)
    fill_store(tmp_path / "collector.db")
    (tmp_path / "collector.yaml").write_text(
        "site: site.yaml\nstore: {path: collector.db}\n"
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
