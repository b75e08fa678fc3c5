"""`kerbside demo` end to end: real broker, collector, edge agents and simulated sensors.

Everything is checked through the HTTP API the demo serves (with the analyst token it keeps in its
work directory), while it runs; then that nothing it started is left behind. The demo with
Mosquitto, as a person runs it, is tests/e2e/test_readme.py's (the README's command, in a fresh
clone); here, the embedded broker, the broker's limits and a busy port.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from kerbside.collector.rules.alerts import KINDS as ALERT_KINDS
from kerbside.demo import find_mosquitto
from kerbside.demo.broker import mosquitto_conf
from tests.helpers import MqttRecorder, free_port, stop_process, wait_for_port

pytestmark = pytest.mark.slow  # starts processes (brokers, programs, servers)

ENFORCEMENT = set(ALERT_KINDS)


def kerbside_command() -> list[str]:
    script = Path(sys.executable).parent / "kerbside"
    return [str(script)] if script.exists() else [sys.executable, "-m", "kerbside.cli"]


@dataclass
class DemoRun:
    """The demo's output and the last answers of its API, polled every second while it runs."""

    output: list[str] = field(default_factory=list)
    bays: list[dict[str, Any]] = field(default_factory=list)
    gateways: list[dict[str, Any]] = field(default_factory=list)
    alerts: list[dict[str, Any]] = field(default_factory=list)
    online: set[str] = field(default_factory=set)  # gateways seen online by any poll
    occupied: set[str] = field(default_factory=set)  # bays seen occupied by any poll
    returncode: int | None = None


def _get(port: int, token: str, path: str) -> Any:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}")
    request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.loads(response.read())


DEMO_GATEWAYS = {"gw-parkway-01", "gw-delancey-01", "gw-arlington-01"}


def look(port: int, token: str, run: DemoRun) -> bool:
    """One look at the demo through its API, noted in ``run``; False while it does not answer
    (not up yet, or stopping)."""
    try:
        bays = _get(port, token, "/api/v1/bays?limit=500")["items"]
        gateways = _get(port, token, "/api/v1/gateways")
        alerts = _get(port, token, "/api/v1/alerts?limit=500")["items"]
    except OSError:
        return False
    run.bays, run.gateways, run.alerts = bays, gateways, alerts
    run.online |= {g["gateway_id"] for g in gateways if g["online"]}
    run.occupied |= {b["bay_id"] for b in bays if b["state"] == "occupied"}
    return True


def street_busy(run: DemoRun) -> bool:
    """Bays filled (the street had cars on it, seen by the collector through the real agents;
    over the run, as drivers come and go), every gateway online, an enforcement alert raised
    (a driver who forgot to pay)."""
    return (
        len(run.occupied) >= 5
        and run.online == DEMO_GATEWAYS
        and any(a["kind"] in ENFORCEMENT for a in run.alerts)
    )


def run_demo(workdir: Path, *extra: str, timeout: float = 180) -> DemoRun:
    port = free_port()
    proc = subprocess.Popen(
        [*kerbside_command(), "demo", "--port", str(port), "--workdir", str(workdir), *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    run = DemoRun()
    assert proc.stdout is not None
    reader = threading.Thread(target=lambda: run.output.extend(proc.stdout or ()), daemon=True)
    reader.start()
    deadline = time.monotonic() + timeout
    try:
        # a look every second until the demo ends by itself (--duration)
        while proc.poll() is None and time.monotonic() < deadline:
            time.sleep(1)
            tokens_file = workdir / "demo-tokens.json"
            if tokens_file.exists():
                look(port, json.loads(tokens_file.read_text())["analyst"], run)
        run.returncode = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    reader.join(5)
    proc.stdout.close()
    return run


def processes_using(path: Path) -> list[str]:
    """Processes whose command line or working directory mentions ``path``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            cwd = os.readlink(entry / "cwd")
        except OSError:
            continue  # gone, or not ours to read
        if str(path) in cmdline or cwd.startswith(str(path)):
            found.append(f"{entry.name}: {cmdline.strip()}")
    return found


def check_delivery(run: DemoRun, gateways: set[str]) -> None:
    """Every gateway online while the demo ran, its events numbered 1..n with none missing.
    (The last poll may come after the agents stopped, when they say they are offline.)"""
    by_id = {g["gateway_id"]: g for g in run.gateways}
    assert set(by_id) == gateways, run.gateways
    assert run.online == gateways
    for gateway in by_id.values():
        assert gateway["events"] > 0, gateway
        assert gateway["epochs"] == 1, gateway
        assert gateway["first_seq"] == 1, gateway
        assert gateway["last_seq"] == gateway["events"], gateway
        assert gateway["missing_seq"] == 0, gateway


@pytest.mark.timeout(150)
def test_demo_embedded_broker_carries_the_gateways_events(tmp_path: Path) -> None:
    """Without Mosquitto the demo runs amqtt (MQTT 3.1.1): collector and agent still deliver
    every event, in order."""
    workdir = tmp_path / "demo"
    run = run_demo(
        workdir, "--broker", "embedded", "--duration", "40", "--gateways", "1",
        "--bays-per-gateway", "4",
    )  # fmt: skip
    text = "".join(run.output)
    assert run.returncode == 0, text
    assert "embedded amqtt broker" in text, text
    check_delivery(run, {"gw-parkway-01"})
    assert any(b["state"] == "occupied" for b in run.bays), run.bays
    assert processes_using(workdir) == []


def test_broker_choice_falls_back_when_mosquitto_is_not_found(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    assert find_mosquitto(path=str(empty), extra_dirs=(str(empty),)) is None
    fake = tmp_path / "bin" / "mosquitto"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\n")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    assert find_mosquitto(path=str(empty), extra_dirs=(str(fake.parent),)) == str(fake)
    assert find_mosquitto(path=str(fake.parent), extra_dirs=()) == str(fake)


def test_demo_says_what_to_do_when_its_port_is_taken(tmp_path: Path) -> None:
    import socket  # noqa: PLC0415

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run(
            [*kerbside_command(), "demo", "--port", str(port), "--workdir", str(tmp_path / "d")],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert result.returncode == 1
    assert result.stderr.strip() == f"kerbside demo: port {port} is in use on 127.0.0.1: use --port"
    assert result.stdout == ""


def start_small_demo(tmp_path: Path, stdout: Any) -> subprocess.Popen[bytes]:
    """The smallest street (one gateway, one bay) in a temporary work directory under
    ``tmp_path``: its first line on stdout comes once everything is up, in a few seconds."""
    return subprocess.Popen(
        [*kerbside_command(), "demo", "--port", str(free_port()), "--duration", "30",
         "--gateways", "1", "--bays-per-gateway", "1"],
        stdout=stdout,
        stderr=subprocess.PIPE,
        env={**os.environ, "TMPDIR": str(tmp_path)},
    )  # fmt: skip


def finish(proc: subprocess.Popen[bytes]) -> tuple[int, str]:
    """The demo's exit status and stderr, once it has exited by itself."""
    assert proc.stderr is not None
    with proc.stderr:
        err = proc.stderr.read().decode()  # its children's stderr goes to their logs
    try:
        return proc.wait(timeout=30), err
    finally:
        stop_process(proc, signal.SIGKILL, timeout=10)


def left_behind(tmp_path: Path) -> list[str]:
    """Processes and work directories of a demo that has exited."""
    return processes_using(tmp_path) + [p.name for p in tmp_path.glob("kerbside-demo-*")]


@pytest.mark.timeout(90)
def test_demo_with_stdout_on_a_full_disk_says_so_in_one_line_and_stops_everything(
    tmp_path: Path,
) -> None:
    with Path("/dev/full").open("wb") as full:
        proc = start_small_demo(tmp_path, full)
    code, err = finish(proc)
    assert err == "kerbside demo: cannot write to stdout: No space left on device\n"
    assert code == 1
    assert left_behind(tmp_path) == []


@pytest.mark.timeout(90)
def test_demo_whose_reader_went_away_stops_everything_quietly(tmp_path: Path) -> None:
    """``kerbside demo | head -0``: no traceback, exit 0."""
    proc = start_small_demo(tmp_path, subprocess.PIPE)
    assert proc.stdout is not None
    proc.stdout.close()  # before it writes: its first write finds no reader
    code, err = finish(proc)
    assert err == ""
    assert code == 0
    assert left_behind(tmp_path) == []


def test_demo_broker_queues_a_collector_restarts_worth_of_events(tmp_path: Path) -> None:
    """The demo's mosquitto.conf, in a real Mosquitto: 3,000 events sent while the collector's
    persistent session is away all reach it (Mosquitto's default queue would keep 1,000), and a
    payload over the collector's 64 KiB is not let in."""
    port = free_port()
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(mosquitto_conf(port, as_root=os.geteuid() == 0))
    binary = find_mosquitto()
    assert binary is not None
    with (tmp_path / "stderr").open("wb") as stderr:
        proc = subprocess.Popen([binary, "-c", str(conf)], stderr=stderr)
    try:
        wait_for_port(port)
        collector = MqttRecorder(port, "kerbside-demo-collector", persistent=True)
        collector.subscribe("kerbside/v1/gw/+/events")
        collector.close()
        gateway = MqttRecorder(port, "gw-demo")
        sent = [f"event {n}".encode() for n in range(3_000)]
        for payload in sent:
            assert gateway.publish("kerbside/v1/gw/gw-demo/events", payload)
        assert gateway.publish("kerbside/v1/gw/gw-demo/events", b"x" * (64 * 1024 + 1))
        gateway.close()
        collector = MqttRecorder(port, "kerbside-demo-collector", persistent=True)
        got = [payload for _, payload in collector.received()]
        collector.close()
    finally:
        stop_process(proc, signal.SIGTERM, timeout=10)
    assert got == sent
