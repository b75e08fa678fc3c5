"""``kerbside-collector replay`` end to end: the command, its output, errors and ``--until``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from kerbside.collector.cli import main
from kerbside.collector.replay import replay_lines
from tests.collector.rules_builders import Journal, make_site

pytestmark = pytest.mark.slow  # starts processes (brokers, programs, servers)

SITE_YAML = {
    "site": "camden-demo",
    "timezone": "Europe/London",
    "defaults": {"grace_minutes": 10, "observation_minutes": 5},
    "zones": [
        {
            "id": "CA-F",
            "name": "Camden Town",
            "controlled_hours": [
                {
                    "days": ["mon", "tue", "wed", "thu", "fri", "sat"],
                    "start": "08:30",
                    "end": "18:30",
                }
            ],
        }
    ],
    "bays": [
        {
            "id": "B1",
            "zone": "CA-F",
            "street": "Parkway",
            "kind": "paid",
            "max_stay_minutes": 240,
            "location": {"lat": 51.5378, "lon": -0.1452},
            "sensor": "S1",
            "gateway": "gw1",
        },
        {"id": "B2", "zone": "CA-F", "kind": "paid", "sensor": "S2", "gateway": "gw1"},
    ],
}


def write(tmp_path: Path, journal: Journal) -> tuple[Path, Path]:
    site = tmp_path / "site.yaml"
    site.write_text(yaml.safe_dump(SITE_YAML))
    lines = tmp_path / "journal.jsonl"
    lines.write_text("\n".join(journal.lines) + "\n")
    return site, lines


def busy_journal() -> Journal:
    return (
        Journal()
        .park("2026-11-26 09:00", "2026-11-26 14:00", bay="B2")
        .park("2026-11-26 09:00", "2026-11-26 14:00")
        .right("p1", "2026-11-26 09:00", "2026-11-26 10:00")
    )


def test_replay_prints_sorted_alert_records(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    site, journal = write(tmp_path, busy_journal())
    assert main(["replay", str(journal), "--site", str(site)]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    records = [json.loads(line) for line in out.splitlines()]
    assert [(r["raised_at"], r["bay_id"], r["kind"]) for r in records] == [
        ("2026-11-26T09:05:00.000Z", "B2", "unpaid"),
        ("2026-11-26T10:10:00.000Z", "B1", "expired"),
        ("2026-11-26T13:10:00.000Z", "B1", "overstay"),
    ]
    assert records[2] == {
        "v": 1,
        "alert_id": records[2]["alert_id"],
        "kind": "overstay",
        "status": "cleared",
        "bay_id": "B1",
        "zone_id": "CA-F",
        "street": "Parkway",
        "location": {"lat": 51.5378, "lon": -0.1452},
        "session_start": "2026-11-26T09:00:00.000Z",
        "raised_at": "2026-11-26T13:10:00.000Z",
        "cleared_at": "2026-11-26T14:00:00.000Z",
        "clear_reason": "vehicle_left",
    }
    assert records[1]["street"] == "Parkway"
    assert records[0]["street"] is None


def test_replay_is_deterministic_and_order_independent_within_the_file(tmp_path: Path) -> None:
    site = make_site()
    journal = busy_journal()
    once = replay_lines(journal.lines, site)
    again = replay_lines(list(reversed(journal.lines)), site)
    assert once == again
    assert once[0][0]["alert_id"] == replay_lines(journal.lines, site)[0][0]["alert_id"]


def test_bad_lines_get_one_line_errors_and_the_rest_carries_on(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    journal = busy_journal()
    journal.lines.insert(1, "this is not json")
    journal.lines.insert(3, journal.lines[2])  # an exact repeat: ignored silently
    changed = json.loads(journal.lines[2])
    changed["state"] = "occupied"
    journal.lines.append(json.dumps(changed))  # same event_id, different body: rejected
    journal.raw(
        json.dumps(
            {
                "type": "right",
                "right_id": "x",
                "kind": "payment",
                "bay_id": "B9",
                "start": "2026-11-26T09:00:00Z",
                "end": "2026-11-26T10:00:00Z",
            }
        )
    )
    journal.raw("")
    site, path = write(tmp_path, journal)
    assert main(["replay", str(path), "--site", str(site)]) == 0
    out, err = capsys.readouterr()
    errors = err.splitlines()
    assert errors == [
        f"{path}: line 2: not_json: not JSON: Expecting value: line 1 column 1 (char 0)",
        f"{path}: line 8: duplicate_conflict: event_id: repeated with a different body",
        f"{path}: line 9: unknown_bay: bay_id: unknown bay 'B9'",
    ]
    assert len(out.splitlines()) == 3


def test_until(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    site, journal = write(tmp_path, busy_journal())
    main(["replay", str(journal), "--site", str(site), "--until", "2026-11-26T10:10:00Z"])
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(r["kind"], r["status"], r["cleared_at"]) for r in records] == [
        ("unpaid", "open", None),
        ("expired", "open", None),
    ]


def test_bad_until_and_bad_site_are_one_line_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bad --until is one line; a bad site file is one line per mistake, each with the file
    and line (as ``kerbside site check`` prints them), and no traceback."""
    site, journal = write(tmp_path, busy_journal())
    assert main(["replay", str(journal), "--site", str(site), "--until", "soon"]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1
    assert "--until" in err
    bad = tmp_path / "bad.yaml"
    bad.write_text("site: x\n")
    assert main(["replay", str(journal), "--site", str(bad)]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert [line.split(": ")[1] for line in lines] == ["timezone", "zones", "bays"]
    assert all(line.startswith(f"{bad}:1: ") for line in lines), lines


def test_console_script_help_has_an_example() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "kerbside.collector.cli", "replay", "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "example: kerbside-collector replay" in done.stdout
