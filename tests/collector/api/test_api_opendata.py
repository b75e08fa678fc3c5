"""Open data: ParkingSpot, ParkingGroup and OnStreetParking (NGSI-LD key-values) as documented,
GeoJSON and CSV, the JSON-LD context, APDS zone occupancy, and the cache that builds once for
every client (the Smart Data Models schemas: test_opendata_schemas.py)."""

from __future__ import annotations

import csv
import io
import time
from functools import partial
from typing import Any

import httpx

from kerbside.collector.api.ngsi import iso_duration, opening_hours
from kerbside.collector.api.opendatacache import OpenDataCache
from kerbside.core.instants import format_instant
from kerbside.core.site import HourRange
from tests.collector.api.conftest import ApiServer
from tests.collector.api.harness import site_data

SPOTS = "/api/v1/opendata/parking-spots"
SPOT_KEYS = {  # the contract's, then the additions
    *("id", "type", "status", "category", "refParkingSite", "location", "observedAt"),
    *("name", "dateModified", "refParkingGroup", "address", "controlledHours"),
}
CONTEXT_LINK = 'rel="http://www.w3.org/ns/json-ld#context"; type="application/ld+json"'


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
        r = c.get(SPOTS)
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    assert CONTEXT_LINK in r.headers["link"]
    spots = {s["id"]: s for s in r.json()}
    assert len(spots) == 6
    for spot in spots.values():
        assert set(spot) == SPOT_KEYS
        assert spot["type"] == "ParkingSpot"
        assert spot["category"] == ["onStreet"]
        assert spot["location"]["type"] == "Point"
        assert spot["address"] == {"streetAddress": "Parkway"}
        assert spot["controlledHours"] == "24/7"  # the harness's zones: controlled all the time
    first = spots["urn:ngsi-ld:ParkingSpot:CA-F-B00000"]
    assert first["status"] == "occupied"
    assert first["name"] == "CA-F-B00000"
    assert first["observedAt"] == first["dateModified"] == format_instant(now - 60_000)
    assert first["refParkingSite"] == "urn:ngsi-ld:OnStreetParking:CA-F"
    assert first["refParkingGroup"] == "urn:ngsi-ld:ParkingGroup:CA-F:paid"
    assert first["location"]["coordinates"] == [-0.1452, 51.5378]  # [lon, lat]
    assert spots["urn:ngsi-ld:ParkingSpot:CA-G-B00001"]["status"] == "free"
    assert spots["urn:ngsi-ld:ParkingSpot:CA-F-B00002"]["status"] == "closed"
    never = spots["urn:ngsi-ld:ParkingSpot:CA-G-B00003"]
    assert never["status"] == "unknown"
    # a bay never observed was last modified when it came into being (the harness's start)
    assert never["dateModified"] == "2025-01-01T00:00:00.000Z"
    text = r.text
    for private in ("gateway", "sensor", "alert", "right", "officer", "gw-1"):
        assert private not in text


def test_bay_kinds_hours_and_max_stays_in_the_models_words(api: ApiServer) -> None:
    weekdays = [{"days": ["mon", "tue", "wed", "thu", "fri"], "start": "08:30", "end": "18:30"}]
    site = site_data(
        n_bays=6,
        bays={
            "CA-F-B00000": {"kind": "disabled", "max_stay_minutes": 180},
            "CA-G-B00001": {"kind": "resident", "controlled_hours": weekdays},
            "CA-F-B00002": {"kind": "loading", "max_stay_minutes": 20},
            "CA-G-B00003": {"kind": "limited", "max_stay_minutes": 90},
            "CA-F-B00004": {"kind": "free", "controlled_hours": "none"},
        },
    )
    api = api.fresh(site=site)
    with httpx.Client(base_url=api.url) as c:
        spots = {s["name"]: s for s in c.get(SPOTS).json()}
        served = c.get("/api/v1/opendata/parking-groups").json()
    # urn:ngsi-ld:ParkingGroup:{zone}:{kind} -> "zone/kind"
    groups = {"/".join(g["id"].split(":")[3:]): g for g in served}
    disabled = spots["CA-F-B00000"]
    assert disabled["maximumParkingDuration"] == "PT3H"
    assert disabled["permitActiveHours"] == {"disabledPermit": "24/7"}
    assert groups["CA-F/disabled"]["category"] == ["onStreet", "onlyDisabled"]
    assert groups["CA-F/disabled"]["requiredPermit"] == ["disabledPermit"]
    resident = spots["CA-G-B00001"]
    assert resident["permitActiveHours"] == {"residentPermit": "Mo-Fr 08:30-18:30"}
    assert resident["controlledHours"] == "Mo-Fr 08:30-18:30"
    assert groups["CA-G/resident"]["category"] == ["onStreet", "onlyResidents", "onlyWithPermit"]
    assert groups["CA-F/loading"]["category"] == ["onStreet", "loadUnloadZone"]
    assert spots["CA-F-B00002"]["maximumParkingDuration"] == "PT20M"
    assert groups["CA-G/limited"]["chargeType"] == ["free"]
    assert spots["CA-G-B00003"]["maximumParkingDuration"] == "PT1H30M"
    assert "permitActiveHours" not in spots["CA-G-B00003"]  # no permit: the hours are its limit's
    assert spots["CA-F-B00004"]["controlledHours"] == "off"
    assert groups["CA-G/paid"]["category"] == ["onStreet", "feeCharged"]
    assert "requiredPermit" not in groups["CA-G/paid"]  # a payment, or any permit, will do
    assert groups["CA-G/paid"]["controlledHours"] == "24/7"
    assert groups["CA-F/free"]["controlledHours"] == "off"


def test_on_street_parking_counts_over_known_bays(api: ApiServer) -> None:
    now = _now()
    svc = api.service
    for bay, state in [("CA-F-B00000", "occupied"), ("CA-F-B00002", "unknown")]:
        api.call(partial(svc.set_state, bay, state, now - 60_000))
    api.call(lambda: svc.set_state("CA-G-B00001", "vacant", now - 60_000))
    with httpx.Client(base_url=api.url) as c:
        r = c.get("/api/v1/opendata/on-street-parking")
    assert r.status_code == 200
    assert CONTEXT_LINK in r.headers["link"]
    zones = {z["id"]: z for z in r.json()}
    f = zones["urn:ngsi-ld:OnStreetParking:CA-F"]
    assert f["type"] == "OnStreetParking"
    assert f["name"] == "Zone CA-F"
    assert f["category"] == ["feeCharged"]
    # 3 bays: one occupied, one unknown (sensor), one never heard: the rate counts the known one
    counts = ("totalSpotNumber", "availableSpotNumber", "occupiedSpotNumber")
    assert tuple(f[k] for k in counts) == (3, 0, 1)
    assert f["occupancyRate"] == 1.0
    assert f["refParkingSpot"] == [f"urn:ngsi-ld:ParkingSpot:CA-F-B0000{i}" for i in (0, 2, 4)]
    assert f["refParkingGroup"] == ["urn:ngsi-ld:ParkingGroup:CA-F:paid"]
    assert f["location"]["type"] == "MultiPoint"
    assert len(f["location"]["coordinates"]) == 3
    g = zones["urn:ngsi-ld:OnStreetParking:CA-G"]
    assert tuple(g[k] for k in counts) == (3, 1, 0)
    assert g["occupancyRate"] == 0.0
    api.call(lambda: svc.set_state("CA-F-B00000", "unknown", now - 1000))
    api.app.state.opendata.refresh_s = 0  # (the cache's own test is below)
    with httpx.Client(base_url=api.url) as c:
        nothing_known = c.get("/api/v1/opendata/on-street-parking").json()[0]
    assert "occupancyRate" not in nothing_known  # no rate rather than a made-up one


def test_geojson_and_csv(api: ApiServer) -> None:
    now = _now()
    api.call(lambda: api.service.set_state("CA-F-B00000", "occupied", now - 60_000))
    with httpx.Client(base_url=api.url) as c:
        geo = c.get(SPOTS, params={"format": "geojson", "limit": 4})
        table = c.get(SPOTS, params={"format": "csv"})
        bad = c.get(SPOTS, params={"format": "xml"})
    assert geo.status_code == 200
    assert geo.headers["content-type"] == "application/geo+json"
    assert "public, max-age=" in geo.headers["cache-control"]
    assert geo.headers["etag"]
    assert 'rel="next"' in geo.headers["link"]
    collection = geo.json()
    assert collection["type"] == "FeatureCollection"
    assert len(collection["features"]) == 4
    feature = collection["features"][0]
    assert feature["type"] == "Feature"
    assert feature["id"] == "urn:ngsi-ld:ParkingSpot:CA-F-B00000"
    assert feature["geometry"] == {"type": "Point", "coordinates": [-0.1452, 51.5378]}
    props = feature["properties"]
    assert (props["status"], props["kind"], props["name"]) == ("occupied", "paid", "CA-F-B00000")
    assert props["refParkingGroup"] == "urn:ngsi-ld:ParkingGroup:CA-F:paid"

    assert table.status_code == 200
    assert table.headers["content-type"] == "text/csv; charset=utf-8"
    assert "public, max-age=" in table.headers["cache-control"]
    rows = list(csv.DictReader(io.StringIO(table.text)))
    assert len(rows) == 6
    row = rows[0]
    assert row["id"] == "urn:ngsi-ld:ParkingSpot:CA-F-B00000"
    assert (row["status"], row["kind"], row["zone"], row["street"]) == (
        "occupied",
        "paid",
        "CA-F",
        "Parkway",
    )
    assert (float(row["latitude"]), float(row["longitude"])) == (51.5378, -0.1452)
    assert row["controlledHours"] == "24/7"
    assert row["observedAt"] == format_instant(now - 60_000)
    assert bad.status_code == 422
    assert bad.json()["field"] == "query.format"


def test_json_ld_puts_the_context_in_each_entity(api: ApiServer) -> None:
    with httpx.Client(base_url=api.url, headers={"Accept": "application/ld+json"}) as c:
        for path in (
            SPOTS,
            "/api/v1/opendata/on-street-parking",
            "/api/v1/opendata/parking-groups",
        ):
            r = c.get(path)
            assert r.status_code == 200
            assert r.headers["content-type"] == "application/ld+json"
            assert "json-ld#context" not in r.headers.get("link", "")
            for entity in r.json():
                context = entity["@context"]
                assert context[0] == "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context.jsonld"
                assert context[1].endswith("dataModel.Parking/master/context.jsonld")


def test_pages_and_cursors(api: ApiServer) -> None:
    with httpx.Client(base_url=api.url) as c:
        first = c.get(SPOTS, params={"limit": 4})
        assert len(first.json()) == 4
        assert 'rel="next"' in first.headers["link"]
        rest = c.get(SPOTS, params={"limit": 4, "cursor": "4"})
        assert [s["name"] for s in rest.json()] == ["CA-F-B00004", "CA-G-B00005"]
        assert 'rel="next"' not in rest.headers["link"]
        wrong = c.get(SPOTS, params={"cursor": "abc"})
        assert wrong.status_code == 422
        assert wrong.json()["field"] == "query.cursor"


class Ticks:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_one_build_serves_every_request_until_it_is_due(api: ApiServer) -> None:
    ticks = Ticks()
    cache = OpenDataCache(refresh_s=5.0, clock=ticks)
    api.call(lambda: setattr(api.app.state, "opendata", cache))
    now = _now()
    api.call(lambda: api.service.set_state("CA-F-B00000", "vacant", now - 60_000))
    paths: list[tuple[str, dict[str, Any]]] = [
        (SPOTS, {}),
        (SPOTS, {"limit": 2}),
        (SPOTS, {"format": "geojson"}),
        (SPOTS, {"format": "csv"}),
        ("/api/v1/opendata/on-street-parking", {}),
        ("/api/v1/opendata/parking-groups", {}),
        ("/api/v1/opendata/zone-occupancy", {}),
    ]
    with httpx.Client(base_url=api.url) as c:
        first = c.get(SPOTS)
        for _ in range(5):
            for path, params in paths:
                assert c.get(path, params=params).status_code == 200
        assert cache.builds == 1
        assert c.get(SPOTS, headers={"If-None-Match": first.headers["etag"]}).status_code == 304

        # a bay changes: served from the build until it is due (at most refresh_s behind)
        api.call(lambda: api.service.set_state("CA-F-B00000", "occupied", now - 1000))
        ticks.now += 4.9
        same = c.get(SPOTS, headers={"If-None-Match": first.headers["etag"]})
        assert same.status_code == 304
        ticks.now += 0.1
        changed = c.get(SPOTS, headers={"If-None-Match": first.headers["etag"]})
        assert changed.status_code == 200
        assert changed.json()[0]["status"] == "occupied"
        assert cache.builds == 2
        # nothing changed since: a new build, the same ETag
        ticks.now += 5
        assert c.get(SPOTS).headers["etag"] == changed.headers["etag"]
        assert cache.builds == 3

        # a site reload is served at once
        api.call(lambda: api.service.reload(site_data(without=("CA-G-B00005",))))
        assert len(c.get(SPOTS).json()) == 5
        assert cache.builds == 4


def test_zone_occupancy_counts(api: ApiServer) -> None:
    now = _now()
    for bay, state in [
        ("CA-F-B00000", "occupied"),
        ("CA-F-B00002", "vacant"),
        ("CA-F-B00004", "occupied"),
        ("CA-G-B00001", "vacant"),
    ]:
        api.call(partial(api.service.set_state, bay, state, now))
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


def test_controlled_hours_in_opening_hours_syntax() -> None:
    weekdays = HourRange(frozenset(range(5)), 8 * 60 + 30, 18 * 60 + 30)
    saturday = HourRange(frozenset({5}), 9 * 60, 13 * 60)
    nights = HourRange(frozenset({4, 5}), 22 * 60, 2 * 60)  # past midnight
    odd = HourRange(frozenset({0, 2, 6}), 0, 24 * 60)
    assert opening_hours("any", False) == "24/7"
    assert opening_hours("none", True) == "off"
    assert opening_hours((weekdays,), False) == "Mo-Fr 08:30-18:30"
    # ranges add up (a comma; a semicolon would override); holidays are off
    assert opening_hours((weekdays, saturday), True) == "Mo-Fr 08:30-18:30, Sa 09:00-13:00; PH off"
    assert opening_hours((nights,), False) == "Fr,Sa 22:00-02:00"
    assert opening_hours((odd,), False) == "Mo,We,Su 00:00-24:00"
    assert [iso_duration(m) for m in (20, 60, 90, 240, 0)] == [
        "PT20M",
        "PT1H",
        "PT1H30M",
        "PT4H",
        "PT0M",
    ]
