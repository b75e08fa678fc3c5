"""What a command prints: its records on stdout."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable

from kerbside.collector.errors import OutputError


def print_lines(lines: Iterable[str]) -> bool:
    """Write each line to stdout; False when its reader went away first (``| head``), which is
    no error. A write that fails otherwise (a full disk) raises ``OutputError``; what ``lines``
    raises is not caught."""
    out = sys.stdout
    for line in lines:
        if not _written(out.write, f"{line}\n"):
            return False
    return _written(out.flush)


def _written(write: Callable[..., object], *args: str) -> bool:
    try:
        write(*args)
    except BrokenPipeError:
        # Python's own advice: stdout to /dev/null, so that the flush at exit cannot fail again
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return False
    except OSError as exc:
        raise OutputError(f"cannot write to stdout: {exc.strerror or exc}") from exc
    return True
