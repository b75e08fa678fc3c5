"""The open data as Smart Data Models entities (NGSI-LD key-values): a ``ParkingSpot`` per bay, a
``ParkingGroup`` per kind of bay in a zone, an ``OnStreetParking`` per zone (docs/api.md says how
the site's kinds and hours map onto them).

Pure: the site, the bays' states, the suspended bays, when each bay came into being and ``now``
go in; entities come out. Nothing personal: no gateway, sensor, session, right or alert.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from kerbside.core.instants import Instant, format_instant
from kerbside.core.site import Bay, HourRange, Hours, Site, Zone

CONTEXT = (
    "https://raw.githubusercontent.com/smart-data-models/dataModel.Parking/master/context.jsonld"
)
CORE_CONTEXT = "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context.jsonld"

_STATUS = {"occupied": "occupied", "vacant": "free"}
_DAYS = ("Mo", "Tu", "We", "Th", "Fr", "Sa", "Su")


@dataclass(frozen=True)
class KindTerms:
    """A bay kind in the data models' words."""

    label: str  # in a group's name
    group_category: tuple[str, ...]  # ParkingGroup.category
    site_category: tuple[str, ...]  # OnStreetParking.category
    required_permit: tuple[str, ...] = ()  # ParkingGroup.requiredPermit; () says nothing
    charge_type: tuple[str, ...] = ()  # ParkingGroup.chargeType; () says nothing


KINDS: Mapping[str, KindTerms] = {
    # payment (or a permit) needed while controlled; tariffs are the payment provider's
    "paid": KindTerms("pay bays", ("onStreet", "feeCharged"), ("feeCharged",)),
    "resident": KindTerms(
        "resident permit bays",
        ("onStreet", "onlyResidents", "onlyWithPermit"),
        ("forResidents", "onlyWithPermit"),
        ("residentPermit",),
    ),
    "disabled": KindTerms(
        "disabled badge holder bays",
        ("onStreet", "onlyDisabled"),
        ("forDisabled",),
        ("disabledPermit",),
    ),
    "loading": KindTerms(
        "loading bays", ("onStreet", "loadUnloadZone"), ("forLoadUnload",), ("noPermitNeeded",)
    ),
    # free, with a maximum stay while controlled
    "limited": KindTerms(
        "limited waiting bays", ("onStreet", "free"), ("free",), ("noPermitNeeded",), ("free",)
    ),
    "free": KindTerms("free bays", ("onStreet", "free"), ("free",), ("noPermitNeeded",), ("free",)),
}


def spot_id(bay_id: str) -> str:
    return f"urn:ngsi-ld:ParkingSpot:{bay_id}"


def group_id(zone_id: str, kind: str) -> str:
    return f"urn:ngsi-ld:ParkingGroup:{zone_id}:{kind}"


def site_id(zone_id: str) -> str:
    return f"urn:ngsi-ld:OnStreetParking:{zone_id}"


# -- hours -------------------------------------------------------------------------------------


def _days(days: Iterable[int]) -> str:
    """``{0, 1, 2, 3, 4, 5}`` -> ``Mo-Sa``; ``{0, 2}`` -> ``Mo,We``."""
    ordered = sorted(days)
    runs: list[list[int]] = []
    for day in ordered:
        if runs and runs[-1][-1] == day - 1:
            runs[-1].append(day)
        else:
            runs.append([day])
    parts = []
    for run in runs:
        if len(run) >= 3:
            parts.append(f"{_DAYS[run[0]]}-{_DAYS[run[-1]]}")
        else:
            parts.extend(_DAYS[d] for d in run)
    return ",".join(parts)


def _clock(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def _range(hours: HourRange) -> str:
    # an end before the start runs past midnight, as the site file says
    return f"{_days(hours.days)} {_clock(hours.start_min)}-{_clock(hours.end_min)}"


def opening_hours(hours: Hours, except_holidays: bool) -> str:
    """Controlled hours in OpenStreetMap's opening_hours syntax (for weekly ranges the same as
    schema.org's openingHours): ``Mo-Sa 08:30-18:30``, ``24/7``, ``off``; ``; PH off`` when the
    site's holidays are not controlled."""
    if hours == "none":
        return "off"
    text = "24/7" if hours == "any" else ", ".join(_range(r) for r in hours)
    return text + "; PH off" if except_holidays else text


def iso_duration(minutes: int) -> str:
    """Minutes as an ISO 8601 duration: ``PT4H``, ``PT90M`` -> ``PT1H30M``."""
    h, m = divmod(minutes, 60)
    return "PT" + (f"{h}H" if h else "") + (f"{m}M" if m or not h else "")


# -- entities ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SpotRow:
    """A bay as published: its entity, and the kind flat formats show beside it."""

    entity: dict[str, Any]
    kind: str
    zone_id: str
    status: str


@dataclass(frozen=True)
class SpotTemplate:
    """What a bay's entity says whatever its state: worked out once per site."""

    bay: Bay
    head: dict[str, Any]  # before status
    rest: dict[str, Any]  # after status, before the instants


def spot_template(bay: Bay) -> SpotTemplate:
    head = {"id": spot_id(bay.id), "type": "ParkingSpot", "name": bay.id}
    rest: dict[str, Any] = {
        "category": ["onStreet"],
        "refParkingSite": site_id(bay.zone_id),
        "refParkingGroup": group_id(bay.zone_id, bay.kind),
    }
    if bay.street:
        rest["address"] = {"streetAddress": bay.street}
    if bay.location is not None:
        rest["location"] = {"type": "Point", "coordinates": [bay.location.lon, bay.location.lat]}
    if bay.max_stay_minutes is not None:
        rest["maximumParkingDuration"] = iso_duration(bay.max_stay_minutes)
    hours = opening_hours(bay.controlled_hours, bay.except_holidays)
    permits = [p for p in KINDS[bay.kind].required_permit if p != "noPermitNeeded"]
    if permits and hours != "off":
        rest["permitActiveHours"] = dict.fromkeys(permits, hours)
    rest["controlledHours"] = hours
    return SpotTemplate(bay, head, rest)


def spot_templates(site: Site) -> tuple[SpotTemplate, ...]:
    return tuple(spot_template(bay) for bay in site.bays.values())


def parking_spot(
    template: SpotTemplate,
    state: Mapping[str, Any] | None,
    suspended: bool,
    origin: str,
    unseen_at: str,
) -> dict[str, Any]:
    """``state``: the read side's bay dict (``state``, ``since``) or None; ``origin``: when the
    bay came into being; ``unseen_at``: the instant a bay never observed is unknown as of."""
    since = None if state is None else state.get("since")
    status = "unknown" if state is None else _STATUS.get(str(state.get("state")), "unknown")
    return {
        **template.head,
        "status": "closed" if suspended else status,
        **template.rest,
        "observedAt": since or unseen_at,
        "dateModified": since or origin,
    }


@dataclass(frozen=True)
class OpenDataSet:
    spots: tuple[SpotRow, ...]
    groups: tuple[dict[str, Any], ...]
    zones: tuple[dict[str, Any], ...]
    occupancy: tuple[dict[str, Any], ...]  # zone-occupancy's places
    built_at: str


def _multipoint(bays: Iterable[Bay]) -> dict[str, Any] | None:
    points = [[b.location.lon, b.location.lat] for b in bays if b.location is not None]
    if not points:
        return None
    return {"type": "MultiPoint", "coordinates": points}


@dataclass
class _Tally:
    total: int = 0
    free: int = 0
    occupied: int = 0
    closed: int = 0
    modified: str = ""

    def add(self, row: SpotRow) -> None:
        self.total += 1
        if row.status == "free":
            self.free += 1
        elif row.status == "occupied":
            self.occupied += 1
        elif row.status == "closed":
            self.closed += 1
        self.modified = max(self.modified, row.entity["dateModified"])

    @property
    def unknown(self) -> int:
        return self.total - self.free - self.occupied - self.closed

    def rate(self) -> float | None:
        """Occupied over the bays whose state is known (not unknown, not suspended)."""
        known = self.free + self.occupied
        return round(self.occupied / known, 4) if known else None


def _counts(entity: dict[str, Any], tally: _Tally) -> None:
    entity["totalSpotNumber"] = tally.total
    entity["availableSpotNumber"] = tally.free
    entity["occupancyDetectionType"] = ["singleSpaceDetection"]


def _group(zone: Zone, kind: str, bays: list[Bay], tally: _Tally) -> dict[str, Any]:
    terms = KINDS[kind]
    group: dict[str, Any] = {
        "id": group_id(zone.id, kind),
        "type": "ParkingGroup",
        "name": f"{zone.name}: {terms.label}",
        "refParkingSite": site_id(zone.id),
        "category": list(terms.group_category),
    }
    if terms.required_permit:
        group["requiredPermit"] = list(terms.required_permit)
    if terms.charge_type:
        group["chargeType"] = list(terms.charge_type)
    hours = {opening_hours(b.controlled_hours, b.except_holidays) for b in bays}
    if len(hours) == 1:  # else each spot says its own
        (only,) = hours
        permits = [p for p in terms.required_permit if p != "noPermitNeeded"]
        if permits and only != "off":
            group["permitActiveHours"] = dict.fromkeys(permits, only)
        group["controlledHours"] = only
    _counts(group, tally)
    location = _multipoint(bays)
    if location is not None:
        group["location"] = location
    if tally.modified:
        group["dateModified"] = tally.modified
    return group


def build(
    site: Site,
    states: Mapping[str, Mapping[str, Any]],
    suspended: set[str],
    origins: Mapping[str, Instant],
    *,
    now: Instant,
    unseen_at: Instant,
    templates: tuple[SpotTemplate, ...] | None = None,
) -> OpenDataSet:
    """Every entity of the site as of ``now``. ``states``: the read side's bay dicts of the bays
    with a state; ``origins``: when each bay came into being; ``unseen_at``: the instant a bay
    never observed is unknown as of; ``templates``: ``spot_templates(site)``, if kept."""
    now_iso = format_instant(now)
    unseen_iso = format_instant(unseen_at)
    rows = []
    for template in templates if templates is not None else spot_templates(site):
        bay = template.bay
        origin = origins.get(bay.id)
        entity = parking_spot(
            template,
            states.get(bay.id),
            bay.id in suspended,
            unseen_iso if origin is None else format_instant(origin),
            unseen_iso,
        )
        rows.append(SpotRow(entity, bay.kind, bay.zone_id, entity["status"]))
    by_zone: dict[str, list[SpotRow]] = {}
    for row in rows:
        by_zone.setdefault(row.zone_id, []).append(row)
    groups: list[dict[str, Any]] = []
    zones: list[dict[str, Any]] = []
    places: list[dict[str, Any]] = []
    for zone in sorted(site.zones.values(), key=lambda z: z.id):
        zone_rows = by_zone.get(zone.id, [])
        bays = list(site.bays_of_zone(zone.id))
        kinds = sorted({b.kind for b in bays})
        zone_groups = []
        for kind in kinds:
            tally = _Tally()
            for row in zone_rows:
                if row.kind == kind:
                    tally.add(row)
            zone_groups.append(_group(zone, kind, [b for b in bays if b.kind == kind], tally))
        groups.extend(zone_groups)
        tally = _Tally()
        for row in zone_rows:
            tally.add(row)
        zones.append(_on_street(zone, bays, zone_groups, tally))
        places.append(_place(zone, tally, now_iso))
    return OpenDataSet(tuple(rows), tuple(groups), tuple(zones), tuple(places), now_iso)


def _on_street(
    zone: Zone, bays: list[Bay], groups: list[dict[str, Any]], tally: _Tally
) -> dict[str, Any]:
    categories = sorted({c for bay in bays for c in KINDS[bay.kind].site_category})
    entity: dict[str, Any] = {
        "id": site_id(zone.id),
        "type": "OnStreetParking",
        "name": zone.name,
        "category": categories,
    }
    location = _multipoint(bays)
    if location is not None:
        entity["location"] = location
    _counts(entity, tally)
    entity["occupiedSpotNumber"] = tally.occupied
    entity["outOfServiceSlotNumber"] = tally.closed
    rate = tally.rate()
    if rate is not None:  # NGSI-LD has no null: left out while no bay's state is known
        entity["occupancyRate"] = rate
    entity["refParkingGroup"] = [g["id"] for g in groups]
    entity["refParkingSpot"] = [spot_id(b.id) for b in bays]
    if tally.modified:
        entity["occupancyModified"] = tally.modified
        entity["dateModified"] = tally.modified
    return entity


def _place(zone: Zone, tally: _Tally, now_iso: str) -> dict[str, Any]:
    """The zone as an APDS-style place with its occupancy now."""
    return {
        "id": zone.id,
        "type": "place",
        "name": [{"language": "en", "string": zone.name or zone.id}],
        "occupancy": {
            "validAt": now_iso,
            "totalSpaces": tally.total,
            "occupiedSpaces": tally.occupied,
            "vacantSpaces": tally.free,
            "unknownSpaces": tally.unknown,
            "closedSpaces": tally.closed,
            "occupancyRate": tally.rate(),
        },
    }


# -- flat formats ------------------------------------------------------------------------------

CSV_COLUMNS = (
    "id",
    "name",
    "status",
    "kind",
    "zone",
    "street",
    "latitude",
    "longitude",
    "maximumParkingDuration",
    "controlledHours",
    "observedAt",
    "dateModified",
    "refParkingSite",
    "refParkingGroup",
)


def csv_row(row: SpotRow) -> list[str]:
    entity = row.entity
    location = entity.get("location")
    lon, lat = location["coordinates"] if location else ("", "")
    return [
        entity["id"],
        entity["name"],
        entity["status"],
        row.kind,
        row.zone_id,
        entity.get("address", {}).get("streetAddress", ""),
        str(lat),
        str(lon),
        entity.get("maximumParkingDuration", ""),
        entity["controlledHours"],
        entity["observedAt"],
        entity["dateModified"],
        entity["refParkingSite"],
        entity["refParkingGroup"],
    ]


def geojson_feature(row: SpotRow) -> dict[str, Any]:
    entity = row.entity
    properties = {k: v for k, v in entity.items() if k not in ("id", "location")}
    properties["kind"] = row.kind
    return {
        "type": "Feature",
        "id": entity["id"],
        "geometry": entity.get("location"),
        "properties": properties,
    }
