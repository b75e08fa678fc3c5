"""How the programs log: journald priorities without timestamps under systemd, JSON lines on
request, and logger names that say the component (the collector's MQTT child included)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import free_port, wait_until, write_collector_setup

pytestmark = pytest.mark.slow  # starts processes (brokers, programs, servers)


def run_for_a_moment(argv: list[str], log: Path, until: str, journal: bool = False) -> str:
    """Start ``argv`` with stderr in ``log`` until ``until`` is logged, then SIGTERM it."""
    env = dict(os.environ)
    env.pop("JOURNAL_STREAM", None)
    env.pop("KERBSIDE_LOG_FORMAT", None)
    with log.open("wb") as out:
        if journal:  # what systemd sets when stderr is connected to the journal
            info = os.fstat(out.fileno())
            env["JOURNAL_STREAM"] = f"{info.st_dev}:{info.st_ino}"
        proc = subprocess.Popen(argv, stderr=out, env=env)
    try:

        def logged() -> bool:
            assert proc.poll() is None, log.read_text()
            return until in log.read_text()

        try:
            wait_until(logged, 20, f"{until!r} logged")
        except AssertionError as exc:
            raise AssertionError(f"{exc}:\n{log.read_text()}") from None
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)
    return log.read_text()


def edge_config(tmp_path: Path) -> Path:
    config = tmp_path / "edge.yaml"
    config.write_text(
        f"gateway_id: gw-logs\nmqtt: {{port: {free_port()}}}\n"
        f"outbox: {{path: {tmp_path}/outbox.db}}\nclock: {{require_sync: false}}\n"
    )
    return config


EDGE = [sys.executable, "-m", "kerbside.edge.cli"]


def test_under_journald_lines_carry_the_priority_and_no_time(tmp_path: Path) -> None:
    text = run_for_a_moment(
        [*EDGE, "run", "--config", str(edge_config(tmp_path))],
        tmp_path / "journal.log",
        "unreachable",
        journal=True,
    )
    lines = text.splitlines()
    assert any(re.match(r"<4>kerbside\.edge\.agent: mqtt broker .* unreachable", x) for x in lines)
    assert any(x.startswith("<6>kerbside.edge.outbox: new outbox") for x in lines)
    assert all(re.match(r"<[0-7]>kerbside\.", x) for x in lines), lines


def test_on_a_terminal_or_a_file_lines_carry_the_time(tmp_path: Path) -> None:
    text = run_for_a_moment(
        [*EDGE, "run", "--config", str(edge_config(tmp_path))],
        tmp_path / "plain.log",
        "unreachable",
    )
    assert re.search(
        r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} WARNING kerbside\.edge\.agent: ", text, re.M
    )
    assert "<4>" not in text


def test_json_lines_for_log_shippers(tmp_path: Path) -> None:
    text = run_for_a_moment(
        [*EDGE, "run", "--config", str(edge_config(tmp_path)), "--log-format", "json"],
        tmp_path / "json.log",
        "unreachable",
    )
    records = [json.loads(line) for line in text.splitlines()]
    assert {tuple(sorted(r)) for r in records} == {("level", "logger", "message", "ts")}
    warning = next(r for r in records if "unreachable" in r["message"])
    assert warning["level"] == "warning"
    assert warning["logger"] == "kerbside.edge.agent"
    assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$", warning["ts"])


def test_the_collectors_mqtt_child_logs_under_its_own_name_in_the_same_format(
    tmp_path: Path,
) -> None:
    config = write_collector_setup(tmp_path, port=free_port(), topic_root="t", protocol="3.1.1")
    text = run_for_a_moment(
        [sys.executable, "-m", "kerbside.collector.cli", "run", "--config", str(config)],
        tmp_path / "collector.log",
        "unreachable",
        journal=True,
    )
    assert re.search(
        r"^<4>kerbside\.collector\.link\.child: broker 127\.0\.0\.1:\d+ unreachable "
        r"\(Connection refused\)",
        text,
        re.M,
    ), text
    assert "__main__" not in text
