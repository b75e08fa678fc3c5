"""Bays with their current state; a bay's past sessions; the zones."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Path, Request

from kerbside.collector.api.deps import Analyst, OfficerOrAnalyst, QueriesDep, SiteDep
from kerbside.collector.api.errors import FieldError
from kerbside.collector.api.models import Bay, BayPage, SessionPage, Zone
from kerbside.collector.api.pagecache import PageCache
from kerbside.collector.api.routes.common import (
    Cursor,
    IdQuery,
    InstantQuery,
    JsonText,
    Limit,
    page,
    query_instant,
)
from kerbside.collector.queries import Page, Queries

router = APIRouter(prefix="/api/v1", tags=["bays"])
BayId = Annotated[str, Path(pattern=r"^[A-Za-z0-9_-]{1,64}$")]


def paged(call: Callable[[], Page]) -> Page:
    """Run a paginated read; a cursor it cannot read is the caller's error."""
    try:
        return call()
    except ValueError as exc:
        raise FieldError(["query", "cursor"], f"not a cursor from this API: {exc}") from exc


@router.get(
    "/bays",
    response_model=BayPage,
    summary="Bays with current state and since (a page may be up to 1 s old)",
)
async def list_bays(
    request: Request,
    queries: QueriesDep,
    _: OfficerOrAnalyst,
    zone: IdQuery = None,
    limit: Limit = 100,
    cursor: Cursor = None,
) -> JsonText:
    cache: PageCache = request.app.state.page_cache
    return JsonText(bays_page(cache, queries, zone, limit, cursor))


def bays_page(
    cache: PageCache, queries: Queries, zone: str | None, limit: int, cursor: str | None
) -> bytes:
    """The serialised page of bays, from ``cache`` (also served by api/fastpath.py)."""

    def build() -> bytes:
        items, next_cursor = paged(lambda: queries.bays(zone_id=zone, limit=limit, cursor=cursor))
        return orjson.dumps({"items": items, "next_cursor": next_cursor})

    return cache.get(("bays", zone, limit, cursor), build)


@router.get("/bays/{bay_id}", response_model=Bay, summary="One bay with current state")
async def get_bay(bay_id: BayId, queries: QueriesDep, _: OfficerOrAnalyst) -> JsonText:
    bay = queries.bay(bay_id)
    if bay is None:
        raise FieldError(["path", "bay_id"], f"no bay {bay_id}", 404)
    return JsonText(bay)


@router.get("/bays/{bay_id}/sessions", response_model=SessionPage, summary="A bay's past sessions")
async def bay_sessions(
    *,
    bay_id: BayId,
    queries: QueriesDep,
    _: Analyst,
    start: InstantQuery = None,
    end: InstantQuery = None,
    limit: Limit = 100,
    cursor: Cursor = None,
) -> JsonText:
    lo, hi = query_instant("start", start), query_instant("end", end)
    if lo is not None and hi is not None and hi <= lo:
        raise FieldError(["query", "end"], "end must be after start")
    if queries.bay(bay_id) is None:
        raise FieldError(["path", "bay_id"], f"no bay {bay_id}", 404)
    items, next_cursor = paged(lambda: queries.sessions(bay_id, lo, hi, limit=limit, cursor=cursor))
    return page(items, next_cursor)


@router.get("/zones", response_model=list[Zone], summary="The site's zones")
async def list_zones(site: SiteDep, _: OfficerOrAnalyst) -> JsonText:
    zones: list[dict[str, Any]] = [
        {"zone_id": zone_id, "name": name} for zone_id, name in sorted(site.zones.items())
    ]
    return JsonText(zones)
