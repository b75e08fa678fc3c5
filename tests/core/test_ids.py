"""Ids become MQTT topic levels: exactly ``[A-Za-z0-9_-]{1,64}`` (sensors: up to 32)."""

from __future__ import annotations

import pytest

from kerbside.core.ids import ID_RE, SENSOR_ID_RE, is_valid_id


@pytest.mark.parametrize("value", ["a", "CA-F-PKW-001", "gw_01", "x" * 64])
def test_ids_of_the_allowed_shape(value: str) -> None:
    assert is_valid_id(value)


@pytest.mark.parametrize("value", ["", "x" * 65, "a b", "a/b", "a+", "#", "é", "gw-1\n", "\ngw-1"])
def test_anything_else_is_refused(value: str) -> None:
    assert not is_valid_id(value)
    assert ID_RE.match(value) is None


def test_sensor_ids_are_at_most_32_and_end_where_they_end() -> None:
    assert SENSOR_ID_RE.match("S" * 32) is not None
    assert SENSOR_ID_RE.match("S" * 33) is None
    assert SENSOR_ID_RE.match("S-1\n") is None
