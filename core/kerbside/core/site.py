"""The site file (SPEC section 6): zones, bays, their controlled hours and rule parameters.

Loading checks everything and reports every problem with the path of the bad entry
(``zones[2].controlled_hours[0].end: ...``), so ``kerbside site check`` can list them all.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml

from kerbside.core.config import ConfigError
from kerbside.core.ids import ID_RE, SENSOR_ID_RE

DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
BAY_KINDS = ("paid", "resident", "limited", "loading", "disabled", "free")
# Bays of these kinds need a right (payment or permit) while controlled.
KINDS_NEEDING_RIGHT = frozenset({"paid", "resident"})
_HHMM_RE = re.compile(r"^(\d{2}):(\d{2})$")


class SiteError(ConfigError):
    """A site file that cannot be used. ``errors`` lists every problem with its path."""

    def __init__(self, source: str, errors: list[str]) -> None:
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        super().__init__(f"{source}: {errors[0]}{more}")
        self.errors = errors


@dataclass(frozen=True, slots=True)
class HourRange:
    """Controlled on ``days`` (0 = Monday) from ``start_min`` to ``end_min`` minutes of the local
    day; ``end_min <= start_min`` crosses midnight and belongs to the day it starts."""

    days: frozenset[int]
    start_min: int
    end_min: int


Hours = Literal["any", "none"] | tuple[HourRange, ...]


@dataclass(frozen=True, slots=True)
class Location:
    lat: float
    lon: float


@dataclass(frozen=True, slots=True)
class Zone:
    id: str
    name: str
    except_holidays: bool
    controlled_hours: Hours
    grace_minutes: int | None = None
    observation_minutes: int | None = None


@dataclass(frozen=True, slots=True)
class Bay:
    """A bay with its effective rule parameters already resolved (bay, else zone, else site)."""

    id: str
    zone_id: str
    street: str | None
    kind: str
    max_stay_minutes: int | None
    controlled_hours: Hours
    grace_minutes: int
    observation_minutes: int
    except_holidays: bool
    location: Location | None = None
    sensor: str | None = None
    gateway: str | None = None

    @property
    def needs_right(self) -> bool:
        return self.kind in KINDS_NEEDING_RIGHT


@dataclass(frozen=True)
class Site:
    name: str
    timezone: str
    holidays: frozenset[date]
    zones: dict[str, Zone]
    bays: dict[str, Bay]
    bay_of_sensor: dict[str, Bay] = field(default_factory=dict)
    _by_zone: dict[str, tuple[Bay, ...]] = field(default_factory=dict, repr=False)
    _by_gateway: dict[str, tuple[Bay, ...]] = field(default_factory=dict, repr=False)

    def bays_of_zone(self, zone_id: str) -> tuple[Bay, ...]:
        return self._by_zone.get(zone_id, ())

    def bays_of_gateway(self, gateway_id: str) -> tuple[Bay, ...]:
        return self._by_gateway.get(gateway_id, ())

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


class _Checker:
    """Collects errors with paths while reading an untyped mapping."""

    def __init__(self) -> None:
        self.errors: list[str] = []

    def error(self, path: str, message: str) -> None:
        self.errors.append(f"{path}: {message}")

    def mapping(self, value: object, path: str, allowed: set[str]) -> Mapping[str, Any] | None:
        if not isinstance(value, Mapping):
            self.error(path, "expected a mapping")
            return None
        for key in value:
            if key not in allowed:
                self.error(f"{path}.{key}" if path else str(key), "unknown key")
        return value

    def ident(self, value: object, path: str, pattern: re.Pattern[str] = ID_RE) -> str | None:
        if not isinstance(value, str) or pattern.match(value) is None:
            shape = pattern.pattern.strip("^$")
            self.error(path, f"expected an id matching {shape}, got {value!r}")
            return None
        return value

    def text(self, value: object, path: str) -> str | None:
        if not isinstance(value, str) or not value.strip():
            self.error(path, "expected a non-empty string")
            return None
        return value

    def count(self, value: object, path: str, minimum: int) -> int | None:
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            self.error(path, f"expected a whole number >= {minimum}, got {value!r}")
            return None
        return value

    def flag(self, value: object, path: str) -> bool:
        if not isinstance(value, bool):
            self.error(path, f"expected true or false, got {value!r}")
            return False
        return value

    def clock(self, value: object, path: str, *, allow_24: bool) -> int | None:
        match = _HHMM_RE.match(value) if isinstance(value, str) else None
        if match is None:
            self.error(path, f'expected "HH:MM", got {value!r}')
            return None
        hours, minutes = int(match.group(1)), int(match.group(2))
        if allow_24 and (hours, minutes) == (24, 0):
            return 1440
        if hours > 23 or minutes > 59:
            limit = '"00:00".."24:00"' if allow_24 else '"00:00".."23:59"'
            self.error(path, f"expected a time in {limit}, got {value!r}")
            return None
        return hours * 60 + minutes

    def hours(self, value: object, path: str) -> Hours | None:
        if value in ("any", "none"):
            return "any" if value == "any" else "none"
        if not isinstance(value, list) or not value:
            self.error(path, "expected any, none, or a non-empty list of {days, start, end}")
            return None
        ranges: list[HourRange] = []
        for i, item in enumerate(value):
            here = f"{path}[{i}]"
            entry = self.mapping(item, here, {"days", "start", "end"})
            if entry is None:
                continue
            for key in ("days", "start", "end"):
                if key not in entry:
                    self.error(f"{here}.{key}", "required")
            days = self._days(entry.get("days"), f"{here}.days") if "days" in entry else None
            start = (
                self.clock(entry["start"], f"{here}.start", allow_24=False)
                if "start" in entry
                else None
            )
            end = self.clock(entry["end"], f"{here}.end", allow_24=True) if "end" in entry else None
            if start is not None and end is not None and start == end % 1440 and end != 1440:
                self.error(f"{here}.end", 'equals start; write "00:00"-"24:00" for a whole day')
                continue
            if days is not None and start is not None and end is not None:
                ranges.append(HourRange(days, start, end))
        return tuple(ranges) if len(ranges) == len(value) else None

    def _days(self, value: object, path: str) -> frozenset[int] | None:
        if not isinstance(value, list) or not value:
            self.error(path, "expected a non-empty list of mon..sun")
            return None
        days: set[int] = set()
        bad = False
        for i, name in enumerate(value):
            if not isinstance(name, str) or name not in DAY_NAMES:
                self.error(f"{path}[{i}]", f"expected one of {', '.join(DAY_NAMES)}, got {name!r}")
                bad = True
            else:
                days.add(DAY_NAMES.index(name))
        return None if bad else frozenset(days)


def parse_site(data: object, source: str = "site") -> Site:
    """Validate an already-loaded site mapping; raise SiteError listing every problem."""
    ck = _Checker()
    top = ck.mapping(data, "", {"site", "timezone", "defaults", "holidays", "zones", "bays"})
    if top is None:
        raise SiteError(source, ck.errors or ["(top level): expected a mapping"])
    name = ck.text(top.get("site"), "site") or ""
    timezone = "UTC"
    tz_value = top.get("timezone")
    if not isinstance(tz_value, str):
        ck.error("timezone", "required: an IANA time zone such as Europe/London")
    else:
        try:
            ZoneInfo(tz_value)
            timezone = tz_value
        except (ZoneInfoNotFoundError, ValueError):
            ck.error("timezone", f"unknown time zone {tz_value!r}")

    grace_default, obs_default = 10, 5
    if "defaults" in top:
        defaults = ck.mapping(top["defaults"], "defaults", {"grace_minutes", "observation_minutes"})
        if defaults is not None:
            if "grace_minutes" in defaults:
                grace = ck.count(defaults["grace_minutes"], "defaults.grace_minutes", 0)
                grace_default = grace or 0
            if "observation_minutes" in defaults:
                obs_default = (
                    ck.count(defaults["observation_minutes"], "defaults.observation_minutes", 0)
                    or 0
                )

    holidays: set[date] = set()
    raw_holidays = top.get("holidays", [])
    if not isinstance(raw_holidays, list):
        ck.error("holidays", 'expected a list of dates like "2027-04-02"')
    else:
        for i, item in enumerate(raw_holidays):
            if isinstance(item, date) and not isinstance(item, datetime):
                holidays.add(item)
                continue
            try:
                holidays.add(date.fromisoformat(str(item)))
            except ValueError:
                ck.error(f"holidays[{i}]", f"expected a date like 2027-04-02, got {item!r}")

    zones = _parse_zones(ck, top.get("zones"))
    raw_zones = top.get("zones")
    named_zones = {
        z.get("id")
        for z in (raw_zones if isinstance(raw_zones, list) else [])
        if isinstance(z, Mapping) and isinstance(z.get("id"), str)
    }
    bays = _parse_bays(
        ck,
        top.get("bays"),
        zones,
        named_zones,
        grace_default=grace_default,
        obs_default=obs_default,
    )
    if ck.errors:
        raise SiteError(source, ck.errors)
    by_zone: dict[str, list[Bay]] = {}
    by_gateway: dict[str, list[Bay]] = {}
    for bay in bays.values():
        by_zone.setdefault(bay.zone_id, []).append(bay)
        if bay.gateway is not None:
            by_gateway.setdefault(bay.gateway, []).append(bay)
    return Site(
        name=name,
        timezone=timezone,
        holidays=frozenset(holidays),
        zones=zones,
        bays=bays,
        bay_of_sensor={b.sensor: b for b in bays.values() if b.sensor is not None},
        _by_zone={k: tuple(v) for k, v in by_zone.items()},
        _by_gateway={k: tuple(v) for k, v in by_gateway.items()},
    )


def _minutes(ck: _Checker, entry: Mapping[str, Any], key: str, path: str) -> int | None:
    return ck.count(entry[key], f"{path}.{key}", 0) if key in entry else None


def _parse_zones(ck: _Checker, raw: object) -> dict[str, Zone]:
    zones: dict[str, Zone] = {}
    if not isinstance(raw, list) or not raw:
        ck.error("zones", "required: a non-empty list of zones")
        return zones
    allowed = {
        "id",
        "name",
        "except_holidays",
        "controlled_hours",
        "grace_minutes",
        "observation_minutes",
    }
    for i, item in enumerate(raw):
        path = f"zones[{i}]"
        entry = ck.mapping(item, path, allowed)
        if entry is None:
            continue
        zone_id = ck.ident(entry.get("id"), f"{path}.id")
        if zone_id is not None and zone_id in zones:
            ck.error(f"{path}.id", f"zone {zone_id} is defined twice")
            zone_id = None
        if "controlled_hours" not in entry:
            ck.error(f"{path}.controlled_hours", "required")
            hours = None
        else:
            hours = ck.hours(entry["controlled_hours"], f"{path}.controlled_hours")
        name = entry.get("name", zone_id)
        if not isinstance(name, str):
            ck.error(f"{path}.name", "expected a string")
        except_holidays = ck.flag(entry.get("except_holidays", False), f"{path}.except_holidays")
        grace = _minutes(ck, entry, "grace_minutes", path)
        observation = _minutes(ck, entry, "observation_minutes", path)
        if zone_id is not None and hours is not None and isinstance(name, str):
            zones[zone_id] = Zone(zone_id, name, except_holidays, hours, grace, observation)
    return zones


def _parse_bays(
    ck: _Checker,
    raw: object,
    zones: dict[str, Zone],
    named_zones: set[object],
    *,
    grace_default: int,
    obs_default: int,
) -> dict[str, Bay]:
    bays: dict[str, Bay] = {}
    sensors: dict[str, str] = {}
    seen_ids: set[str] = set()
    if not isinstance(raw, list):
        ck.error("bays", "required: a list of bays")
        return bays
    allowed = {
        "id",
        "zone",
        "street",
        "kind",
        "max_stay_minutes",
        "controlled_hours",
        "location",
        "sensor",
        "gateway",
        "grace_minutes",
        "observation_minutes",
    }
    for i, item in enumerate(raw):
        path = f"bays[{i}]"
        entry = ck.mapping(item, path, allowed)
        if entry is None:
            continue
        ok = True
        bay_id = ck.ident(entry.get("id"), f"{path}.id")
        if bay_id is not None and bay_id in seen_ids:
            ck.error(f"{path}.id", f"bay {bay_id} is defined twice")
            bay_id = None
        elif bay_id is not None:
            seen_ids.add(bay_id)
        zone = None
        zone_id = entry.get("zone")
        if not isinstance(zone_id, str) or zone_id not in zones:
            # A zone that failed its own checks was reported there; say so only for new names.
            if zone_id not in named_zones:
                ck.error(f"{path}.zone", f"unknown zone {zone_id!r}")
            ok = False
        else:
            zone = zones[zone_id]
        kind = entry.get("kind")
        if kind not in BAY_KINDS:
            ck.error(f"{path}.kind", f"expected one of {', '.join(BAY_KINDS)}, got {kind!r}")
            ok = False
        max_stay = None
        if entry.get("max_stay_minutes") is not None:
            max_stay = ck.count(entry["max_stay_minutes"], f"{path}.max_stay_minutes", 1)
            ok = ok and max_stay is not None
        street = entry.get("street")
        if street is not None and not isinstance(street, str):
            ck.error(f"{path}.street", "expected a string")
            ok = False
        hours: Hours | None = None
        if "controlled_hours" in entry:
            hours = ck.hours(entry["controlled_hours"], f"{path}.controlled_hours")
            ok = ok and hours is not None
        location = _location(ck, entry.get("location"), f"{path}.location")
        ok = ok and (location is not None or entry.get("location") is None)
        sensor = None
        if entry.get("sensor") is not None:
            sensor = ck.ident(entry["sensor"], f"{path}.sensor", SENSOR_ID_RE)
            if sensor is not None and sensor in sensors:
                ck.error(f"{path}.sensor", f"sensor {sensor} is already on bay {sensors[sensor]}")
                sensor = None
            ok = ok and sensor is not None
        gateway = None
        if entry.get("gateway") is not None:
            gateway = ck.ident(entry["gateway"], f"{path}.gateway")
            ok = ok and gateway is not None
        grace = _minutes(ck, entry, "grace_minutes", path)
        observation = _minutes(ck, entry, "observation_minutes", path)
        if not ok or bay_id is None or zone is None:
            continue
        if sensor is not None:
            sensors[sensor] = bay_id
        bays[bay_id] = Bay(
            id=bay_id,
            zone_id=zone.id,
            street=street,
            kind=str(kind),
            max_stay_minutes=max_stay,
            controlled_hours=hours if hours is not None else zone.controlled_hours,
            grace_minutes=_first(grace, zone.grace_minutes, grace_default),
            observation_minutes=_first(observation, zone.observation_minutes, obs_default),
            except_holidays=zone.except_holidays,
            location=location,
            sensor=sensor,
            gateway=gateway,
        )
    return bays


def _first(*values: int | None) -> int:
    for value in values:
        if value is not None:
            return value
    raise AssertionError("a default is always given")


def _location(ck: _Checker, value: object, path: str) -> Location | None:
    if value is None:
        return None
    entry = ck.mapping(value, path, {"lat", "lon"})
    if entry is None:
        return None
    out: list[float] = []
    for key, limit in (("lat", 90.0), ("lon", 180.0)):
        number = entry.get(key)
        if isinstance(number, bool) or not isinstance(number, int | float) or abs(number) > limit:
            ck.error(f"{path}.{key}", f"expected a number within +-{limit:g}, got {number!r}")
        else:
            out.append(float(number))
    return Location(out[0], out[1]) if len(out) == 2 else None


def load_site(path: str | Path) -> Site:
    """Read and validate a site file; raise SiteError (a ConfigError) listing every problem."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise SiteError(str(file), [f"(file): cannot read: {exc.strerror or exc}"]) from exc
    except UnicodeDecodeError as exc:
        raise SiteError(str(file), ["(file): not UTF-8 text"]) from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        first = str(exc).splitlines()[0] if str(exc) else "syntax error"
        raise SiteError(str(file), [f"(file): not valid YAML: {first}"]) from exc
    return parse_site(data, str(file))
