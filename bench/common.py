"""What every benchmark module returns: rows of the one table."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Row:
    figure: str  # e.g. "session F1, noisy"
    measured: str  # formatted figure, e.g. "0.995"
    target: str  # e.g. ">= 0.99"
    ok: bool
