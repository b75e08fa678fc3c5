"""Instants on the wire: ISO 8601 UTC with milliseconds and ``Z`` (SPEC, preamble).

Inside Kerbside an instant is an ``int`` of milliseconds since the Unix epoch: exact, hashable,
cheap to compare, and free of float rounding at the boundaries the rules care about.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

Instant = int  # milliseconds since 1970-01-01T00:00:00Z

_INSTANT_RE = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,6}))?(Z|[+-]\d{2}:\d{2})$"
)


class InstantError(ValueError):
    """A string that is not an ISO 8601 instant with a zone."""


def parse_instant(text: str) -> Instant:
    """Parse ``2026-11-26T08:00:05.120Z`` (milliseconds optional) into epoch milliseconds.

    Offsets other than ``Z`` are accepted (they name one instant unambiguously); a time without
    a zone is rejected, because it does not.
    """
    if not isinstance(text, str) or _INSTANT_RE.match(text) is None:
        raise InstantError(f"not an ISO 8601 UTC instant: {text!r}")
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as exc:
        raise InstantError(f"not an ISO 8601 UTC instant: {text!r}") from exc
    return from_datetime(moment)


_DAYS: dict[int, str] = {}  # days since the epoch -> "YYYY-MM-DD" (the collector formats a lot)


def format_instant(instant: Instant) -> str:
    """Format epoch milliseconds as ``2026-11-26T08:00:05.120Z``."""
    seconds, millis = divmod(instant, 1000)
    day, second = divmod(seconds, 86_400)
    date = _DAYS.get(day)
    if date is None:
        date = datetime.fromtimestamp(day * 86_400, tz=UTC).strftime("%Y-%m-%d")
        if len(_DAYS) < 100_000:
            _DAYS[day] = date
    hour, second = divmod(second, 3600)
    minute, second = divmod(second, 60)
    return f"{date}T{hour:02d}:{minute:02d}:{second:02d}.{millis:03d}Z"


def to_datetime(instant: Instant) -> datetime:
    """An aware UTC datetime for an instant (for zone conversions)."""
    return datetime.fromtimestamp(instant / 1000, tz=UTC)


def from_datetime(moment: datetime) -> Instant:
    """Epoch milliseconds of an aware datetime."""
    if moment.tzinfo is None:
        raise InstantError("naive datetime has no instant")
    delta = moment - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000
