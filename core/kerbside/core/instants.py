"""Instants on the wire: ISO 8601 UTC with milliseconds and ``Z`` (docs/protocols.md).

Inside Kerbside an instant is an ``int`` of milliseconds since the Unix epoch: exact, hashable,
cheap to compare, and free of float rounding at the boundaries the rules care about.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime

Instant = int  # milliseconds since 1970-01-01T00:00:00Z

_INSTANT_RE = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,6}))?(Z|[+-]\d{2}:\d{2})$"
)


_CANONICAL_RE = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z\Z", re.ASCII)
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
_DAY_NUMBERS: dict[str, int] = {}  # "YYYY-MM-DD" -> days since the epoch, for valid dates
# "YYYY-MM-DDTHH:MM:SS." of canonical instants parsed -> epoch milliseconds of that second
_SECOND_STARTS: dict[str, int] = {}


def _day_number(text: str) -> int | None:
    try:
        day = date.fromisoformat(text).toordinal() - _EPOCH_ORDINAL
    except ValueError:
        return None  # not a date: the general path below says so
    if len(_DAY_NUMBERS) < 100_000:
        _DAY_NUMBERS[text] = day
    return day


class InstantError(ValueError):
    """A string that is not an ISO 8601 instant with a zone."""


def parse_instant(text: str) -> Instant:
    """Parse ``2026-11-26T08:00:05.120Z`` (milliseconds optional) into epoch milliseconds.

    Offsets other than ``Z`` are accepted (they name one instant unambiguously); a time without
    a zone is rejected, because it does not.
    """
    if type(text) is str and len(text) == 24 and text[23] == "Z":
        # a second already seen in the canonical form: only its milliseconds to read
        base = _SECOND_STARTS.get(text[:20])
        millis = text[20:23]
        if base is not None and millis.isascii() and millis.isdigit():
            return base + int(millis)
    if type(text) is str and _CANONICAL_RE.match(text) is not None:
        # the canonical form, as every gateway sends it: arithmetic instead of a datetime
        day = _DAY_NUMBERS.get(text[:10])
        if day is None:
            day = _day_number(text[:10])
        hour, minute, second = int(text[11:13]), int(text[14:16]), int(text[17:19])
        if day is not None and hour < 24 and minute < 60 and second < 60:
            base = (((day * 24 + hour) * 60 + minute) * 60 + second) * 1000
            if len(_SECOND_STARTS) >= 200_000:  # instants near now, mostly: start afresh
                _SECOND_STARTS.clear()
            _SECOND_STARTS[text[:20]] = base
            return base + int(text[20:23])
    if not isinstance(text, str) or _INSTANT_RE.match(text) is None:
        raise InstantError(f"not an ISO 8601 UTC instant: {text!r}")
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as exc:
        raise InstantError(f"not an ISO 8601 UTC instant: {text!r}") from exc
    return from_datetime(moment)


_DAYS: dict[int, str] = {}  # days since the epoch -> "YYYY-MM-DD" (the collector formats a lot)
_SECONDS: dict[int, str] = {}  # seconds since the epoch -> "YYYY-MM-DDTHH:MM:SS.", recent ones
_TWO = [f"{i:02d}" for i in range(100)]
_THREE = [f"{i:03d}" for i in range(1000)]


def format_instant(instant: Instant) -> str:
    """Format epoch milliseconds as ``2026-11-26T08:00:05.120Z``."""
    seconds, millis = divmod(instant, 1000)
    prefix = _SECONDS.get(seconds)
    if prefix is None:
        prefix = _second_prefix(seconds)
    return prefix + _THREE[millis] + "Z"


def _second_prefix(seconds: int) -> str:
    day, second = divmod(seconds, 86_400)
    date_text = _DAYS.get(day)
    if date_text is None:
        # not strftime: its %Y writes year 999 as "999", which no parser takes back
        moment = date.fromordinal(day + _EPOCH_ORDINAL)
        date_text = f"{moment.year:04d}-{_TWO[moment.month]}-{_TWO[moment.day]}"
        if len(_DAYS) < 100_000:
            _DAYS[day] = date_text
    hour, second = divmod(second, 3600)
    minute, second = divmod(second, 60)
    # concatenating table entries: twice as fast as an f-string with format specs
    prefix = date_text + "T" + _TWO[hour] + ":" + _TWO[minute] + ":" + _TWO[second] + "."
    if len(_SECONDS) >= 200_000:  # the collector formats instants near now: start afresh
        _SECONDS.clear()
    _SECONDS[seconds] = prefix
    return prefix


def from_datetime(moment: datetime) -> Instant:
    """Epoch milliseconds of an aware datetime."""
    if moment.tzinfo is None:
        raise InstantError("naive datetime has no instant")
    delta = moment - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000
