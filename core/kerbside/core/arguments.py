"""The commands' parsers: argparse's, writing ``--help`` and ``--version`` as the commands write
their output; and argument types (a number within its limits, or a one-line error)."""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

from kerbside.core.output import OutputError, print_text

if TYPE_CHECKING:
    from _typeshed import SupportsWrite


class Parser(argparse.ArgumentParser):
    """argparse's parser (its subcommands' too), whose ``--help`` and ``--version`` on stdout
    are written as every command's output: a reader gone away (``| head``) is no error, and a
    stdout that cannot be written (a full disk) is one line and exit 1, not Python's
    "Exception ignored" and exit 120 as the buffer fails again at exit."""

    def _print_message(self, message: str, file: SupportsWrite[str] | None = None) -> None:
        if not message or file is not sys.stdout:
            super()._print_message(message, file)
            return
        try:
            print_text(message)
        except OutputError as exc:
            print(f"{self.prog.split()[0]}: {exc}", file=sys.stderr)
            sys.exit(1)


def number(low: float, high: float = math.inf, *, above: bool = False) -> Callable[[str], float]:
    """An argparse ``type``: a finite number from ``low`` (excluded when ``above``) to ``high``
    (nan passes every comparison, and a huge number overflows the milliseconds it becomes)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from exc
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be a finite number: {text!r}")
        if value <= low if above else value < low:
            raise argparse.ArgumentTypeError(f"must be {'>' if above else '>='} {low:g}: {text!r}")
        if value > high:
            raise argparse.ArgumentTypeError(f"must be at most {high:g}: {text!r}")
        return value

    return parse
