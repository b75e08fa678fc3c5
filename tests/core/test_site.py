"""The site file (docs/site-file.md): loading, every error with its path, and the site commands."""

from __future__ import annotations

import argparse
import copy
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from kerbside.core.site import HourRange, SiteError, load_site, parse_site
from kerbside.core.site_cli import add_site_commands
from kerbside.edge.config import load_edge_config

GOOD: dict[str, Any] = {
    "site": "camden-demo",
    "timezone": "Europe/London",
    "defaults": {"grace_minutes": 10, "observation_minutes": 5},
    "holidays": ["2027-04-02", "2027-04-05"],
    "zones": [
        {
            "id": "CA-F",
            "name": "Camden Town",
            "except_holidays": True,
            "controlled_hours": [
                {
                    "days": ["mon", "tue", "wed", "thu", "fri", "sat"],
                    "start": "08:30",
                    "end": "18:30",
                }
            ],
        },
        {"id": "CA-G", "controlled_hours": "any", "grace_minutes": 15},
    ],
    "bays": [
        {
            "id": "CA-F-PKW-001",
            "zone": "CA-F",
            "street": "Parkway",
            "kind": "paid",
            "max_stay_minutes": 240,
            "controlled_hours": "any",
            "location": {"lat": 51.5378, "lon": -0.1452},
            "sensor": "S-000001",
            "gateway": "gw-parkway-01",
        },
        {
            "id": "CA-F-PKW-002",
            "zone": "CA-F",
            "kind": "resident",
            "sensor": "BLE-00C0FFEE",
            "gateway": "gw-parkway-01",
            "observation_minutes": 2,
        },
        {"id": "CA-G-001", "zone": "CA-G", "kind": "loading", "gateway": "gw-2", "sensor": "S-2"},
    ],
}


def test_the_spec_example_loads_with_effective_values(tmp_path: Path) -> None:
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(GOOD))
    site = load_site(path)
    assert site.name == "camden-demo"
    assert len(site.holidays) == 2
    first, second, third = site.bays.values()
    assert first.controlled_hours == "any"  # the bay's override
    assert second.controlled_hours == (
        HourRange(frozenset(range(6)), 8 * 60 + 30, 18 * 60 + 30),
    )  # the zone's
    assert (first.grace_minutes, first.observation_minutes) == (10, 5)
    assert (second.grace_minutes, second.observation_minutes) == (10, 2)
    assert third.grace_minutes == 15
    assert second.except_holidays
    assert [b.needs_right for b in (first, second, third)] == [True, True, False]
    assert [b.id for b in site.bays_of_gateway("gw-parkway-01")] == [first.id, second.id]
    assert [b.id for b in site.bays_of_zone("CA-G")] == ["CA-G-001"]
    assert site.bay_of_sensor["S-2"] is third


def broken(path: str, value: Any) -> dict[str, Any]:
    """GOOD with one value replaced (``value`` ... deletes the key); path like zones.0.name."""
    data = copy.deepcopy(GOOD)
    *parents, last = path.split(".")
    node: Any = data
    for part in parents:
        node = node[int(part)] if part.isdigit() else node[part]
    key: Any = int(last) if last.isdigit() else last
    if value is ...:
        del node[key]
    else:
        node[key] = value
    return data


ERRORS = [
    ("zones.0.controlled_hours.0.end", "08:30", "zones[0].controlled_hours[0].end: equals start"),
    (
        "zones.0.controlled_hours.0.end",
        "24:01",
        "zones[0].controlled_hours[0].end: expected a time",
    ),
    ("zones.0.controlled_hours.0.start", "24:00", "zones[0].controlled_hours[0].start: expected a"),
    ("zones.0.controlled_hours.0.days", ["mon", "xyz"], "zones[0].controlled_hours[0].days[1]: "),
    ("zones.0.controlled_hours.0.days", [], "zones[0].controlled_hours[0].days: expected a"),
    ("zones.0.controlled_hours", "sometimes", "zones[0].controlled_hours: expected any, none"),
    ("zones.0.controlled_hours", ..., "zones[0].controlled_hours: required"),
    ("zones.1.id", "CA-F", "zones[1].id: zone CA-F is defined twice"),
    ("zones.1.id", "bad id!", "zones[1].id: expected an id"),
    ("bays.1.zone", "NOPE", "bays[1].zone: unknown zone 'NOPE'"),
    ("bays.1.kind", "valet", "bays[1].kind: expected one of paid"),
    ("bays.1.id", "CA-F-PKW-001", "bays[1].id: bay CA-F-PKW-001 is defined twice"),
    ("bays.1.sensor", "S-000001", "bays[1].sensor: sensor S-000001 is already on bay"),
    ("bays.1.max_stay_minutes", 0, "bays[1].max_stay_minutes: expected a whole number of"),
    ("bays.1.observation_minutes", -1, "bays[1].observation_minutes: expected a whole number"),
    ("bays.0.location", {"lat": 95, "lon": 0}, "bays[0].location.lat: expected a number"),
    ("bays.0.colour", "red", "bays[0].colour: unknown key"),
    ("timezone", "Europe/Camden", "timezone: unknown time zone"),
    ("timezone", ..., "timezone: required"),
    ("holidays", ["2027-02-30"], "holidays[0]: expected a date"),
    ("defaults.grace_minutes", "ten", "defaults.grace_minutes: expected a whole number"),
    # huge numbers would overflow the store's 64-bit integers once in milliseconds
    (
        "bays.1.max_stay_minutes",
        99999999999999999999,
        "bays[1].max_stay_minutes: expected a whole number of minutes from 1 to 10080 (a week), "
        "got 99999999999999999999",
    ),
    ("bays.1.max_stay_minutes", 10081, "bays[1].max_stay_minutes: expected a whole number of"),
    (
        "bays.1.grace_minutes",
        1441,
        "bays[1].grace_minutes: expected a whole number of minutes from 0 to 1440 (a day), "
        "got 1441",
    ),
    ("bays.1.observation_minutes", 2**63, "bays[1].observation_minutes: expected a whole"),
    ("zones.0.grace_minutes", 2**64, "zones[0].grace_minutes: expected a whole number of"),
    ("defaults.observation_minutes", 10**20, "defaults.observation_minutes: expected a whole"),
    ("defaults.grace_minutes", 10**20, "defaults.grace_minutes: expected a whole number of"),
]


@pytest.mark.parametrize(("path", "value", "message"), ERRORS)
def test_every_error_names_its_path(path: str, value: Any, message: str) -> None:
    with pytest.raises(SiteError) as caught:
        parse_site(broken(path, value))
    assert any(e.startswith(message) for e in caught.value.errors), caught.value.errors


def test_the_longest_rules_allowed_are_taken() -> None:
    data = broken("bays.1.max_stay_minutes", 7 * 24 * 60)
    data["bays"][1].update(grace_minutes=24 * 60, observation_minutes=24 * 60)
    bay = parse_site(data).bays["CA-F-PKW-002"]
    assert (bay.max_stay_minutes, bay.grace_minutes, bay.observation_minutes) == (10080, 1440, 1440)


def test_all_errors_are_reported_at_once() -> None:
    data = broken("zones.0.controlled_hours.0.end", "08:30")
    data["bays"][2]["kind"] = "valet"
    data["timezone"] = "Nowhere/Else"
    with pytest.raises(SiteError) as caught:
        parse_site(data)
    assert len(caught.value.errors) >= 3
    assert "(and" in str(caught.value)  # the one-line form counts the rest


def test_crossing_midnight_and_whole_day_are_valid() -> None:
    data = broken(
        "zones.0.controlled_hours",
        [
            {"days": ["fri"], "start": "20:00", "end": "02:00"},
            {"days": ["sun"], "start": "00:00", "end": "24:00"},
            {"days": ["sat"], "start": "22:00", "end": "00:00"},
        ],
    )
    hours = parse_site(data).zones["CA-F"].controlled_hours
    assert isinstance(hours, tuple)
    assert [(h.start_min, h.end_min) for h in hours] == [(1200, 120), (0, 1440), (1320, 0)]


def run_site_command(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="kerbside")
    add_site_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    result: int = args.func(args)
    return result


def test_site_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump(GOOD))
    assert run_site_command(["site", "check", str(good)]) == 0
    assert "ok" in capsys.readouterr().out
    bad = tmp_path / "bad.yaml"
    data = broken("zones.0.controlled_hours.0.end", "08:30")
    data["bays"][2]["zone"] = "NOPE"
    bad.write_text(yaml.safe_dump(data))
    assert run_site_command(["site", "check", str(bad)]) == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 3, err  # bays of the broken zone are not blamed for it
    assert any(re.match(rf"{bad}:\d+: zones\[0\]\.controlled_hours\[0\]\.end: ", e) for e in err)
    assert any(re.match(rf"{bad}:\d+: bays\[2\]\.zone: unknown zone", e) for e in err)
    assert err[-1] == f"{bad}: 2 errors, 0 warnings"
    missing = tmp_path / "missing.yaml"
    assert run_site_command(["site", "check", str(missing)]) == 1
    assert "no such file" in capsys.readouterr().err
    notyaml = tmp_path / "notyaml.yaml"
    notyaml.write_text("zones: [\n")
    assert run_site_command(["site", "check", str(notyaml)]) == 1
    assert "not valid YAML" in capsys.readouterr().err


def test_site_edge_config_loads_as_an_edge_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump(GOOD))
    assert run_site_command(["site", "edge-config", str(good), "--gateway", "gw-parkway-01"]) == 0
    out = tmp_path / "edge.yaml"
    out.write_text(capsys.readouterr().out)
    config = load_edge_config(out)
    assert config.gateway_id == "gw-parkway-01"
    assert config.bay_of_sensor == {"S-000001": "CA-F-PKW-001", "BLE-00C0FFEE": "CA-F-PKW-002"}
    assert config.ble.enabled
    assert [p.port for p in config.serial] == ["/dev/ttyUSB0"]
    assert run_site_command(["site", "edge-config", str(good), "--gateway", "gw-nope"]) == 1
    assert "gw-nope" in capsys.readouterr().err


def test_site_edge_config_refuses_a_port_the_edge_config_could_not_hold(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump(GOOD))
    for port in ("0", "99999", "http"):
        with pytest.raises(SystemExit) as exit_:
            run_site_command(
                [
                    "site",
                    "edge-config",
                    str(good),
                    "--gateway",
                    "gw-parkway-01",
                    "--mqtt-port",
                    port,
                ]
            )
        assert exit_.value.code == 2
        err = capsys.readouterr().err
        assert err.splitlines()[-1].startswith(
            "kerbside site edge-config: error: argument --mqtt-port"
        )
        assert repr(port) in err


def test_umbrella_command_runs_site_check(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from kerbside.cli import main  # noqa: PLC0415 - the umbrella pulls in every component

    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump(GOOD))
    assert main(["site", "check", str(good)]) == 0
    assert "3 bays" in capsys.readouterr().out
