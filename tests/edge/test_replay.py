"""Capture records and ``kerbside-edge replay``: shape, determinism, bad lines, epochs."""

from __future__ import annotations

import errno
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from kerbside.core.instants import parse_instant
from kerbside.edge import replay
from kerbside.edge.ble import encode_payload
from kerbside.edge.capture import (
    BadCaptureLine,
    BleRecord,
    CaptureRecord,
    CaptureWriter,
    SerialRecord,
    read_capture,
)
from kerbside.edge.cli import main
from kerbside.edge.config import load_edge_config
from kerbside.edge.detector import Detector
from kerbside.edge.kbs1 import encode_frame
from kerbside.edge.model import Frame, OccupancyChange
from kerbside.edge.replay import replay_changes
from tests.helpers import run_on_full_disk, run_with_reader_gone

pytestmark = pytest.mark.slow  # starts processes (brokers, programs, servers)

T0 = parse_instant("2026-11-26T08:00:00Z")
BASE = (120, -300, 380)
PARKED = (30, -160, 440)
# what a capture line "{broken" is told
BROKEN = "Expecting property name enclosed in double quotes"


def frame(sensor: str, seq: int, field: tuple[int, int, int], flags: int = 0) -> Frame:
    return Frame(sensor, seq, flags, *field, 3500, 11.0)


def write_config(path: Path, outbox: Path, sensors: dict[str, str]) -> Path:
    lines = [
        "gateway_id: gw-test-01",
        f"outbox: {{path: {outbox}}}",
        "clock: {require_sync: false}",
        "sensors:",
        *[f"  - {{id: {sensor}, bay: {bay}}}" for sensor, bay in sensors.items()],
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def street_capture(path: Path) -> None:
    """Two serial sensors on two ports (chunks cut mid-line) and one BLE sensor: each empty,
    then a car arrives over each of them."""
    with CaptureWriter(path) as capture:
        seqs = {"S-A": 0, "S-B": 0, "BLE-0000BEEF": 0}

        def send(t_s: float, sensor: str, field: tuple[int, int, int]) -> None:
            seqs[sensor] += 1
            f = frame(sensor, seqs[sensor], field)
            t = T0 + round(t_s * 1000)
            if sensor.startswith("BLE-"):
                capture.ble(t, "C0:FF:EE:00:00:01", -70, {0xFFFF: encode_payload(f)})
                return
            line = encode_frame(f)
            src = "serial:/dev/ttyUSB0" if sensor == "S-A" else "serial:/dev/ttyUSB1"
            capture.serial(t, src, b"\x00noise" + line[:7])
            capture.serial(t + 1, src, line[7:])

        mid = tuple((a + b) // 2 for a, b in zip(BASE, PARKED, strict=True))
        plan: list[tuple[float, str, tuple[int, ...]]] = []
        for k, sensor in enumerate(seqs):
            start = 100 + 50 * k
            plan += [(0, sensor, BASE), (6, sensor, BASE), (start, sensor, mid)]
            plan += [(start + 1, sensor, PARKED), (start + 61, sensor, PARKED)]
        for t_s, sensor, field in sorted(plan):
            send(t_s, sensor, field)  # type: ignore[arg-type]


def replay_stdout(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["replay", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_capture_writer_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl"
    raw = bytes(range(256))
    with CaptureWriter(path) as capture:
        capture.serial(T0, "serial:/dev/ttyUSB0", raw)
        capture.ble(T0 + 250, "C0:FF:EE:00:00:01", -71, {65535: b"\x01\xef\xbe"})
        capture.ble(T0 + 300, "C0:FF:EE:00:00:02", None, {})
    text = path.read_text()
    assert text.count("\n") == 3
    first = json.loads(text.splitlines()[0])
    assert first["t"] == "2026-11-26T08:00:00.000Z"
    assert first["data"].encode("latin-1") == raw
    assert json.loads(text.splitlines()[1])["mfr"] == {"65535": "01efbe"}
    assert list(read_capture(path)) == [
        SerialRecord(T0, "serial:/dev/ttyUSB0", raw),
        BleRecord(T0 + 250, "ble", "C0:FF:EE:00:00:01", -71, {65535: b"\x01\xef\xbe"}),
        BleRecord(T0 + 300, "ble", "C0:FF:EE:00:00:02", None, {}),
    ]


@pytest.mark.parametrize(
    "line",
    [
        "not json",
        "[1, 2]",
        '{"src": "serial:x", "data": "a"}',
        '{"t": "yesterday", "src": "serial:x", "data": "a"}',
        '{"t": "2026-11-26T08:00:00Z", "data": "a"}',
        '{"t": "2026-11-26T08:00:00Z", "src": "serial:x"}',
        '{"t": "2026-11-26T08:00:00Z", "src": "serial:x", "data": "\\u20ac"}',
        '{"t": "2026-11-26T08:00:00Z", "src": "ble", "address": "A", "mfr": {"x": "00"}}',
        '{"t": "2026-11-26T08:00:00Z", "src": "ble", "address": "A", "mfr": {"1": "0g"}}',
        '{"t": "2026-11-26T08:00:00Z", "src": "ble", "address": "A", "rssi": "-7", "mfr": {}}',
        '{"t": "2026-11-26T08:00:00Z", "src": "ble", "mfr": {}}',
    ],
)
def test_bad_capture_lines_are_errors_with_line_numbers(tmp_path: Path, line: str) -> None:
    path = tmp_path / "c.jsonl"
    good = '{"t": "2026-11-26T08:00:00Z", "src": "serial:x", "data": "ok"}'
    path.write_text(f"{good}\n{line}\n\n{good}\n")
    records = list(read_capture(path))
    assert len(records) == 3
    assert isinstance(records[1], BadCaptureLine)
    assert records[1].line_no == 2
    assert "\n" not in records[1].message


def test_a_byte_order_mark_at_the_start_of_a_capture_is_no_part_of_line_1(tmp_path: Path) -> None:
    """Windows editors put one there; one at the start of a later line is that line's
    mistake, as before."""
    good = '{"t": "2026-11-26T08:00:00Z", "src": "serial:x", "data": "ok"}'
    path = tmp_path / "c.jsonl"
    path.write_text(f"\ufeff{good}\n\ufeff{good}\n{good}\n", encoding="utf-8")
    first, second, third = read_capture(path)
    assert first == third == SerialRecord(T0, "serial:x", b"ok")
    assert isinstance(second, BadCaptureLine)
    assert second.line_no == 2
    assert second.message.startswith("not JSON: Unexpected UTF-8 BOM")


def test_replay_prints_events_deterministically(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    capture = tmp_path / "street.jsonl"
    street_capture(capture)
    sensors = {"S-A": "BAY-A", "S-B": "BAY-B", "BLE-0000BEEF": "BAY-C"}
    config = write_config(tmp_path / "edge.yaml", tmp_path / "no-outbox.db", sensors)
    code, out, err = replay_stdout(capsys, str(capture), "--config", str(config))
    assert code == 0
    assert err == f"{capture}: 25 records read: 25 replayed, 0 skipped; 6 events printed\n"
    lines = out.splitlines()
    events = [json.loads(line) for line in lines]
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert all(e["event_id"] == f"gw-test-01:replay:{e['seq']}" for e in events)
    assert all(
        line == json.dumps(e, separators=(",", ":")) for line, e in zip(lines, events, strict=True)
    )
    by_bay = {(e["bay_id"], e["state"]): e for e in events}
    assert set(by_bay) == {
        ("BAY-A", "vacant"),
        ("BAY-B", "vacant"),
        ("BAY-C", "vacant"),
        ("BAY-A", "occupied"),
        ("BAY-B", "occupied"),
        ("BAY-C", "occupied"),
    }
    # a frame counts from the chunk that completes it
    assert by_bay["BAY-A", "occupied"]["ts"] == "2026-11-26T08:01:40.001Z"
    assert by_bay["BAY-C", "occupied"]["ts"] == "2026-11-26T08:03:20.000Z"
    assert by_bay["BAY-C", "occupied"]["sensor_id"] == "BLE-0000BEEF"
    assert by_bay["BAY-C", "occupied"]["reason"] is None
    confirmed = [e["confirmed_ts"] for e in events]
    assert confirmed == sorted(confirmed)
    again = replay_stdout(capsys, str(capture), "--config", str(config))
    assert again == (code, out, err)


def test_a_scanners_late_report_of_an_advert_is_a_duplicate_and_changes_no_event(
    tmp_path: Path,
) -> None:
    """A BLE sensor's adverts as a scanner reports them, each a few times, and one of them
    again after the sensor's next: the same events as each heard once, no frame lost, no
    reboot. It was taken for one, and its older reading held the car's confirmation back past
    the end of this capture."""
    sensor = "BLE-0000BEEF"
    config = load_edge_config(
        write_config(tmp_path / "edge.yaml", tmp_path / "no-outbox.db", {sensor: "BAY-C"})
    )
    mid = (75, -230, 410)  # half way from BASE to PARKED
    sent = [(0, BASE), (60, BASE), (120, BASE), (200, mid), (201, PARKED), (261, PARKED)]
    adverts = {
        seq: {0xFFFF: encode_payload(frame(sensor, seq, field))}
        for seq, (_, field) in enumerate(sent, start=1)
    }

    def replayed(name: str, reports: list[tuple[float, int]]) -> tuple[list[OccupancyChange], int]:
        capture = tmp_path / name
        with CaptureWriter(capture) as writer:
            for t_s, seq in reports:
                writer.ble(T0 + round(t_s * 1000), "C0:FF:EE:00:00:01", -70, adverts[seq])
        detector = Detector(config.detector, config.bay_of_sensor)
        changes = list(replay_changes(read_capture(capture), config, detector=detector))
        stats = detector.stats[sensor]
        assert (stats.frames, stats.lost_frames) == (len(sent), 0)
        return changes, stats.duplicates

    once: list[tuple[float, int]] = [(t_s, seq) for seq, (t_s, _) in enumerate(sent, start=1)]
    repeated = sorted([(t_s + k / 10, seq) for t_s, seq in once for k in range(3)] + [(201.25, 4)])
    changes, duplicates = replayed("repeated.jsonl", repeated)
    assert (changes, duplicates) == (replayed("once.jsonl", once)[0], 2 * len(sent) + 1)
    assert [(c.state, c.ts - T0, c.confirmed_ts - T0) for c in changes] == [
        ("vacant", 0, 10_000),
        ("occupied", 200_000, 210_000),
    ]


def test_bad_line_is_reported_and_the_rest_replayed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    capture = tmp_path / "street.jsonl"
    street_capture(capture)
    good = capture.read_text().splitlines()
    damaged = tmp_path / "damaged.jsonl"
    damaged.write_text("\n".join([*good[:3], "{broken", *good[3:]]) + "\n")
    sensors = {"S-A": "BAY-A", "S-B": "BAY-B", "BLE-0000BEEF": "BAY-C"}
    config = write_config(tmp_path / "edge.yaml", tmp_path / "no-outbox.db", sensors)
    _, out_good, _ = replay_stdout(capsys, str(capture), "--config", str(config))
    code, out, err = replay_stdout(capsys, str(damaged), "--config", str(config))
    assert code == 0
    assert out == out_good
    assert err.splitlines() == [
        f"kerbside-edge: {damaged}:4: not JSON: {BROKEN}",
        f"{damaged}: 26 records read: 25 replayed, 1 skipped; 6 events printed",
    ]


def test_strict_exits_1_on_a_skipped_line_with_the_same_output(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Only the exit status tells that the events do not cover the whole capture."""
    capture, config = street(tmp_path)
    assert replay_stdout(capsys, str(capture), "--config", str(config), "--strict")[0] == 0
    damaged = tmp_path / "damaged.jsonl"
    good = capture.read_text().splitlines()
    damaged.write_text("\n".join([*good[:3], "{broken", *good[3:], "[]"]) + "\n")
    lenient = replay_stdout(capsys, str(damaged), "--config", str(config))
    strict = replay_stdout(capsys, str(damaged), "--config", str(config), "--strict")
    assert (lenient[0], strict[0]) == (0, 1)
    assert lenient[1:] == strict[1:]
    assert strict[2].splitlines()[-1] == (
        f"{damaged}: 27 records read: 25 replayed, 2 skipped; 6 events printed"
    )


def test_an_empty_capture_is_no_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capture = tmp_path / "empty.jsonl"
    capture.write_text("\n")
    config = write_config(tmp_path / "edge.yaml", tmp_path / "o.db", {"S-A": "BAY-A"})
    code, out, err = replay_stdout(capsys, str(capture), "--config", str(config), "--strict")
    assert (code, out) == (0, "")
    assert err == f"{capture}: 0 records read: 0 replayed, 0 skipped; 0 events printed\n"


def test_replay_uses_the_outbox_epoch(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    outbox_mod = pytest.importorskip("kerbside.edge.outbox")
    outbox_path = tmp_path / "outbox.db"
    box = outbox_mod.Outbox(outbox_path, "gw-test-01")
    epoch = box.epoch
    box.close()
    capture = tmp_path / "street.jsonl"
    street_capture(capture)
    config = write_config(tmp_path / "edge.yaml", outbox_path, {"S-A": "BAY-A"})
    _, out, _ = replay_stdout(capsys, str(capture), "--config", str(config))
    first = json.loads(out.splitlines()[0])
    assert first["event_id"] == f"gw-test-01:{epoch}:1"


def test_an_outbox_that_is_not_one_is_named_once_and_the_capture_replayed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    outbox_path = tmp_path / "outbox.db"
    outbox_path.write_bytes(b"this was never an outbox " * 100)
    capture = tmp_path / "street.jsonl"
    street_capture(capture)
    config = write_config(tmp_path / "edge.yaml", outbox_path, {"S-A": "BAY-A"})
    code, out, err = replay_stdout(capsys, str(capture), "--config", str(config))
    assert code == 0
    assert json.loads(out.splitlines()[0])["event_id"] == "gw-test-01:replay:1"
    assert err.startswith(f"kerbside-edge: {outbox_path}: not an outbox: ")
    assert err.count(str(outbox_path)) == 1


def test_a_directory_for_a_capture_is_named_as_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path / "edge.yaml", tmp_path / "o.db", {"S-A": "BAY-A"})
    code, out, err = replay_stdout(capsys, str(tmp_path), "--config", str(config))
    assert code == 2
    assert out == ""
    assert err == f"kerbside-edge: {tmp_path}: is a directory, not a capture file\n"


def test_missing_capture_is_a_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path / "edge.yaml", tmp_path / "o.db", {"S-A": "BAY-A"})
    code, out, err = replay_stdout(capsys, str(tmp_path / "nope.jsonl"), "--config", str(config))
    assert code == 2
    assert out == ""
    assert err.count("\n") == 1


def test_console_script_replays_a_simulated_street(tmp_path: Path) -> None:
    out_dir = tmp_path / "sim"
    subprocess.run(
        [sys.executable, "-m", "kerbside.sim.cli", "capture", "--quiet", "--scenario", "noisy",
         "--seed", "4", "--sensors", "4", "--hours", "0.5", str(out_dir)],
        check=True,
    )  # fmt: skip
    command = [
        sys.executable,
        "-m",
        "kerbside.edge.cli",
        "replay",
        str(out_dir / "capture.jsonl"),
        "--config",
        str(out_dir / "edge.yaml"),
    ]
    first = subprocess.run(command, check=True, capture_output=True)
    second = subprocess.run(command, check=True, capture_output=True)
    assert first.stdout == second.stdout
    assert first.stdout.count(b"\n") >= 4  # every bay's first state at least


def replay_command(capture: Path, config: Path, *args: str) -> list[str]:
    """``kerbside-edge replay`` as a program, the way a shell runs it."""
    return [sys.executable, "-m", "kerbside.edge.cli", "replay", str(capture), "--config",
            str(config), *args]  # fmt: skip


def street(tmp_path: Path) -> tuple[Path, Path]:
    """The street's capture and a config for its three sensors."""
    capture = tmp_path / "street.jsonl"
    street_capture(capture)
    sensors = {"S-A": "BAY-A", "S-B": "BAY-B", "BLE-0000BEEF": "BAY-C"}
    return capture, write_config(tmp_path / "edge.yaml", tmp_path / "no-outbox.db", sensors)


def test_a_full_disk_under_stdout_is_one_line_and_exit_1(tmp_path: Path) -> None:
    """Said as stdout's failure, not as the capture's (it was ``cannot read``)."""
    capture, config = street(tmp_path)
    done = run_on_full_disk(replay_command(capture, config))
    assert done.returncode == 1
    assert done.stderr == "kerbside-edge: cannot write to stdout: No space left on device\n"


def test_a_capture_that_fails_while_read_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    capture, config = street(tmp_path)

    def failing(path: str | Path) -> Iterator[CaptureRecord | BadCaptureLine]:
        yield from list(read_capture(path))[:40]
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(replay, "read_capture", failing)
    code, _, err = replay_stdout(capsys, str(capture), "--config", str(config))
    assert code == 2
    assert err == f"kerbside-edge: {capture}: cannot read: Input/output error\n"


def test_a_reader_that_stops_early_ends_the_output_quietly(tmp_path: Path) -> None:
    """``kerbside-edge replay ... | head``: no traceback, and no summary of events that were
    not all printed; with --strict, a line skipped before it stopped makes the status 1."""
    capture, config = street(tmp_path)
    good = capture.read_text().splitlines()
    capture.write_text("\n".join([*good[:3], "{broken", *good[3:]]) + "\n")
    for strict, status in (([], 0), (["--strict"], 1)):
        code, err = run_with_reader_gone(replay_command(capture, config, *strict))
        assert code == status
        assert err.splitlines() == [f"kerbside-edge: {capture}:4: not JSON: {BROKEN}"]


def test_console_script_help_has_the_summary_and_the_exit_status() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "kerbside.edge.cli", "replay", "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "examples:\n  kerbside-edge replay street.jsonl" in done.stdout
    assert "Nothing else goes to stdout" in done.stdout
    assert "a last line that sums up" in done.stdout
    assert "exit status:\n  0  " in done.stdout
    assert "1  with --strict: a line was skipped" in done.stdout


def test_a_capture_saved_with_a_byte_order_mark_is_replayed_whole(tmp_path: Path) -> None:
    capture, config = street(tmp_path)
    whole = subprocess.run(replay_command(capture, config), capture_output=True, check=True)
    marked = tmp_path / "marked.jsonl"
    marked.write_bytes(b"\xef\xbb\xbf" + capture.read_bytes())
    done = subprocess.run(
        replay_command(marked, config, "--strict"), capture_output=True, check=False
    )
    assert (done.returncode, done.stdout) == (0, whole.stdout)
    assert done.stderr.decode() == (
        f"{marked}: 25 records read: 25 replayed, 0 skipped; 6 events printed\n"
    )
