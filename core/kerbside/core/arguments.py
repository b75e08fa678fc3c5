"""Argument types for the commands' parsers: a number within its limits, or a one-line error."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable


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
