"""`kerbside-sim capture`: files, reproducibility, the shape of capture records."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kerbside.core.instants import parse_instant
from kerbside.edge.config import load_edge_config
from kerbside.sim.cli import build_parser, main
from kerbside.sim.truth import load_truth
from tests.sim.simtools import valid_lines


@pytest.fixture(scope="module")
def capture_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cap")
    args = [
        "capture",
        "--scenario",
        "noisy",
        "--seed",
        "5",
        "--sensors",
        "40",
        "--hours",
        "0.5",
        "--sensors-per-port",
        "20",
    ]
    assert main([*args, "--quiet", str(out)]) == 0
    return out


def test_same_seed_same_bytes(capture_dir: Path, tmp_path: Path) -> None:
    args = [
        "capture",
        "--scenario",
        "noisy",
        "--seed",
        "5",
        "--sensors",
        "40",
        "--hours",
        "0.5",
        "--sensors-per-port",
        "20",
    ]
    assert main([*args, "--quiet", str(tmp_path)]) == 0
    for name in ("capture.jsonl", "truth.json"):
        assert (tmp_path / name).read_bytes() == (capture_dir / name).read_bytes()
    assert (
        main(
            [
                "capture",
                "--seed",
                "6",
                "--sensors",
                "60",
                "--hours",
                "0.5",
                "--quiet",
                str(tmp_path / "other"),
            ]
        )
        == 0
    )
    assert (tmp_path / "other" / "capture.jsonl").read_bytes() != (
        capture_dir / "capture.jsonl"
    ).read_bytes()


def test_records_are_ordered_and_chunked_anywhere(capture_dir: Path) -> None:
    text = (capture_dir / "capture.jsonl").read_text(encoding="utf-8")
    records = [json.loads(line) for line in text.splitlines()]
    times = [parse_instant(r["t"]) for r in records]
    assert times == sorted(times)
    assert all(r["t"].endswith("Z") and len(r["t"]) == 24 for r in records)
    srcs = {r["src"] for r in records}
    assert srcs == {"serial:/dev/ttyUSB0", "serial:/dev/ttyUSB1"}
    datas = [r["data"] for r in records]
    assert any(d.count("\r\n") >= 2 for d in datas)  # several lines in one read
    assert any("\r\n" not in d for d in datas)  # part of a line
    assert any(any(ord(c) > 0x7F for c in d) for d in datas)  # line noise
    streams = {src: "".join(r["data"] for r in records if r["src"] == src) for src in srcs}
    valid = sum(len(valid_lines(s.encode("latin-1"))) for s in streams.values())
    assert valid > 2000


def test_edge_config_and_truth(capture_dir: Path) -> None:
    config = load_edge_config(capture_dir / "edge.yaml")
    assert config.clock.require_sync is False
    assert [p.port for p in config.serial] == ["/dev/ttyUSB0", "/dev/ttyUSB1"]
    assert len(config.sensors) == 40
    assert config.sensors[0].id == "S-000001"
    assert config.sensors[0].bay == "SIM-BAY-0001"
    assert config.outbox.path.parent == capture_dir.resolve()
    truth = load_truth(capture_dir / "truth.json")
    assert truth.end - truth.start == 1_800_000
    assert {s.sensor_id for s in truth.sensors} == {s.id for s in config.sensors}
    assert truth.sessions
    assert truth.silent
    assert truth.faults
    assert len(truth.reboots) == 40


def test_bad_arguments_are_one_line_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        main(["capture", "--scenario", "windy", str(tmp_path)])
    assert "invalid choice" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["capture", "--start", "yesterday", str(tmp_path)])


def test_infinite_hours_and_an_output_that_is_a_file_are_one_line_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        main(["capture", "--hours", "inf", str(tmp_path)])
    assert "argument --hours: must be a finite number: 'inf'" in capsys.readouterr().err
    a_file = tmp_path / "out"
    a_file.write_text("")
    for command in (["capture"], ["street", "--site", str(a_file)]):
        assert main([*command, "--quiet", str(a_file)]) == 1
        assert capsys.readouterr().err == f"kerbside-sim: error: {a_file}: not a directory\n"


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["capture", "--hours", "1e308"], "argument --hours: must be at most 87600: '1e308'"),
        (["street", "--site", "s.yaml", "--hours", "1e308"], "--hours: must be at most 87600"),
        (["serial", "--hours", "100000"], "argument --hours: must be at most 87600: '100000'"),
        (["serial", "--speed", "1e308"], "argument --speed: must be at most 3600: '1e308'"),
        (["capture", "--hours", "nan"], "argument --hours: must be a finite number: 'nan'"),
        (["serial", "--first-arrival-s", "nan", "3"], "must be a finite number: 'nan'"),
        (["serial", "--first-arrival-s", "0", "1e308"], "must be at most 86400: '1e308'"),
        (["serial", "--first-arrival-s", "-1", "3"], "must be >= 0: '-1'"),
        (["capture", "--sensors", "99999999999999999999"], "must be at most 100000"),
    ],
)
def test_huge_numbers_are_refused_before_they_overflow_or_fill_memory(
    argv: list[str], words: str, capsys: pytest.CaptureFixture[str]
) -> None:
    out = [] if argv[0] == "serial" else ["out"]
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args([*argv, *out])
    assert exited.value.code == 2
    assert words in capsys.readouterr().err


def test_the_largest_numbers_allowed_are_taken() -> None:
    args = build_parser().parse_args(
        ["serial", "--hours", "87600", "--speed", "3600", "--first-arrival-s", "0", "86400"]
    )
    assert (args.hours, args.speed, args.first_arrival_s) == (87600, 3600, [0, 86400])
