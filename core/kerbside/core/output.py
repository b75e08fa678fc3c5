"""A command's records on stdout, as every program writes them.

stdout may be a pipe whose reader went away (``| head``): that is no error, and the command
stops quietly. A write that fails otherwise (a full disk) raises ``OutputError``, which each
command line turns into one line on stderr and exit 1, since what was printed is incomplete.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterable


class OutputError(Exception):
    """stdout cannot be written (the disk is full); the message is one line."""


def print_lines(lines: Iterable[str]) -> bool:
    """Write each line to stdout; False when its reader went away first (``| head``), which is
    no error. A write that fails otherwise (a full disk) raises ``OutputError``; what ``lines``
    raises is not caught."""
    out = sys.stdout
    for line in lines:
        if not _written(out.write, f"{line}\n"):
            return False
    return _written(out.flush)


def print_text(text: str) -> bool:
    """``text`` as it is (its own newlines) on stdout, flushed; as ``print_lines``."""
    out = sys.stdout
    return _written(out.write, text) and _written(out.flush)


def plural(n: int, word: str) -> str:
    """``1 record``, ``3 records``: a count in a command's messages."""
    return f"{n} {word}{'' if n == 1 else 's'}"


def stdout_to_devnull() -> None:
    """Point stdout at /dev/null, once its reader has gone away (a ``BrokenPipeError``) or it
    cannot be written (a full disk)."""
    # Python's own advice: so that the flush at exit cannot fail again
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def _written(write: Callable[..., object], *args: str) -> bool:
    try:
        write(*args)
    except BrokenPipeError:
        stdout_to_devnull()
        return False
    except OSError as exc:
        # What stays in stdout's buffer would fail again as Python exits ("Exception ignored",
        # exit 120) after the command's one line: it goes to /dev/null instead.
        with contextlib.suppress(OSError, ValueError):
            stdout_to_devnull()
        raise OutputError(f"cannot write to stdout: {exc.strerror or exc}") from exc
    return True
