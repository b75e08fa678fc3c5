"""Open data, no token: every bay as an NGSI-LD ParkingSpot (key-values), zone occupancy.

Nothing personal leaves here: no alerts, rights, sessions or gateway ids; only each bay's
status and where it is. Responses carry an ETag and a short public max-age.
"""

from __future__ import annotations

import hashlib
import time
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from kerbside.collector.api.deps import QueriesDep, SiteDep
from kerbside.collector.api.routes.bays import paged
from kerbside.collector.api.routes.common import Cursor, JsonText
from kerbside.core.instants import format_instant

router = APIRouter(prefix="/api/v1/opendata", tags=["open data"])
MAX_AGE_S = 15
_CONTEXT_LINK = (
    "<https://raw.githubusercontent.com/smart-data-models/dataModel.Parking/master/context.jsonld>;"
    ' rel="http://www.w3.org/ns/json-ld#context"; type="application/ld+json"'
)
_STATUS = {"occupied": "occupied", "vacant": "free"}
OpenLimit = Annotated[int, Query(ge=1, le=10_000, description="items per page (default 1000)")]


def _cached(request: Request, body: Any, links: list[str]) -> Response:
    response = JsonText(body)
    etag = '"' + hashlib.blake2b(response.body, digest_size=12).hexdigest() + '"'
    headers = {
        "Cache-Control": f"public, max-age={MAX_AGE_S}",
        "ETag": etag,
        "Access-Control-Allow-Origin": "*",
    }
    if links:
        headers["Link"] = ", ".join(links)
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    response.headers.update(headers)
    return response


def parking_spot(bay: dict[str, Any], suspended: bool, now_iso: str) -> dict[str, Any]:
    status = "closed" if suspended else _STATUS.get(str(bay.get("state")), "unknown")
    spot: dict[str, Any] = {
        "id": f"urn:ngsi-ld:ParkingSpot:{bay['bay_id']}",
        "type": "ParkingSpot",
        "status": status,
        "category": ["onStreet"],
        "refParkingSite": f"urn:ngsi-ld:OnStreetParking:{bay['zone_id']}",
    }
    location = bay.get("location")
    if isinstance(location, dict) and "lat" in location and "lon" in location:
        spot["location"] = {"type": "Point", "coordinates": [location["lon"], location["lat"]]}
    spot["observedAt"] = bay.get("since") or now_iso
    return spot


@router.get(
    "/parking-spots",
    summary="Every bay as an NGSI-LD ParkingSpot (key-values)",
    responses={200: {"description": "array of ParkingSpot; Link rel=next when more"}},
)
async def parking_spots(
    request: Request, queries: QueriesDep, limit: OpenLimit = 1000, cursor: Cursor = None
) -> Response:
    now = int(time.time() * 1000)
    suspended = queries.suspended_bays(now)
    items, next_cursor = paged(lambda: queries.bays(limit=limit, cursor=cursor))
    # A bay never observed is "unknown as of now"; rounding keeps the ETag stable per max-age.
    now_iso = format_instant(now - now % (MAX_AGE_S * 1000))
    spots = [parking_spot(b, b["bay_id"] in suspended, now_iso) for b in items]
    links = [_CONTEXT_LINK]
    if next_cursor is not None:
        next_url = request.url.include_query_params(cursor=next_cursor, limit=limit)
        links.append(f'<{next_url}>; rel="next"')
    return _cached(request, spots, links)


@router.get(
    "/zone-occupancy",
    summary="Occupancy now per zone (APDS Place occupancy shape)",
)
async def zone_occupancy(request: Request, queries: QueriesDep, site: SiteDep) -> Response:
    now = int(time.time() * 1000)
    suspended = queries.suspended_bays(now)
    counts = {zone: {"occupied": 0, "vacant": 0, "unknown": 0, "closed": 0} for zone in site.zones}
    cursor: str | None = None
    while True:
        items, cursor = queries.bays(limit=1000, cursor=cursor)
        for bay in items:
            zone_counts = counts.setdefault(
                str(bay["zone_id"]), {"occupied": 0, "vacant": 0, "unknown": 0, "closed": 0}
            )
            state = "closed" if bay["bay_id"] in suspended else str(bay.get("state"))
            zone_counts[state if state in zone_counts else "unknown"] += 1
        if cursor is None:
            break
    stamp = format_instant(now)
    places = []
    for zone_id, c in sorted(counts.items()):
        total = sum(c.values())
        known = c["occupied"] + c["vacant"]
        places.append(
            {
                "id": zone_id,
                "type": "place",
                "name": [{"language": "en", "string": site.zones.get(zone_id) or zone_id}],
                "occupancy": {
                    "validAt": stamp,
                    "totalSpaces": total,
                    "occupiedSpaces": c["occupied"],
                    "vacantSpaces": c["vacant"],
                    "unknownSpaces": c["unknown"],
                    "closedSpaces": c["closed"],
                    "occupancyRate": round(c["occupied"] / known, 4) if known else None,
                },
            }
        )
    return _cached(request, {"version": "1.0", "places": places}, [])
