"""Time-weighted occupancy per bucket for a zone (or the whole site), from the store, never
counting time after the collector's now."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from kerbside.collector.api.deps import Analyst, Now, QueriesDep, SiteDep
from kerbside.collector.api.errors import FieldError
from kerbside.collector.api.models import Occupancy
from kerbside.collector.api.occupancy import (
    MAX_BUCKETS,
    IntervalError,
    occupancy_buckets,
    parse_interval,
)
from kerbside.collector.api.routes.common import IdQuery, JsonText, query_instant
from kerbside.core.instants import format_instant

router = APIRouter(prefix="/api/v1", tags=["occupancy"])


@router.get("/occupancy", response_model=Occupancy, summary="Occupancy rate per time bucket")
async def occupancy(
    *,
    queries: QueriesDep,
    site: SiteDep,
    now: Now,
    _: Analyst,
    start: Annotated[str, Query(max_length=40, examples=["2026-11-26T00:00:00Z"])],
    end: Annotated[str, Query(max_length=40, examples=["2026-11-27T00:00:00Z"])],
    zone: IdQuery = None,
    interval: Annotated[str, Query(max_length=10, examples=["15m", "1h", "1d"])] = "1h",
) -> JsonText:
    lo, hi = query_instant("start", start), query_instant("end", end)
    assert lo is not None
    assert hi is not None
    if hi <= lo:
        raise FieldError(["query", "end"], "end must be after start")
    try:
        step = parse_interval(interval)
    except IntervalError as exc:
        raise FieldError(["query", "interval"], str(exc)) from exc
    if (hi - lo + step - 1) // step > MAX_BUCKETS:
        raise FieldError(["query", "interval"], f"more than {MAX_BUCKETS} buckets; widen it")
    if zone is not None and zone not in site.zones:
        raise FieldError(["query", "zone"], f"unknown zone {zone}", 404)
    timelines = dict(queries.state_changes(zone, lo, min(hi, now)))
    for bay_id, bay_zone in site.bay_zone.items():  # bays never heard of: unknown from their origin
        if zone is None or bay_zone == zone:
            timelines.setdefault(bay_id, [])
    buckets = occupancy_buckets(timelines, lo, hi, step, now=now, origins=queries.bay_origins())
    return JsonText(
        {
            "zone_id": zone,
            "interval": interval,
            "as_of": format_instant(now),
            "buckets": [
                {
                    "start": format_instant(b.start),
                    "end": format_instant(b.end),
                    "partial": b.partial,
                    "rate": None if b.rate is None else round(b.rate, 6),
                    "occupied_s": b.occupied_ms / 1000,
                    "vacant_s": b.vacant_ms / 1000,
                    "unknown_s": b.unknown_ms / 1000,
                    "bays": b.bays,
                }
                for b in buckets
            ],
        }
    )
