"""Every number in the edge and collector configs has an upper bound: ``run`` turns durations
into whole milliseconds and sizes into bytes, and a huge but finite number (``1.0e+308``)
overflows there. A setting added without one fails here, not on a gateway."""

from __future__ import annotations

import typing
from collections.abc import Iterator

import annotated_types
import pytest
from pydantic import BaseModel

from kerbside.collector.config import CollectorConfig
from kerbside.edge.config import EdgeConfig


def _numbers(model: type[BaseModel], prefix: str = "") -> Iterator[tuple[str, bool]]:
    """(key, bounded above) for every int or float setting under ``model``."""
    for name, field in model.model_fields.items():
        key = f"{prefix}{name}"
        inner = field.annotation
        args = typing.get_args(inner)
        if typing.get_origin(inner) is list:
            inner = args[0]
        elif args and type(None) in args:  # X | None
            inner = next(a for a in args if a is not type(None))
        if isinstance(inner, type) and issubclass(inner, BaseModel):
            yield from _numbers(inner, f"{key}.")
        elif inner in (int, float):
            bounds = (annotated_types.Le, annotated_types.Lt)
            yield key, any(isinstance(m, bounds) for m in field.metadata)


@pytest.mark.parametrize("model", [EdgeConfig, CollectorConfig])
def test_every_number_in_a_config_has_an_upper_bound(model: type[BaseModel]) -> None:
    numbers = dict(_numbers(model))
    assert "detector.confirm_occupied_s" in numbers or "alert_delay_s" in numbers
    assert [key for key, bounded in numbers.items() if not bounded] == []


@pytest.mark.parametrize("model", [EdgeConfig, CollectorConfig])
def test_the_defaults_are_within_the_bounds(model: type[BaseModel]) -> None:
    # pydantic does not check defaults: every setting, taken as written, is checked here
    required = {"gateway_id": "gw-1"} if model is EdgeConfig else {"site": "site.yaml"}
    model.model_validate(model.model_validate(required).model_dump())
