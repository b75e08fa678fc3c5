"""The open data served is valid against the Smart Data Models' own JSON Schemas (ParkingSpot,
ParkingGroup, OnStreetParking and the common definitions they refer to, vendored in
vendor/smart-data-models/ as data with their licence), formats checked; every relationship points
at an entity that is served. The schemas' remote ``$ref``s resolve to the vendored files: nothing
is fetched."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError
from referencing import Registry, Resource
from referencing.exceptions import NoSuchResource
from referencing.jsonschema import DRAFT202012

from kerbside.core.instants import format_instant, parse_instant
from tests.collector.api.conftest import ApiServer
from tests.collector.api.harness import site_data

VENDOR = Path(__file__).parent / "vendor" / "smart-data-models"
T0 = parse_instant("2026-11-26T08:00:00Z")
WEEKDAYS = ["mon", "tue", "wed", "thu", "fri", "sat"]

# every kind of bay, a max stay, hours of the zone, of the bay, none, past midnight
SITE = site_data(
    n_bays=8,
    bays={
        "CA-F-B00000": {"kind": "disabled", "max_stay_minutes": 180},
        "CA-G-B00001": {"kind": "resident"},
        "CA-F-B00002": {"kind": "loading", "max_stay_minutes": 20},
        "CA-G-B00003": {"kind": "limited", "max_stay_minutes": 90},
        "CA-F-B00004": {"kind": "free", "controlled_hours": "none"},
        "CA-G-B00005": {
            "controlled_hours": [{"days": ["fri", "sat"], "start": "22:00", "end": "02:00"}],
            "max_stay_minutes": 240,
        },
    },
)
SITE["zones"][0].update(
    name="Camden Town",
    except_holidays=True,
    controlled_hours=[{"days": WEEKDAYS, "start": "08:30", "end": "18:30"}],
)


def _no_network(uri: str) -> Resource[Any]:
    raise NoSuchResource(ref=uri)  # type: ignore[call-arg]  # a $ref the vendored files do not hold: fail, never fetch


def _validators() -> dict[str, Draft202012Validator]:
    schemas = {p.name: json.loads(p.read_text()) for p in VENDOR.glob("*.json")}
    # referencing builds its classes with attrs behind a wrapper mypy cannot see through
    registry: Registry[Any] = Registry(retrieve=_no_network).with_resources(  # type: ignore[call-arg]
        (s["$id"], Resource.from_contents(s, default_specification=DRAFT202012))
        for s in schemas.values()
    )
    return {
        model: Draft202012Validator(
            schemas[f"{model}.schema.json"],
            registry=registry,
            format_checker=Draft202012Validator.FORMAT_CHECKER,
        )
        for model in ("ParkingSpot", "ParkingGroup", "OnStreetParking")
    }


VALIDATORS = _validators()


def _get(api: ApiServer, path: str, ld: bool = False) -> list[dict[str, Any]]:
    headers = {"Accept": "application/ld+json"} if ld else {}
    with httpx.Client(base_url=api.url) as c:
        r = c.get(path, headers=headers)
    assert r.status_code == 200
    data: list[dict[str, Any]] = r.json()
    return data


@pytest.fixture
def served(api: ApiServer) -> ApiServer:
    api = api.fresh(site=SITE)
    svc = api.service
    api.call(lambda: svc.set_state("CA-F-B00000", "occupied", T0))
    api.call(lambda: svc.set_state("CA-G-B00001", "vacant", T0))
    api.call(lambda: svc.set_state("CA-F-B00002", "unknown", T0))
    api.call(lambda: svc.set_state("CA-G-B00005", "occupied", T0))
    api.run(
        svc.collector.commands.post_suspension(
            {
                "suspension_id": "s1",
                "bay_ids": ["CA-G-B00005"],
                "reason": "works",
                "start": format_instant(T0),
                "end": format_instant(T0 + 86_400_000),
            }
        )
    )
    return api


@pytest.mark.parametrize("ld", [False, True], ids=["json", "ld+json"])
def test_every_entity_is_valid_against_its_smart_data_model(served: ApiServer, ld: bool) -> None:
    spots = _get(served, "/api/v1/opendata/parking-spots", ld)
    groups = _get(served, "/api/v1/opendata/parking-groups", ld)
    zones = _get(served, "/api/v1/opendata/on-street-parking", ld)
    assert (len(spots), len(zones)) == (8, 2)
    assert {s["status"] for s in spots} == {"occupied", "free", "unknown", "closed"}
    for model, entities in (
        ("ParkingSpot", spots),
        ("ParkingGroup", groups),
        ("OnStreetParking", zones),
    ):
        for entity in entities:
            VALIDATORS[model].validate(entity)
            assert entity["type"] == model
            assert ("@context" in entity) is ld


def test_relationships_point_at_served_entities(served: ApiServer) -> None:
    spots = {s["id"]: s for s in _get(served, "/api/v1/opendata/parking-spots")}
    groups = {g["id"]: g for g in _get(served, "/api/v1/opendata/parking-groups")}
    zones = {z["id"]: z for z in _get(served, "/api/v1/opendata/on-street-parking")}
    for spot in spots.values():
        assert spot["refParkingSite"] in zones
        group = groups[spot["refParkingGroup"]]
        assert group["refParkingSite"] == spot["refParkingSite"]
        assert spot["id"] in zones[spot["refParkingSite"]]["refParkingSpot"]
    for zone_id, zone in zones.items():
        assert sorted(zone["refParkingSpot"]) == sorted(
            s for s, spot in spots.items() if spot["refParkingSite"] == zone_id
        )
        assert sorted(zone["refParkingGroup"]) == sorted(
            g for g, group in groups.items() if group["refParkingSite"] == zone_id
        )
        assert zone["totalSpotNumber"] == len(zone["refParkingSpot"])


def test_the_validator_does_check_enums_formats_and_required_fields(served: ApiServer) -> None:
    """The checks above could pass vacuously if the validator ignored formats or the common
    definitions; it does not."""
    spot = _get(served, "/api/v1/opendata/parking-spots")[0]
    zone = _get(served, "/api/v1/opendata/on-street-parking")[0]
    wrong = [
        ("ParkingSpot", {**spot, "status": "vacant"}),  # the model's enum
        ("ParkingSpot", {**spot, "dateModified": "yesterday"}),  # GSMA-Commons, date-time format
        ("ParkingSpot", {**spot, "location": {"type": "Point", "coordinates": [1]}}),
        ("ParkingSpot", {k: v for k, v in spot.items() if k != "refParkingSite"}),
        ("OnStreetParking", {**zone, "category": ["metered"]}),
        ("OnStreetParking", {**zone, "refParkingSpot": ["not a uri"]}),
    ]
    for model, entity in wrong:
        with pytest.raises(ValidationError):
            VALIDATORS[model].validate(entity)
