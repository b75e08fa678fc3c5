"""Open data: NGSI-LD ParkingSpot key-values exactly as documented, APDS zone occupancy, caching."""

from __future__ import annotations

import time

import httpx

from kerbside.core.instants import format_instant
from tests.collector.api.conftest import ApiServer

SPOT_KEYS = {"id", "type", "status", "category", "refParkingSite", "location", "observedAt"}


def _now() -> int:
    return int(time.time() * 1000)


def test_parking_spots_shape_and_status(api: ApiServer) -> None:
    now = _now()
    svc = api.service
    api.call(lambda: svc.set_state("CA-F-B00000", "occupied", now - 60_000))
    api.call(lambda: svc.set_state("CA-G-B00001", "vacant", now - 30_000))
    api.call(lambda: svc.set_state("CA-F-B00002", "occupied", now - 30_000))
    api.run(
        svc.collector.commands.post_suspension(
            {
                "suspension_id": "s1",
                "bay_ids": ["CA-F-B00002"],
                "reason": "works",
                "start": format_instant(now - 3_600_000),
                "end": format_instant(now + 3_600_000),
            }
        )
    )
    with httpx.Client(base_url=api.url) as c:  # no token
        r = c.get("/api/v1/opendata/parking-spots")
    assert r.status_code == 200
    spots = {s["id"]: s for s in r.json()}
    assert len(spots) == 6
    for spot in spots.values():
        assert set(spot) == SPOT_KEYS
        assert spot["type"] == "ParkingSpot"
        assert spot["category"] == ["onStreet"]
        assert spot["location"]["type"] == "Point"
    first = spots["urn:ngsi-ld:ParkingSpot:CA-F-B00000"]
    assert first["status"] == "occupied"
    assert first["observedAt"] == format_instant(now - 60_000)
    assert first["refParkingSite"] == "urn:ngsi-ld:OnStreetParking:CA-F"
    assert first["location"]["coordinates"] == [-0.1452, 51.5378]  # [lon, lat]
    assert spots["urn:ngsi-ld:ParkingSpot:CA-G-B00001"]["status"] == "free"
    assert spots["urn:ngsi-ld:ParkingSpot:CA-F-B00002"]["status"] == "closed"
    assert spots["urn:ngsi-ld:ParkingSpot:CA-G-B00003"]["status"] == "unknown"
    text = r.text
    for private in ("gateway", "sensor", "alert", "right", "officer"):
        assert private not in text


def test_parking_spots_cache_headers_etag_and_pages(api: ApiServer) -> None:
    for bay_id in list(api.service.site.bays):
        api.call(lambda b=bay_id: api.service.set_state(b, "vacant", _now() - 5000))
    with httpx.Client(base_url=api.url) as c:
        r = c.get("/api/v1/opendata/parking-spots", params={"limit": 4})
        assert r.status_code == 200
        assert "public" in r.headers["cache-control"]
        assert "max-age=" in r.headers["cache-control"]
        assert len(r.json()) == 4
        links = r.headers["link"]
        assert 'rel="next"' in links
        assert "json-ld#context" in links
        again = c.get(
            "/api/v1/opendata/parking-spots",
            params={"limit": 4},
            headers={"If-None-Match": r.headers["etag"]},
        )
        assert again.status_code == 304
        rest = c.get("/api/v1/opendata/parking-spots", params={"limit": 4, "cursor": "4"})
        assert len(rest.json()) == 2
        assert 'rel="next"' not in rest.headers["link"]
        api.call(lambda: api.service.set_state("CA-F-B00000", "occupied", _now()))
        changed = c.get(
            "/api/v1/opendata/parking-spots",
            params={"limit": 4},
            headers={"If-None-Match": r.headers["etag"]},
        )
        assert changed.status_code == 200


def test_zone_occupancy_counts(api: ApiServer) -> None:
    now = _now()
    for bay, state in [
        ("CA-F-B00000", "occupied"),
        ("CA-F-B00002", "vacant"),
        ("CA-F-B00004", "occupied"),
        ("CA-G-B00001", "vacant"),
    ]:
        api.call(lambda b=bay, s=state: api.service.set_state(b, s, now))
    with httpx.Client(base_url=api.url) as c:
        r = c.get("/api/v1/opendata/zone-occupancy")
    assert r.status_code == 200
    assert "max-age" in r.headers["cache-control"]
    places = {p["id"]: p for p in r.json()["places"]}
    f = places["CA-F"]["occupancy"]
    assert (f["totalSpaces"], f["occupiedSpaces"], f["vacantSpaces"], f["unknownSpaces"]) == (
        3,
        2,
        1,
        0,
    )
    assert f["occupancyRate"] == round(2 / 3, 4)
    g = places["CA-G"]["occupancy"]
    assert (g["occupiedSpaces"], g["vacantSpaces"], g["unknownSpaces"]) == (0, 1, 2)
    assert g["occupancyRate"] == 0.0
