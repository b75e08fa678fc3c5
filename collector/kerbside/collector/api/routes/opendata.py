"""Open data, no token: the bays, kinds of bay and zones as Smart Data Models entities (NGSI-LD
key-values), the bays also as GeoJSON and CSV, and each zone's occupancy (APDS).

Nothing personal leaves here: no alerts, rights, sessions, gateway or sensor ids; only each bay's
status, what kind of bay it is, its rules and where it is. Every answer comes from the open data
cache (``opendatacache.py``: at most ``REFRESH_S`` old) and carries an ETag (``If-None-Match``
gets 304) and a short public max-age.

The JSON-LD context follows NGSI-LD: as a ``Link`` header on ``application/json`` (the default),
or as an ``@context`` member of each entity when the client accepts ``application/ld+json``.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Sequence
from enum import StrEnum
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from kerbside.collector.api.deps import QueriesDep
from kerbside.collector.api.errors import FieldError
from kerbside.collector.api.ngsi import (
    CONTEXT,
    CORE_CONTEXT,
    CSV_COLUMNS,
    csv_row,
    geojson_feature,
)
from kerbside.collector.api.opendatacache import OpenDataCache, Published
from kerbside.collector.api.routes.common import Cursor

router = APIRouter(prefix="/api/v1/opendata", tags=["open data"])
MAX_AGE_S = 15
_CONTEXT_LINK = (
    f'<{CONTEXT}>; rel="http://www.w3.org/ns/json-ld#context"; type="application/ld+json"'
)
_LD_CONTEXT = [CORE_CONTEXT, CONTEXT]
OpenLimit = Annotated[int, Query(ge=1, le=10_000, description="items per page (default 1000)")]


class Format(StrEnum):
    json = "json"
    geojson = "geojson"
    csv = "csv"


FormatQuery = Annotated[
    Format,
    Query(description="json (NGSI-LD key-values, the default), geojson or csv"),
]


def _cache(request: Request) -> OpenDataCache:
    cache: OpenDataCache = request.app.state.opendata
    return cache


def _wants_ld(request: Request) -> bool:
    return "application/ld+json" in request.headers.get("accept", "")


def _answer(
    request: Request,
    published: Published,
    key: tuple[Any, ...],
    make: Callable[[], bytes],
    *,
    media_type: str,
    links: Sequence[str] = (),
) -> Response:
    rendered = published.render(key, make)
    headers = {
        "Cache-Control": f"public, max-age={MAX_AGE_S}",
        "ETag": rendered.etag,
        "Access-Control-Allow-Origin": "*",
        "Vary": "Accept",
    }
    if links:
        headers["Link"] = ", ".join(links)
    if request.headers.get("if-none-match") == rendered.etag:
        return Response(status_code=304, headers=headers)
    return Response(rendered.body, media_type=media_type, headers=headers)


def _entities(entities: Sequence[dict[str, Any]], ld: bool) -> bytes:
    if ld:
        return orjson.dumps([{**e, "@context": _LD_CONTEXT} for e in entities])
    return orjson.dumps(list(entities))


def _json_ld(
    request: Request, published: Published, name: str, entities: Sequence[dict[str, Any]]
) -> Response:
    if _wants_ld(request):
        return _answer(
            request,
            published,
            (name, "ld"),
            lambda: _entities(entities, True),
            media_type="application/ld+json",
        )
    return _answer(
        request,
        published,
        (name, "json"),
        lambda: _entities(entities, False),
        media_type="application/json",
        links=[_CONTEXT_LINK],
    )


def _offset(cursor: str | None) -> int:
    if cursor is None:
        return 0
    if not cursor.isdigit():
        raise FieldError(["query", "cursor"], "not a cursor from this API: expected a number")
    return int(cursor)


@router.get(
    "/parking-spots",
    summary="Every bay as a ParkingSpot (NGSI-LD key-values), or GeoJSON, or CSV",
    responses={
        200: {
            "description": "a page of ParkingSpot entities (Link rel=next when more)",
            "content": {
                "application/json": {},
                "application/ld+json": {},
                "application/geo+json": {},
                "text/csv": {},
            },
        }
    },
)
async def parking_spots(
    request: Request,
    queries: QueriesDep,
    limit: OpenLimit = 1000,
    cursor: Cursor = None,
    format: FormatQuery = Format.json,
) -> Response:
    start = _offset(cursor)
    published = _cache(request).current(queries)
    rows = published.data.spots[start : start + limit]
    links = []
    if start + limit < len(published.data.spots):
        next_url = request.url.include_query_params(cursor=str(start + limit), limit=limit)
        links.append(f'<{next_url}>; rel="next"')
    if format is Format.geojson:
        return _answer(
            request,
            published,
            ("spots", "geojson", start, limit),
            lambda: orjson.dumps(
                {"type": "FeatureCollection", "features": [geojson_feature(r) for r in rows]}
            ),
            media_type="application/geo+json",
            links=links,
        )
    if format is Format.csv:
        return _answer(
            request,
            published,
            ("spots", "csv", start, limit),
            lambda: _csv([csv_row(r) for r in rows]),
            media_type="text/csv; charset=utf-8",
            links=links,
        )
    entities = [r.entity for r in rows]
    if _wants_ld(request):
        return _answer(
            request,
            published,
            ("spots", "ld", start, limit),
            lambda: _entities(entities, True),
            media_type="application/ld+json",
            links=links,
        )
    return _answer(
        request,
        published,
        ("spots", "json", start, limit),
        lambda: _entities(entities, False),
        media_type="application/json",
        links=[_CONTEXT_LINK, *links],
    )


def _csv(rows: list[list[str]]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    writer.writerows(rows)
    return out.getvalue().encode("utf-8")


@router.get(
    "/on-street-parking",
    summary="Every zone as an OnStreetParking (NGSI-LD key-values) with its spot numbers",
)
async def on_street_parking(request: Request, queries: QueriesDep) -> Response:
    published = _cache(request).current(queries)
    return _json_ld(request, published, "zones", published.data.zones)


@router.get(
    "/parking-groups",
    summary="Each kind of bay in a zone as a ParkingGroup (NGSI-LD key-values)",
)
async def parking_groups(request: Request, queries: QueriesDep) -> Response:
    published = _cache(request).current(queries)
    return _json_ld(request, published, "groups", published.data.groups)


@router.get(
    "/zone-occupancy",
    summary="Occupancy now per zone (APDS Place occupancy shape)",
)
async def zone_occupancy(request: Request, queries: QueriesDep) -> Response:
    published = _cache(request).current(queries)
    places = published.data.occupancy
    return _answer(
        request,
        published,
        ("occupancy",),
        lambda: orjson.dumps({"version": "1.0", "places": list(places)}),
        media_type="application/json",
    )
