"""Time-weighted occupancy per bucket for a zone (or the whole site), from the store, never
counting time after the collector's now. At most ``MAX_BAY_DAYS`` bays x days of history per
request, read and counted in a worker thread."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Query, Request

from kerbside.collector.api.deps import Analyst, Now, QueriesDep, SiteDep
from kerbside.collector.api.errors import FieldError
from kerbside.collector.api.models import Occupancy
from kerbside.collector.api.occupancy import (
    DAY_MS,
    MAX_BAY_DAYS,
    MAX_BUCKETS,
    Bucket,
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
    request: Request,
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
    bay_ids = queries.bay_ids(zone)
    horizon = max(lo, min(hi, now))
    bay_days = len(bay_ids) * (horizon - lo) / DAY_MS
    if bay_days > MAX_BAY_DAYS:
        raise FieldError(
            ["query", "start"],
            f"{len(bay_ids)} bays over {(horizon - lo) / DAY_MS:.1f} days is more than"
            f" {MAX_BAY_DAYS:,} bay-days: narrow the range or choose a zone (InfluxDB's"
            " zone_occupancy holds the long view)",
        )
    origins = queries.bay_origins()

    def count() -> list[Bucket]:
        timelines = queries.timelines(bay_ids, lo, horizon)
        for bay_id in bay_ids:  # bays never heard of: unknown from their origin
            timelines.setdefault(bay_id, [])
        return occupancy_buckets(timelines, lo, hi, step, now=now, origins=origins)

    # Off the loop (which ingests, raises alerts and answers everyone else meanwhile), and a
    # few at a time: a read of a month of a city's bays takes seconds of CPU.
    async with request.app.state.heavy_reads:
        buckets = await asyncio.to_thread(count)
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
