"""Instants on the wire: every instant formats to text that parses back to it, whatever its
year (a year under 1000 once came out unpadded, which no parser takes back)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from kerbside.core.instants import format_instant, parse_instant

FIRST = parse_instant("0001-01-01T00:00:00Z")
LAST = parse_instant("9999-12-31T23:59:59.999Z")


def test_years_under_1000_are_written_with_four_digits() -> None:
    assert format_instant(parse_instant("0999-01-01T00:00:00Z")) == "0999-01-01T00:00:00.000Z"
    assert format_instant(FIRST) == "0001-01-01T00:00:00.000Z"
    assert format_instant(-1) == "1969-12-31T23:59:59.999Z"


@given(st.integers(FIRST, LAST))
def test_every_instant_round_trips(instant: int) -> None:
    text = format_instant(instant)
    assert len(text) == 24
    assert parse_instant(text) == instant
