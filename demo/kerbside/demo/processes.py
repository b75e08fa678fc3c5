"""The demo's child processes: each the leader of its own process group, stopped in order."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

STOP_TIMEOUT_S = 10.0


class DemoError(Exception):
    """A one-line reason the demo cannot go on, saying what to do."""


@dataclass
class Child:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path


@dataclass
class Children:
    """Every process the demo started, each the leader of its own process group."""

    workdir: Path
    items: list[Child] = field(default_factory=list)
    _logs: list[IO[bytes]] = field(default_factory=list)

    def start(self, name: str, argv: list[str], stdout: Path | None = None) -> Child:
        log = self.workdir / "logs" / f"{name}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        err = log.open("ab")
        out = stdout.open("ab") if stdout is not None else err
        self._logs += [err] if out is err else [err, out]
        proc = subprocess.Popen(  # noqa: S603 - our own commands, no shell
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            cwd=self.workdir,
            start_new_session=True,  # own process group: Ctrl-C reaches us only, we stop them
            preexec_fn=_die_with_parent,  # noqa: PLW1509 - single-threaded here
        )
        child = Child(name, proc, log)
        self.items.append(child)
        return child

    def dead(self) -> Child | None:
        return next((c for c in self.items if c.proc.poll() is not None), None)

    def stop(self, names: tuple[str, ...] | None = None) -> None:
        """SIGTERM the process groups (in the order started unless ``names`` picks a stage),
        SIGKILL what is left after STOP_TIMEOUT_S, and wait for all."""
        chosen = [c for c in self.items if names is None or c.name.startswith(names)]
        for child in chosen:
            _signal_group(child.proc, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for child in chosen:
            try:
                child.proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal_group(child.proc, signal.SIGKILL)
                child.proc.wait()
            # A grandchild may outlive its leader: clear the whole group.
            _signal_group(child.proc, signal.SIGKILL)

    def close_logs(self) -> None:
        for f in self._logs:
            f.close()


def _die_with_parent() -> None:
    """In the child, before exec: SIGTERM it if the demo dies without cleaning up (SIGKILL)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG (Linux)
    except (OSError, AttributeError):
        pass


def _signal_group(proc: subprocess.Popen[bytes], signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signum)


def module_argv(name: str) -> list[str]:
    return [sys.executable, "-m", name]


def last_line(path: Path) -> str:
    try:
        lines = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    return lines[-1].strip() if lines else ""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_is_free(port: int) -> bool:
    with socket.socket() as s:
        # As uvicorn binds: connections of a previous run in TIME_WAIT do not hold the port.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def wait_while_running(
    ready: Callable[[], bool], children: Sequence[Child], timeout: float, late: str
) -> None:
    """Until ``ready()``: a ``DemoError`` with its last line if one of ``children`` exits first,
    or saying ``late`` once ``timeout`` seconds have passed."""
    deadline = time.monotonic() + timeout
    while not ready():
        for child in children:
            if child.proc.poll() is not None:
                raise DemoError(f"{child.name} exited: {last_line(child.log)} (see {child.log})")
        if time.monotonic() > deadline:
            raise DemoError(late)
        time.sleep(0.05)


def wait_port(port: int, child: Child, timeout: float) -> None:
    def listening() -> bool:
        with socket.socket() as s:
            s.settimeout(0.5)
            return s.connect_ex(("127.0.0.1", port)) == 0

    late = f"{child.name} did not listen on 127.0.0.1:{port} (see {child.log})"
    wait_while_running(listening, [child], timeout, late)
