"""Builders for the simulator's tests: a small independent KBS1 scanner and a DETECT-only
baseline detector scored against ground truth (the edge's parser and detector are not used:
these tests check the simulator on its own terms)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from kerbside.sim.kbs1 import FLAG_DETECT
from kerbside.sim.truth import Truth
from kerbside.sim.wire import SerialEmission

LINE_RE = re.compile(
    rb"\$(KBS1,([A-Za-z0-9_-]{1,32}),(\d{1,5}),([0-9A-Fa-f]{2}),(-?\d{1,5}),(-?\d{1,5}),"
    rb"(-?\d{1,5}),(\d{1,5}),(-?\d{1,5}))\*([0-9A-Fa-f]{2})\r\n"
)


def xor(data: bytes) -> int:
    value = 0
    for b in data:
        value ^= b
    return value


def valid_lines(stream: bytes) -> list[re.Match[bytes]]:
    """Lines of the stream that match the KBS1 grammar and carry a correct checksum."""
    return [m for m in LINE_RE.finditer(stream) if xor(m.group(1)) == int(m.group(10), 16)]


@dataclass(frozen=True)
class Span:
    bay: str
    start: int
    end: int | None


def detect_baseline(
    emissions: Iterable[SerialEmission], bay_of: dict[int, str], confirm_ms: int = 10_000
) -> list[Span]:
    """Sessions from the DETECT bit alone, debounced by time, over the frames that arrived."""
    per_sensor: dict[int, list[tuple[int, bool]]] = {}
    for e in emissions:
        if e.fate in ("ok", "duplicated"):
            per_sensor.setdefault(e.frame.sensor, []).append(
                (e.t, bool(e.frame.flags & FLAG_DETECT))
            )
    spans: list[Span] = []
    for sensor, frames in per_sensor.items():
        state = False
        pending: int | None = None
        arrival = 0
        for t, detect in frames:
            # Confirmation is by time: a candidate state that nothing contradicted for
            # ``confirm_ms`` is confirmed, whether or not a frame came in between.
            if pending is not None and t - pending >= confirm_ms:
                state = not state
                if state:
                    arrival = pending
                else:
                    spans.append(Span(bay_of[sensor], arrival, pending))
                pending = None
            if detect == state:
                pending = None
            elif pending is None:
                pending = t
        if state:
            spans.append(Span(bay_of[sensor], arrival, None))
    return spans


def session_f1(detected: list[Span], truth: Truth, tolerance_ms: int = 35_000) -> float:
    true = [Span(s.bay_id, s.arrival, s.departure) for s in truth.sessions]
    used: set[int] = set()
    matched = 0
    for d in detected:
        for i, s in enumerate(true):
            if i in used or s.bay != d.bay or abs(s.start - d.start) > tolerance_ms:
                continue
            if (s.end is None) != (d.end is None):
                continue
            if s.end is not None and d.end is not None and abs(s.end - d.end) > tolerance_ms:
                continue
            used.add(i)
            matched += 1
            break
    if not detected or not true:
        return 0.0
    precision, recall = matched / len(detected), matched / len(true)
    return 0.0 if matched == 0 else 2 * precision * recall / (precision + recall)
