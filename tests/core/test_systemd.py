"""sd_notify from the agent and the collector, as systemd sees it: READY=1 once they run, and
WATCHDOG=1 keep-alives at half ``WatchdogSec`` from their event loops, which stop when the
process stalls (so systemd's watchdog fires)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from kerbside.core.systemd import Notifier
from tests.helpers import free_port, wait_until, write_collector_setup

pytestmark = pytest.mark.slow  # starts processes (brokers, programs, servers)


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "notify.sock"))
    sock.settimeout(10)
    yield sock
    sock.close()


def _state(pid: int) -> str:
    """The process's state letter from /proc (T: stopped)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat.rsplit(")", 1)[1].split()[0]


def receive_until(sock: socket.socket, wanted: str, timeout: float = 15) -> list[str]:
    got: list[str] = []
    deadline = time.monotonic() + timeout
    while wanted not in got:
        assert time.monotonic() < deadline, got
        got += sock.recv(4096).decode().splitlines()
    return got


def start(
    argv: list[str], sock: socket.socket, tmp_path: Path, watchdog_s: float
) -> subprocess.Popen[bytes]:
    env = dict(
        os.environ, NOTIFY_SOCKET=sock.getsockname(), WATCHDOG_USEC=str(int(watchdog_s * 1e6))
    )
    with (tmp_path / "proc.log").open("wb") as log:
        return subprocess.Popen(argv, env=env, stderr=log)


def test_notifier_speaks_the_protocol_and_is_silent_without_systemd(
    notify_socket: socket.socket,
) -> None:
    notifier = Notifier({"NOTIFY_SOCKET": notify_socket.getsockname(), "WATCHDOG_USEC": "4000000"})
    assert notifier.keepalive_s == 2.0
    assert notifier.ready("reading 2 sources")
    assert notify_socket.recv(4096) == b"READY=1\nSTATUS=reading 2 sources"
    assert not Notifier({}).ready()
    assert Notifier({}).keepalive_s is None


def test_the_agent_is_ready_and_keeps_the_watchdog_fed_until_it_stalls(
    tmp_path: Path, notify_socket: socket.socket
) -> None:
    config = tmp_path / "edge.yaml"
    config.write_text(
        f"gateway_id: gw-notify\nmqtt: {{port: {free_port()}}}\n"
        f"outbox: {{path: {tmp_path}/outbox.db}}\nclock: {{require_sync: false}}\n"
    )
    agent = start(
        [sys.executable, "-m", "kerbside.edge.cli", "run", "--config", str(config)],
        notify_socket,
        tmp_path,
        watchdog_s=0.4,
    )
    try:
        got = receive_until(notify_socket, "READY=1")
        got = receive_until(notify_socket, "WATCHDOG=1")
        assert got.count("WATCHDOG=1") >= 1
        receive_until(notify_socket, "WATCHDOG=1")  # and again
        agent.send_signal(signal.SIGSTOP)  # a stalled process sends nothing
        wait_until(lambda: _state(agent.pid) == "T", what="the agent stopped")
        notify_socket.settimeout(0.05)
        while True:  # drain what was sent before the stop
            try:
                notify_socket.recv(4096)
            except TimeoutError:
                break
        notify_socket.settimeout(1.0)
        with pytest.raises(TimeoutError):
            notify_socket.recv(4096)
        agent.send_signal(signal.SIGCONT)
        notify_socket.settimeout(10)
        receive_until(notify_socket, "WATCHDOG=1")
        agent.send_signal(signal.SIGTERM)
        receive_until(notify_socket, "STOPPING=1")
    finally:
        agent.send_signal(signal.SIGCONT)
        agent.send_signal(signal.SIGTERM)
        assert agent.wait(timeout=20) == 0


def test_the_collector_is_ready_and_feeds_the_watchdog(
    tmp_path: Path, notify_socket: socket.socket
) -> None:
    config = write_collector_setup(tmp_path, port=free_port(), topic_root="t")
    collector = start(
        [sys.executable, "-m", "kerbside.collector.cli", "run", "--config", str(config)],
        notify_socket,
        tmp_path,
        watchdog_s=0.4,
    )
    try:
        got = receive_until(notify_socket, "READY=1")
        assert "STATUS=4 bays" in got
        receive_until(notify_socket, "WATCHDOG=1")
        collector.send_signal(signal.SIGTERM)
        receive_until(notify_socket, "STOPPING=1")
    finally:
        collector.send_signal(signal.SIGTERM)
        assert collector.wait(timeout=20) == 0
