"""``kerbside site check`` as a process: every error with its line, warnings, ``--strict``; and
stdout on a full disk or closed, for ``site edge-config`` too."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import run_on_full_disk, run_with_reader_gone

pytestmark = pytest.mark.slow  # starts processes (brokers, programs, servers)

SITE = [sys.executable, "-m", "kerbside.cli", "site", "check"]

HEAD = """\
site: camden
timezone: Europe/London
zones:
  - id: CA-F
    controlled_hours:
      - {days: [mon, tue, wed, thu, fri], start: "08:30", end: "18:30"}
"""


def check(path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*SITE, *extra, str(path)], check=False, capture_output=True, text=True, timeout=60
    )


def bay(n: int, **fields: str) -> str:
    values = {
        "id": f"CA-F-PKW-{n:03d}",
        "zone": "CA-F",
        "kind": "paid",
        "sensor": f"S-{n:06d}",
        "gateway": "gw-1",
        "location": "{lat: 51.5378, lon: -0.1452}",
    }
    values.update(fields)
    inner = ", ".join(f"{k}: {v}" for k, v in values.items() if v != "-")
    return f"  - {{{inner}}}\n"


def test_a_zone_error_and_a_duplicate_sensor_are_both_reported(tmp_path: Path) -> None:
    site = tmp_path / "site.yaml"
    site.write_text(
        HEAD
        + "  - id: CA-G\n"
        + "    controlled_hours:\n"
        + '      - {days: [mon, tues], start: "08:30", end: "18:30"}\n'  # line 9
        + "bays:\n"
        + bay(1)
        + bay(2, zone="CA-G", sensor="S-000001")  # line 12: in the broken zone, and a duplicate
    )
    result = check(site)
    assert result.returncode == 1
    err = result.stderr.splitlines()
    assert err == [
        f"{site}:9: zones[1].controlled_hours[0].days[1]: expected one of mon, tue, wed, thu, "
        "fri, sat, sun, got 'tues' (did you mean tue?)",
        f"{site}:12: bays[1].sensor: sensor S-000001 is already on bay CA-F-PKW-001",
        f"{site}: 2 errors, 0 warnings",
    ]


def test_mistakes_get_a_did_you_mean(tmp_path: Path) -> None:
    site = tmp_path / "site.yaml"
    site.write_text(
        HEAD.replace("Europe/London", "Europe/Londn")
        + "bays:\n"
        + bay(1, kind="payed")
        + bay(2, zone="CA-X")
        + "  - {id: CA-F-PKW-003, zone: CA-F, kind: paid, max_stay_minute: 30}\n"
    )
    err = check(site).stderr
    assert (
        f"{site}:2: timezone: unknown time zone 'Europe/Londn' (did you mean Europe/London?)" in err
    )
    assert f"{site}:8: bays[0].kind: " in err
    assert "got 'payed' (did you mean paid?)" in err
    assert f"{site}:9: bays[1].zone: unknown zone 'CA-X' (did you mean CA-F?)" in err
    assert (
        f"{site}:10: bays[2].max_stay_minute: unknown key (did you mean max_stay_minutes?)" in err
    )


def test_coordinates_that_are_not_numbers_on_the_map_are_errors(tmp_path: Path) -> None:
    site = tmp_path / "site.yaml"
    site.write_text(
        HEAD
        + "bays:\n"
        + bay(1, location="{lat: .nan, lon: -0.1452}")
        + bay(2, location="{lat: 51.5378, lon: .inf}")
    )
    result = check(site)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"{site}:8: bays[0].location.lat: expected a number within +-90, got nan",
        f"{site}:9: bays[1].location.lon: expected a number within +-180, got inf",
        f"{site}: 2 errors, 0 warnings",
    ]


def test_warnings_pass_unless_strict(tmp_path: Path) -> None:
    site = tmp_path / "site.yaml"
    site.write_text(
        HEAD
        + '      - {days: [fri, sat], start: "17:00", end: "20:00"}\n'  # line 7: overlaps on fri
        + "bays:\n"
        + bay(1)
        + bay(2, location="{lat: -0.11, lon: 51.56}")  # line 10
        + bay(3, kind="limited")  # line 11
        + bay(4, gateway="-")  # line 12
    )
    result = check(site)
    assert result.returncode == 0, result.stderr
    err = result.stderr.splitlines()
    assert err == [
        f"{site}:7: warning: zones[0].controlled_hours[1]: overlaps "
        "zones[0].controlled_hours[0] on fri from 17:00; the two make one controlled period "
        "(write one range if that is what you mean)",
        f"{site}:10: warning: bays[1].location: {{lat: -0.11, lon: 51.56}} looks swapped (far "
        "from the other bays); did you mean {lat: 51.56, lon: -0.11}?",
        f"{site}:11: warning: bays[2].kind: limited bay without max_stay_minutes: no overstay "
        "alert is ever raised for it",
        f"{site}:12: warning: bays[3].sensor: bay has sensor S-000004 but no gateway: no "
        "gateway's events for it are accepted, and `kerbside site edge-config` leaves it out",
    ]
    assert result.stdout == f"{site}: ok: site camden, 1 zones, 4 bays (4 warnings)\n"
    assert check(site, "--strict").returncode == 1


def test_hours_that_only_meet_and_a_lone_bay_are_not_warned_about(tmp_path: Path) -> None:
    site = tmp_path / "site.yaml"
    site.write_text(
        HEAD
        + '      - {days: [fri], start: "18:30", end: "02:00"}\n'  # meets, does not overlap
        + '      - {days: [sun], start: "00:00", end: "24:00"}\n'
        + "bays:\n"
        + bay(1)
    )
    result = check(site, "--strict")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""


@pytest.mark.parametrize("action", [["check"], ["edge-config", "--gateway", "gw-1"]])
def test_a_full_disk_under_stdout_is_one_line_and_exit_1(tmp_path: Path, action: list[str]) -> None:
    site = tmp_path / "site.yaml"
    site.write_text(HEAD + "bays:\n" + bay(1) + bay(2))
    done = run_on_full_disk([sys.executable, "-m", "kerbside.cli", "site", *action, str(site)])
    assert done.returncode == 1
    assert done.stderr == "kerbside: cannot write to stdout: No space left on device\n"


def test_a_reader_gone_away_is_no_error(tmp_path: Path) -> None:
    """``kerbside site edge-config ... | head -c0``: quiet, and exit 0."""
    site = tmp_path / "site.yaml"
    site.write_text(HEAD + "bays:\n" + bay(1))
    command = [*SITE[:-1], "edge-config", "--gateway", "gw-1", str(site)]
    code, err = run_with_reader_gone(command)
    assert code == 0
    assert err == ""
