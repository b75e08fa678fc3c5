"""Query parameters and response helpers shared by the routes."""

from __future__ import annotations

from typing import Annotated, Any, Final

import orjson
from fastapi import Query
from fastapi.responses import Response

from kerbside.collector.api.errors import FieldError
from kerbside.core.instants import Instant, InstantError, parse_instant

Limit = Annotated[int, Query(ge=1, le=1000, description="items per page (default 100)")]
Cursor = Annotated[
    str | None,
    Query(max_length=200, description="next_cursor of the previous page; omit for the first"),
]
IdQuery = Annotated[str | None, Query(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
InstantQuery = Annotated[
    str | None, Query(max_length=40, examples=["2026-11-26T08:00:00.000Z"], description="ISO 8601")
]


# Instants a query may name: from the Unix epoch to the last day of year 9999 (an instant in
# year 0 or 10000 cannot be written back in ISO 8601).
EARLIEST_QUERY: Final = 0
LATEST_QUERY: Final = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z


def query_instant(name: str, value: str | None) -> Instant | None:
    if value is None:
        return None
    try:
        instant = parse_instant(value)
    except InstantError as exc:
        raise FieldError(["query", name], "expected an ISO 8601 UTC instant") from exc
    if not EARLIEST_QUERY <= instant <= LATEST_QUERY:
        raise FieldError(["query", name], "expected an instant from 1970 to 9999-12-31")
    return instant


class JsonText(Response):
    """A JSON body serialised once, compactly, by orjson (lists of bays are the hot path)."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        if isinstance(content, bytes):
            return content
        return orjson.dumps(content)


def page(items: list[dict[str, Any]], next_cursor: str | None) -> JsonText:
    return JsonText({"items": items, "next_cursor": next_cursor})
