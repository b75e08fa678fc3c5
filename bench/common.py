"""What every benchmark module shares: the rows of the one table, and the one way to wait.

A wait that runs out raises ``WaitTimeoutError`` naming what it waited for and for how long; nothing
computes a figure from a wait that gave up. ``attempt`` turns a measurement that raised into a
failed row, so the table shows the failure (and ``bench/run.py`` exits non-zero) instead of a
figure.
"""

from __future__ import annotations

import contextlib
import os
import queue
import sqlite3
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TypeVar

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)
POLL_S = 0.05


@dataclass(frozen=True)
class Row:
    figure: str  # e.g. "session F1, noisy"
    measured: str  # formatted figure, e.g. "0.995"; "FAILED: ..." when the measurement gave up
    target: str  # e.g. ">= 0.99"
    ok: bool
    failed: bool = False

    @classmethod
    def failure(cls, figure: str, error: BaseException) -> Row:
        return cls(figure, f"FAILED: {type(error).__name__}: {error}", "-", ok=False, failed=True)


class BenchError(Exception):
    """A benchmark could not measure what its row says (the row shows this, not a figure)."""


class WaitTimeoutError(BenchError):
    """A bench waited for something that did not happen within its limit."""

    def __init__(self, what: str, timeout_s: float, detail: str = "") -> None:
        message = f"gave up after {timeout_s:g} s waiting for {what}"
        super().__init__(f"{message} ({detail})" if detail else message)
        self.what = what
        self.timeout_s = timeout_s


def wait_until(
    what: str,
    condition: Callable[[], bool],
    timeout_s: float,
    *,
    alive: Iterable[subprocess.Popen[bytes] | subprocess.Popen[str]] = (),
    detail: Callable[[], str] | None = None,
    interval_s: float = POLL_S,
) -> float:
    """Poll ``condition`` until it holds; returns the seconds it took.

    Raises ``WaitTimeoutError`` after ``timeout_s`` (with ``detail()``, e.g. how far it got), or
    ``BenchError`` at once if one of the ``alive`` processes exits meanwhile.
    """
    watched = list(alive)
    started = time.monotonic()
    deadline = started + timeout_s
    while not condition():
        for proc in watched:
            if proc.poll() is not None:
                raise BenchError(
                    f"{program(proc)} exited with code {proc.returncode} while waiting for {what}"
                )
        if time.monotonic() >= deadline:
            raise WaitTimeoutError(what, timeout_s, detail() if detail is not None else "")
        time.sleep(interval_s)
    return time.monotonic() - started


def program(proc: subprocess.Popen[bytes] | subprocess.Popen[str]) -> str:
    """The name of the program ``proc`` runs, for messages."""
    args = proc.args
    first = args if isinstance(args, str | bytes | os.PathLike) else args[0]
    return os.path.basename(os.fsdecode(first)).split()[0]


class _Gettable(Protocol[T_co]):  # queue.Queue and multiprocessing queues alike
    def get(self, block: bool = ..., timeout: float | None = ...) -> T_co: ...


def receive(source: _Gettable[T], what: str, timeout_s: float) -> T:
    """The next item from a (multiprocessing) queue, or ``WaitTimeoutError``."""
    try:
        return source.get(timeout=timeout_s)
    except queue.Empty:
        raise WaitTimeoutError(what, timeout_s) from None


def wait_exit(
    proc: subprocess.Popen[bytes] | subprocess.Popen[str], what: str, timeout_s: float
) -> int:
    """Wait for ``proc`` to end; if it will not, kill it and raise ``WaitTimeoutError``."""
    try:
        return proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise WaitTimeoutError(what, timeout_s, "killed it") from None


def attempt(figure: str, measure: Callable[[], list[Row]]) -> list[Row]:
    """``measure()``'s rows, or one failed row named ``figure`` if it raised (traceback on
    stderr), so one measurement giving up does not take its neighbours' figures with it."""
    try:
        return measure()
    except Exception as exc:
        traceback.print_exc(file=sys.stderr)
        return [Row.failure(figure, exc)]


def read_outbox(path: Path) -> tuple[int, list[int]]:
    """An edge agent's outbox, read-only: (its last seq handed out, the seqs it still holds)."""
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        row = conn.execute("SELECT value FROM meta WHERE key = 'last_seq'").fetchone()
        seqs = [int(s) for (s,) in conn.execute("SELECT seq FROM events ORDER BY seq")]
    finally:
        conn.close()
    return (0 if row is None else int(row[0])), seqs


TICK_HZ = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids: Iterable[int]) -> float:
    """User and system CPU seconds the processes have used so far (gone ones count 0)."""
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
    return total / TICK_HZ
