"""``kerbside-edge check``, ``run`` refusing a bad config, saying what it waits for, and
``status``, and both on a full disk or a closed stdout: each command run as its own process, as
an installer would run it."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import tty
from collections.abc import Iterator
from pathlib import Path

import pytest

from kerbside.edge.outbox import Outbox
from kerbside.sim.kbs1 import encode_frame
from tests.helpers import (
    free_port,
    run_on_full_disk,
    run_with_reader_gone,
    wait_until,
)

pytestmark = pytest.mark.slow  # starts processes (brokers, programs, servers)

EDGE = [sys.executable, "-m", "kerbside.edge.cli"]


def edge(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*EDGE, *args], check=False, capture_output=True, text=True, timeout=timeout
    )


FIVE_MISTAKES = """\
gateway_id: gw parkway 01
mqtt:
  host: 127.0.0.1
  port: 70000
detector:
  confirm_occupied_s: 10
  silense_s: 900
serial:
  - {port: /dev/ttyUSB0, baudrate: fast}
sensors:
  - {id: S-000001, bay: CA-F-PKW-001}
  - {id: S-000001, bay: CA-F-PKW-002}
"""


def test_check_reports_every_mistake_with_its_line(tmp_path: Path) -> None:
    config = tmp_path / "edge.yaml"
    config.write_text(FIVE_MISTAKES + f"outbox: {{path: {tmp_path}/outbox.db}}\n")
    result = edge("check", "--config", str(config))
    assert result.returncode == 2, result.stderr
    err = result.stderr.splitlines()
    expected = [
        (1, "gateway_id", "must match"),
        (4, "mqtt.port", "must be at most 65535, not 70000"),
        (7, "detector.silense_s", "unknown key (did you mean silence_s?)"),
        (9, "serial[0].baudrate", "must be a whole number, not 'fast'"),
        (12, "sensors[1].id", "S-000001 is listed twice (first at sensors[0])"),
    ]
    for line, key, words in expected:
        assert any(e.startswith(f"{config}:{line}: {key}: {words}") for e in err), (key, err)
    assert err[-1] == f"{config}: 5 errors"
    assert "Input should" not in result.stderr  # pydantic's own wording never reaches the user
    assert "Traceback" not in result.stderr


def test_check_passes_a_good_file_and_names_what_it_found(tmp_path: Path) -> None:
    password = tmp_path / "mqtt.pass"
    password.write_text("secret\n")
    config = tmp_path / "edge.yaml"
    config.write_text(
        "gateway_id: gw-parkway-01\n"
        f"mqtt: {{host: 127.0.0.1, port: 1883, password_file: {password}}}\n"
        f"outbox: {{path: {tmp_path}/state/outbox.db}}\n"
        "sensors: [{id: S-000001, bay: CA-F-PKW-001}]\n"
    )
    result = edge("check", "--config", str(config))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"{config}: ok: gateway gw-parkway-01, 1 sensors")


def test_check_refuses_infinite_and_nan_durations_that_run_could_not_use(tmp_path: Path) -> None:
    config = tmp_path / "edge.yaml"
    config.write_text(
        "gateway_id: gw-parkway-01\n"
        f"outbox: {{path: {tmp_path}/outbox.db}}\n"
        "detector: {confirm_occupied_s: .inf, confirm_vacant_s: .nan}\n"
    )
    result = edge("check", "--config", str(config))
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"{config}:3: detector.confirm_occupied_s: must be a finite number, not inf",
        f"{config}:3: detector.confirm_vacant_s: must be a finite number, not nan",
        f"{config}: 2 errors",
    ]
    capture = tmp_path / "capture.jsonl"
    capture.write_text("")
    replayed = edge("replay", str(capture), "--config", str(config))
    assert replayed.returncode == 2
    assert "Traceback" not in replayed.stderr


def test_check_refuses_huge_numbers_that_run_would_overflow(tmp_path: Path) -> None:
    # finite, but a millisecond or byte count beyond any integer run can make of it
    config = tmp_path / "edge.yaml"
    config.write_text(
        "gateway_id: gw-parkway-01\n"
        f"outbox: {{path: {tmp_path}/outbox.db, max_mb: 1.0e+300}}\n"
        "detector: {confirm_occupied_s: 1.0e+308, silence_s: 1.0e+300}\n"
        "health_interval_s: 1.0e+300\n"
        "serial: [{port: /dev/null, baudrate: 99999999999999999999}]\n"
    )
    result = edge("check", "--config", str(config))
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"{config}:2: outbox.max_mb: must be at most 1048576, not 1e+300",
        f"{config}:3: detector.confirm_occupied_s: must be at most 3600, not 1e+308",
        f"{config}:3: detector.silence_s: must be at most 86400, not 1e+300",
        f"{config}:4: health_interval_s: must be at most 3600, not 1e+300",
        f"{config}:5: serial[0].baudrate: must be at most 12000000, not 99999999999999999999",
        f"{config}: 5 errors",
    ]


def test_run_with_a_missing_password_file_says_so_in_one_line(tmp_path: Path) -> None:
    config = tmp_path / "edge.yaml"
    config.write_text(
        "gateway_id: gw-parkway-01\n"
        f"mqtt: {{host: 127.0.0.1, port: 1, password_file: {tmp_path}/nope.pass}}\n"
        f"outbox: {{path: {tmp_path}/outbox.db}}\n"
    )
    result = edge("run", "--config", str(config))
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"{config}:2: mqtt.password_file: {tmp_path}/nope.pass does not exist"
    ]
    assert not (tmp_path / "outbox.db").exists()  # refused before anything started


@pytest.mark.parametrize(
    "where", ["nowhere/capture.jsonl", "."], ids=["no directory", "a directory"]
)
def test_run_with_a_capture_it_cannot_write_says_so_in_one_line(tmp_path: Path, where: str) -> None:
    config = tmp_path / "edge.yaml"
    config.write_text(
        "gateway_id: gw-parkway-01\n"
        "mqtt: {host: 127.0.0.1, port: 1}\n"
        f"outbox: {{path: {tmp_path}/outbox.db}}\n"
        f"serial: [{{port: {tmp_path}/ttyNOPE}}]\n"
    )
    capture = tmp_path / where
    result = edge("run", "--config", str(config), "--capture", str(capture))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.splitlines()[-1].startswith(
        f"kerbside-edge: --capture: cannot write {capture}: "
    )
    assert not (tmp_path / "outbox.db").exists()  # refused before anything started


@pytest.fixture
def sensor_line() -> Iterator[tuple[int, str]]:
    """A pseudo-terminal standing in for a sensor's serial line: (our end, the agent's name)."""
    ours, theirs = os.openpty()
    tty.setraw(theirs)
    yield ours, os.ttyname(theirs)
    os.close(ours)
    os.close(theirs)


def agent_config(tmp_path: Path, port: int, serial: str) -> Path:
    config = tmp_path / "edge.yaml"
    config.write_text(
        "gateway_id: gw-status\n"
        f"mqtt: {{host: 127.0.0.1, port: {port}, topic_root: test/status-{os.getpid()}}}\n"
        f"outbox: {{path: {tmp_path}/outbox.db}}\n"
        "detector: {confirm_occupied_s: 0.2, confirm_vacant_s: 0.2, silence_s: 60}\n"
        "health_interval_s: 0.3\n"
        "clock: {require_sync: false}\n"
        f"serial: [{{port: {serial}}}]\n"
        "sensors: [{id: S-000001, bay: CA-F-PKW-001}, {id: S-000002, bay: CA-F-PKW-002}]\n"
    )
    return config


def test_agent_against_a_closed_port_says_why_and_status_shows_it_running_and_stopped(
    tmp_path: Path, sensor_line: tuple[int, str]
) -> None:
    ours, serial = sensor_line
    closed = free_port()  # nothing listens there
    config = agent_config(tmp_path, closed, serial)
    log = tmp_path / "agent.log"
    with log.open("wb") as out:
        agent = subprocess.Popen([*EDGE, "run", "--config", str(config)], stderr=out)
    try:
        started = time.monotonic()
        wait_until(lambda: "unreachable" in log.read_text(), 5, "the broker's failure in the log")
        assert time.monotonic() - started < 5
        line = next(x for x in log.read_text().splitlines() if "unreachable" in x)
        assert f"mqtt broker 127.0.0.1:{closed} unreachable (Connection refused)" in line
        assert "no events waiting" in line
        # A sensor speaks (a fault frame is published at once): status shows it, and the
        # event that waits for the broker.
        os.write(ours, encode_frame("S-000001", 7, 0x08, 10, 20, -30, 3410, 215))

        def status_shows_the_sensor() -> bool:
            out = edge("status", "--config", str(config)).stdout
            return "3410 mV" in out and "1 events waiting" in out

        wait_until(status_shows_the_sensor, 10, "the frame and the event in status")
        running = edge("status", "--config", str(config))
        assert running.returncode == 0
        text = running.stdout
        assert f"agent running (pid {agent.pid})" in text
        assert f"broker 127.0.0.1:{closed}: NOT connected" in text
        assert "last error: Connection refused" in text
        assert "last acknowledgement: never" in text
        assert re.search(r"1 events waiting, oldest .* s ago\)", text), text
        assert re.search(r"S-000001\s+CA-F-PKW-001\s+unknown\s+\S+\s+\d+ s ago\s+3410 mV", text)
        assert re.search(r"S-000002\s+CA-F-PKW-002\s+unknown\s+learning\s+never\s+-\s+0", text)
        assert "port serial:" in text
        assert "open," in text
    finally:
        agent.send_signal(signal.SIGTERM)
        assert agent.wait(timeout=20) == 0
    stopped = edge("status", "--config", str(config))
    assert stopped.returncode == 3
    assert "agent stopped cleanly at" in stopped.stdout
    assert "1 events waiting" in stopped.stdout  # kept on disk for the next start
    print(running.stdout, stopped.stdout, sep="\n")


def test_status_without_an_outbox_says_the_agent_never_ran(tmp_path: Path) -> None:
    config = tmp_path / "edge.yaml"
    config.write_text(f"gateway_id: gw-new\noutbox: {{path: {tmp_path}/outbox.db}}\n")
    result = edge("status", "--config", str(config))
    assert result.returncode == 2
    assert "no outbox here: the agent has not run with this config yet" in result.stderr


def test_agent_says_a_serial_port_is_missing_and_sensors_are_not_heard(tmp_path: Path) -> None:
    config = tmp_path / "edge.yaml"
    config.write_text(
        "gateway_id: gw-waiting\n"
        f"mqtt: {{host: 127.0.0.1, port: {free_port()}}}\n"
        f"outbox: {{path: {tmp_path}/outbox.db}}\n"
        "detector: {silence_s: 1}\n"
        "health_interval_s: 0.2\n"
        "clock: {require_sync: false}\n"
        f"serial: [{{port: {tmp_path}/ttyNOPE}}]\n"
        "sensors: [{id: S-000001, bay: CA-F-PKW-001}, {id: S-000002, bay: CA-F-PKW-002}]\n"
    )
    log = tmp_path / "agent.log"
    with log.open("wb") as out:
        agent = subprocess.Popen([*EDGE, "run", "--config", str(config)], stderr=out)
    try:
        wait_until(lambda: "not heard" in log.read_text(), 10, "the silent sensors in the log")
        text = log.read_text()
        assert (
            f"serial:{tmp_path}/ttyNOPE: cannot open (No such file or directory); waiting for it"
            in text
        )
        assert "2 of 2 configured sensors not heard since the start" in text
        assert "S-000001, S-000002" in text
        assert text.count("cannot open") == 1  # once, not once per retry
    finally:
        agent.send_signal(signal.SIGTERM)
        assert agent.wait(timeout=20) == 0


@pytest.mark.parametrize("command", ["check", "status"])
def test_a_full_disk_under_stdout_is_one_line_and_exit_1(tmp_path: Path, command: str) -> None:
    config = tmp_path / "edge.yaml"
    config.write_text(f"gateway_id: gw-1\noutbox: {{path: {tmp_path}/outbox.db}}\n")
    Outbox(tmp_path / "outbox.db", "gw-1").close()  # an agent that ran once, for `status`
    done = run_on_full_disk([*EDGE, command, "--config", str(config)], timeout=30)
    assert done.returncode == 1
    assert done.stderr == "kerbside-edge: cannot write to stdout: No space left on device\n"


def test_check_with_its_reader_gone_away_is_no_error(tmp_path: Path) -> None:
    """``kerbside-edge check | head -c0``: quiet, and exit 0."""
    config = tmp_path / "edge.yaml"
    config.write_text(f"gateway_id: gw-1\noutbox: {{path: {tmp_path}/outbox.db}}\n")
    code, err = run_with_reader_gone([*EDGE, "check", "--config", str(config)], timeout=30)
    assert code == 0
    assert err == ""
