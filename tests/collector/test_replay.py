"""``kerbside-collector replay`` end to end: the command, its output, errors and ``--until``."""

from __future__ import annotations

import gzip
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from kerbside.collector import console
from kerbside.collector.cli import main
from kerbside.collector.replay import replay_lines
from tests.collector.rules_builders import Journal, make_site
from tests.helpers import run_on_full_disk, run_with_reader_gone

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
    assert err == f"{journal}: 5 records read: 5 applied, 0 skipped; 3 alerts printed\n"
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


def with_bad_lines() -> Journal:
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
    journal.raw("not json either")
    return journal


def test_bad_lines_get_one_line_errors_and_the_rest_carries_on(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    site, path = write(tmp_path, with_bad_lines())
    assert main(["replay", str(path), "--site", str(site)]) == 0
    out, err = capsys.readouterr()
    assert err.splitlines() == [
        f"{path}: line 2: not_json: not JSON: Expecting value: line 1 column 1 (char 0)",
        f"{path}: line 8: duplicate_conflict: event_id: repeated with a different body",
        f"{path}: line 9: unknown_bay: bay_id: unknown bay 'B9'",
        f"{path}: line 11: not_json: not JSON: Expecting value: line 1 column 1 (char 0)",
        # the reasons most common first; the repeat is neither applied nor skipped
        f"{path}: 10 records read: 5 applied, 1 repeated event ignored, 4 skipped"
        " (not_json 2, duplicate_conflict 1, unknown_bay 1); 3 alerts printed",
    ]
    assert len(out.splitlines()) == 3


def test_strict_exits_1_on_a_skipped_line_with_the_same_stdout(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Skipped lines leave the alerts of the good ones as they are, with or without --strict;
    only the exit status tells that the result does not cover the whole journal."""
    site, clean = write(tmp_path, busy_journal())
    assert main(["replay", str(clean), "--site", str(site), "--strict"]) == 0
    whole = capsys.readouterr().out
    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n".join(with_bad_lines().lines) + "\n")
    assert main(["replay", str(bad), "--site", str(site)]) == 0
    lenient, lenient_err = capsys.readouterr()
    assert main(["replay", str(bad), "--site", str(site), "--strict"]) == 1
    strict, strict_err = capsys.readouterr()
    assert lenient == strict == whole
    assert all(json.loads(line)["v"] == 1 for line in whole.splitlines())
    assert strict_err == lenient_err
    assert strict_err.splitlines()[-1].startswith(f"{bad}: 10 records read: 5 applied, ")


def test_the_summary_counts_records_after_until(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    site, journal = write(tmp_path, busy_journal())
    until = "2026-11-26T09:30:00Z"  # the two arrivals and the right, not the two departures
    assert main(["replay", str(journal), "--site", str(site), "--until", until, "--strict"]) == 0
    out, err = capsys.readouterr()
    assert len(out.splitlines()) == 1
    assert err == (
        f"{journal}: 5 records read: 3 applied, 2 after --until, 0 skipped; 1 alert printed\n"
    )


def test_an_empty_journal_is_no_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    site, journal = write(tmp_path, Journal())
    assert main(["replay", str(journal), "--site", str(site), "--strict"]) == 0
    out, err = capsys.readouterr()
    assert out == ""
    assert err == f"{journal}: 0 records read: 0 applied, 0 skipped; 0 alerts printed\n"


def test_a_line_not_utf8_or_with_a_nul_byte_is_skipped_like_any_bad_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A journal with a line of binary garbage near its start is still a journal: the good
    lines are replayed."""
    site, journal = write(tmp_path, busy_journal())
    good = journal.read_bytes()
    journal.write_bytes(b"caf\xe9\n\x00\x01\x02\n" + good)
    assert main(["replay", str(journal), "--site", str(site)]) == 0
    out, err = capsys.readouterr()
    assert len(out.splitlines()) == 3
    assert err.splitlines() == [
        f"{journal}: line 1: not_utf8: not UTF-8 at byte 3",
        f"{journal}: line 2: not_json: not JSON: Expecting value: line 1 column 1 (char 0)",
        f"{journal}: 7 records read: 5 applied, 2 skipped (not_json 1, not_utf8 1);"
        " 3 alerts printed",
    ]


_GOOD = "\n".join(busy_journal().lines) + "\n"


@pytest.mark.parametrize(
    ("content", "says"),
    [
        pytest.param(gzip.compress(_GOOD.encode(), mtime=0), "gzip-compressed", id="gzip"),
        pytest.param(b"SQLite format 3\x00" + bytes(4080), "a SQLite database", id="sqlite"),
        pytest.param(_GOOD.encode("utf-16"), "UTF-16 text", id="utf16"),
        pytest.param(_GOOD.encode("utf-16-be"), "not text: a NUL byte at byte 0", id="utf16be"),
        pytest.param(bytes(range(256)) * 64, "not text: a NUL byte at byte 0", id="binary"),
    ],
)
def test_a_file_that_is_not_a_journal_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes, says: str
) -> None:
    """Not one line of it a record, and not text: one line saying what it is, where every line
    would have been rejected, and no alerts; --strict or not."""
    site, journal = write(tmp_path, Journal())
    journal.write_bytes(content)
    for strict in ([], ["--strict"]):
        assert main(["replay", str(journal), "--site", str(site), *strict]) == 2
        out, err = capsys.readouterr()
        assert out == ""
        assert err.startswith(f"kerbside-collector: {journal}: not a journal: {says}")
        assert len(err.splitlines()) == 1


@pytest.mark.parametrize(
    ("name", "says"),
    [("missing.jsonl", "No such file or directory"), (".", "Is a directory")],
)
def test_a_journal_that_cannot_be_opened_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, says: str
) -> None:
    site, _ = write(tmp_path, busy_journal())
    path = tmp_path / name
    assert main(["replay", str(path), "--site", str(site)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err == f"kerbside-collector: {path}: cannot read: {says}\n"


def replay_command(*args: str) -> list[str]:
    """``kerbside-collector replay`` as a program, the way a shell runs it."""
    return [sys.executable, "-m", "kerbside.collector.cli", "replay", *args]


def test_stdin_is_read_for_a_dash(tmp_path: Path) -> None:
    site, journal = write(tmp_path, with_bad_lines())
    done = subprocess.run(
        replay_command("-", "--site", str(site), "--strict"),
        input=journal.read_bytes(),
        capture_output=True,
        check=False,
    )
    assert done.returncode == 1
    assert len(done.stdout.splitlines()) == 3
    err = done.stderr.decode().splitlines()
    assert err[0].startswith("stdin: line 2: not_json: ")
    assert err[-1].startswith("stdin: 10 records read: 5 applied, ")


def test_a_journal_saved_with_a_byte_order_mark_is_replayed_whole(tmp_path: Path) -> None:
    """Windows editors put one at the start of a file, from a file or on stdin; one at the
    start of a later line is that line's mistake, as before."""
    site, journal = write(tmp_path, busy_journal())
    whole = subprocess.run(
        replay_command(str(journal), "--site", str(site)), capture_output=True, check=True
    )
    good = journal.read_bytes()
    journal.write_bytes(b"\xef\xbb\xbf" + good)
    for name in (str(journal), "-"):
        done = subprocess.run(
            replay_command(name, "--site", str(site), "--strict"),
            input=journal.read_bytes() if name == "-" else None,
            capture_output=True,
            check=False,
        )
        assert (done.returncode, done.stdout) == (0, whole.stdout)
        said = "stdin" if name == "-" else name
        assert done.stderr.decode() == (
            f"{said}: 5 records read: 5 applied, 0 skipped; 3 alerts printed\n"
        )
    lines = good.splitlines(keepends=True)
    journal.write_bytes(b"".join([lines[0], b"\xef\xbb\xbf" + lines[1], *lines[2:]]))
    done = subprocess.run(
        replay_command(str(journal), "--site", str(site), "--strict"),
        capture_output=True,
        check=False,
    )
    assert done.returncode == 1
    assert done.stderr.decode().splitlines()[0] == (
        f"{journal}: line 2: not_json: not JSON: Unexpected UTF-8 BOM (decode using utf-8-sig):"
        " line 1 column 1 (char 0)"
    )


def test_a_program_reading_a_binary_file_says_one_line_and_no_traceback(tmp_path: Path) -> None:
    site, journal = write(tmp_path, Journal())
    journal.write_bytes(bytes(range(256)) * 4096)
    done = subprocess.run(
        replay_command(str(journal), "--site", str(site)), capture_output=True, check=False
    )
    assert (done.returncode, done.stdout) == (2, b"")
    assert done.stderr.decode() == (
        f"kerbside-collector: {journal}: not a journal: not text: a NUL byte at byte 0"
        " (a binary file, or UTF-16)\n"
    )


def test_a_reader_that_stops_early_ends_the_output_quietly(tmp_path: Path) -> None:
    """``replay ... | head``: no traceback, and no summary of alerts that were not all printed;
    the exit status is still the journal's."""
    site, journal = write(tmp_path, with_bad_lines())
    for strict, status in (([], 0), (["--strict"], 1)):
        code, err = run_with_reader_gone(replay_command(str(journal), "--site", str(site), *strict))
        assert code == status
        assert "Traceback" not in err, err
        assert "Exception ignored" not in err, err
        assert err.splitlines()[0].startswith(f"{journal}: line 2: not_json: ")
        assert "alerts printed" not in err


def test_a_full_disk_under_stdout_is_one_line_and_exit_1(tmp_path: Path) -> None:
    site, journal = write(tmp_path, busy_journal())
    done = run_on_full_disk(replay_command(str(journal), "--site", str(site)))
    assert done.returncode == 1
    assert done.stderr == "kerbside-collector: cannot write to stdout: No space left on device\n"


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_on_a_terminal_is_wiped_before_anything_else_is_printed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Drawn at every record here (a long journal's pace, sped up), on stderr only, and never
    left under an error line or the summary."""
    monkeypatch.setattr(console, "TERMINAL_EVERY_S", 0.0)
    monkeypatch.setattr(console, "TICK_EVERY", 1)
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    site, journal = write(tmp_path, busy_journal())
    journal.write_text("not json\n" + journal.read_text())
    assert main(["replay", str(journal), "--site", str(site)]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 3
    wipe = "\r\x1b[K"
    parts = terminal.getvalue().split(wipe)
    progress, after = parts[1:-1], parts[-1]
    assert f"{journal}: 6 lines read" in progress
    assert f"{journal}: 5 of 5 records applied (100%)" in progress
    # what is left on the screen: the error line (after the reading's progress) and the summary
    shown = [part for part in parts if "\n" in part]
    assert shown == [
        f"{journal}: line 1: not_json: not JSON: Expecting value: line 1 column 1 (char 0)\n",
        f"{journal}: 6 records read: 5 applied, 1 skipped (not_json 1); 3 alerts printed\n",
    ]
    assert after == shown[-1]


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


def test_console_script_help_has_examples_the_summary_and_the_exit_status() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "kerbside.collector.cli", "replay", "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "examples:\n  kerbside-collector replay journal.jsonl" in done.stdout
    assert "Nothing else goes to stdout" in done.stdout
    assert "skipped by reason" in done.stdout
    assert "exit status:" in done.stdout
    assert "--strict" in done.stdout
    assert "or stdout cannot be written (a full disk)" in done.stdout
