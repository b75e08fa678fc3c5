"""The site file (docs/site-file.md): zones, bays, their controlled hours and rule parameters.

Loading checks everything and reports every problem with the path of the bad entry
(``zones[2].controlled_hours[0].end: ...``) and, read from a file, its line, so ``kerbside site
check`` can list them all. One mistake never hides another: a bay whose hours are wrong still
has its sensor, gateway and location checked. Besides errors it finds what is allowed but
probably wrong (warnings): controlled hours that overlap, coordinates that look swapped, a
``limited`` bay without ``max_stay_minutes``, a bay with a sensor but no gateway.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from kerbside.core.checks import ConfigFileError, Loc, Problem, YamlFile, did_you_mean, read_yaml
from kerbside.core.ids import ID_RE, SENSOR_ID_RE

DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
BAY_KINDS = ("paid", "resident", "limited", "loading", "disabled", "free")
# Bays of these kinds need a right (payment or permit) while controlled.
KINDS_NEEDING_RIGHT = frozenset({"paid", "resident"})
_HHMM_RE = re.compile(r"^(\d{2}):(\d{2})$")
# Upper bounds of the rules' minutes, beyond anything a council sets (grace is minutes, an
# observation at most an hour or so, the longest limited stays a few days); without them a huge
# number passes and overflows the store's 64-bit integers once turned into milliseconds.
DAY = 24 * 60
WEEK = 7 * DAY
_MINUTES_SAID = {DAY: "a day", WEEK: "a week"}


class SiteError(ConfigFileError):
    """A site file that cannot be used. ``errors`` lists every error as ``path: message``;
    ``problems`` has them with their lines, and the warnings."""

    def __init__(self, source: str, problems: Sequence[Problem]) -> None:
        super().__init__(source, problems)
        self.errors = [
            f"{p.key}: {p.message}" if p.key else p.message for p in problems if not p.warning
        ]


_PATH_PART = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def _loc(path: str) -> Loc:
    """``bays[3].location.lat`` -> ``("bays", 3, "location", "lat")``."""
    return tuple(int(index) if index else name for name, index in _PATH_PART.findall(path))


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
    """Collects errors and warnings with paths (and lines, from ``doc``) while reading."""

    def __init__(self, doc: YamlFile | None = None) -> None:
        self.doc = doc
        self.problems: list[Problem] = []
        self.locations: list[tuple[str, Location]] = []  # every valid one, for the warnings

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if not p.warning]

    def error(self, path: str, message: str, *, warning: bool = False) -> None:
        line = None if self.doc is None else self.doc.line_of(_loc(path))
        self.problems.append(Problem(path, message, line, warning))

    def warn(self, path: str, message: str) -> None:
        self.error(path, message, warning=True)

    def mapping(self, value: object, path: str, allowed: set[str]) -> Mapping[str, Any] | None:
        if not isinstance(value, Mapping):
            self.error(path or "(top level)", "expected a mapping")
            return None
        for key in value:
            if key not in allowed:
                hint = did_you_mean(key, allowed)
                self.error(
                    f"{path}.{key}" if path else str(key),
                    f"unknown key{hint}; allowed here: {', '.join(sorted(allowed))}",
                )
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

    def minutes(self, value: object, path: str, minimum: int, maximum: int) -> int | None:
        if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= maximum:
            self.error(
                path,
                f"expected a whole number of minutes from {minimum} to {maximum} "
                f"({_MINUTES_SAID[maximum]}), got {value!r}",
            )
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
        if len(ranges) != len(value):
            return None
        self._overlaps(ranges, path)
        return tuple(ranges)

    def _overlaps(self, ranges: list[HourRange], path: str) -> None:
        """Warn about ranges that overlap (allowed: they make one period, but rarely meant)."""
        week = 7 * 1440
        spans: list[list[tuple[int, int]]] = []
        for r in ranges:
            length = (r.end_min - r.start_min) % 1440 or 1440
            spans.append(
                [(d * 1440 + r.start_min, d * 1440 + r.start_min + length) for d in r.days]
            )
        for j in range(len(ranges)):
            for i in range(j):
                shared = _shared_minutes(spans[i], spans[j], week)
                if shared is not None:
                    day, start = divmod(shared % week, 1440)
                    self.warn(
                        f"{path}[{j}]",
                        f"overlaps {path}[{i}] on {DAY_NAMES[day]} from "
                        f"{start // 60:02d}:{start % 60:02d}; the two make one controlled "
                        "period (write one range if that is what you mean)",
                    )

    def _days(self, value: object, path: str) -> frozenset[int] | None:
        if not isinstance(value, list) or not value:
            self.error(path, "expected a non-empty list of mon..sun")
            return None
        days: set[int] = set()
        bad = False
        for i, name in enumerate(value):
            if not isinstance(name, str) or name not in DAY_NAMES:
                hint = did_you_mean(str(name)[:3].lower(), DAY_NAMES)
                self.error(
                    f"{path}[{i}]", f"expected one of {', '.join(DAY_NAMES)}, got {name!r}{hint}"
                )
                bad = True
            else:
                days.add(DAY_NAMES.index(name))
        return None if bad else frozenset(days)


def _shared_minutes(a: list[tuple[int, int]], b: list[tuple[int, int]], week: int) -> int | None:
    """The first minute of the week two sets of spans share (spans may run past the week)."""
    for a_start, a_end in a:
        for b_start, b_end in b:
            for shift in (-week, 0, week):
                start, end = max(a_start, b_start + shift), min(a_end, b_end + shift)
                if start < end:
                    return start
    return None


def parse_site(data: object, source: str = "site", doc: YamlFile | None = None) -> Site:
    """Validate an already-loaded site mapping; raise SiteError listing every problem.

    Warnings alone do not raise; ``check_site`` returns them."""
    site, problems = check_site(data, source, doc)
    if site is None:
        raise SiteError(source, problems)
    return site


def check_site(
    data: object, source: str = "site", doc: YamlFile | None = None
) -> tuple[Site | None, list[Problem]]:
    """Every error and warning of a site mapping: (the site, or None on any error; problems)."""
    ck = _Checker(doc)
    top = ck.mapping(data, "", {"site", "timezone", "defaults", "holidays", "zones", "bays"})
    if top is None:
        return None, ck.problems
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
            hint = did_you_mean(tz_value, available_timezones())
            ck.error("timezone", f"unknown time zone {tz_value!r}{hint}")

    grace_default, obs_default = 10, 5
    if "defaults" in top:
        defaults = ck.mapping(top["defaults"], "defaults", {"grace_minutes", "observation_minutes"})
        if defaults is not None:
            if "grace_minutes" in defaults:
                grace = ck.minutes(defaults["grace_minutes"], "defaults.grace_minutes", 0, DAY)
                grace_default = grace or 0
            if "observation_minutes" in defaults:
                obs_default = (
                    ck.minutes(
                        defaults["observation_minutes"], "defaults.observation_minutes", 0, DAY
                    )
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
    _coordinate_warnings(ck, timezone if timezone == tz_value else None)
    if ck.errors:
        return None, ck.problems
    by_zone: dict[str, list[Bay]] = {}
    by_gateway: dict[str, list[Bay]] = {}
    for bay in bays.values():
        by_zone.setdefault(bay.zone_id, []).append(bay)
        if bay.gateway is not None:
            by_gateway.setdefault(bay.gateway, []).append(bay)
    site = Site(
        name=name,
        timezone=timezone,
        holidays=frozenset(holidays),
        zones=zones,
        bays=bays,
        bay_of_sensor={b.sensor: b for b in bays.values() if b.sensor is not None},
        _by_zone={k: tuple(v) for k, v in by_zone.items()},
        _by_gateway={k: tuple(v) for k, v in by_gateway.items()},
    )
    return site, ck.problems


def _minutes(ck: _Checker, entry: Mapping[str, Any], key: str, path: str) -> int | None:
    return ck.minutes(entry[key], f"{path}.{key}", 0, DAY) if key in entry else None


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
                names = [z for z in named_zones if isinstance(z, str)]
                hint = did_you_mean(zone_id, names)
                ck.error(f"{path}.zone", f"unknown zone {zone_id!r}{hint}")
            ok = False
        else:
            zone = zones[zone_id]
        kind = entry.get("kind")
        if kind not in BAY_KINDS:
            hint = did_you_mean(kind, BAY_KINDS)
            ck.error(f"{path}.kind", f"expected one of {', '.join(BAY_KINDS)}, got {kind!r}{hint}")
            ok = False
        max_stay = None
        if entry.get("max_stay_minutes") is not None:
            max_stay = ck.minutes(entry["max_stay_minutes"], f"{path}.max_stay_minutes", 1, WEEK)
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
            elif sensor is not None:  # known even if the bay has other errors: one never hides
                sensors[sensor] = bay_id or path  # another
            ok = ok and sensor is not None
        gateway = None
        if entry.get("gateway") is not None:
            gateway = ck.ident(entry["gateway"], f"{path}.gateway")
            ok = ok and gateway is not None
        elif sensor is not None:
            ck.warn(
                f"{path}.sensor",
                f"bay has sensor {sensor} but no gateway: no gateway's events for it are "
                "accepted, and `kerbside site edge-config` leaves it out",
            )
        if kind == "limited" and entry.get("max_stay_minutes") is None:
            ck.warn(
                f"{path}.kind",
                "limited bay without max_stay_minutes: no overstay alert is ever raised for it",
            )
        grace = _minutes(ck, entry, "grace_minutes", path)
        observation = _minutes(ck, entry, "observation_minutes", path)
        if not ok or bay_id is None or zone is None:
            continue
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


def _coordinate_warnings(ck: _Checker, timezone: str | None) -> None:
    """Locations that look like ``{lat, lon}`` written the wrong way round: far from the other
    bays (or from the time zone's longitude) where the swapped pair would be near them."""
    located = ck.locations
    if not located:
        return
    lats = sorted(loc.lat for _, loc in located)
    lons = sorted(loc.lon for _, loc in located)
    centre = (lats[len(lats) // 2], lons[len(lons) // 2])
    offset = None if timezone is None else ZoneInfo(timezone).utcoffset(datetime(2026, 1, 15))
    for path, loc in located:
        if abs(loc.lon) > 90:
            continue  # swapped it would be no latitude at all
        here, swapped = (loc.lat, loc.lon), (loc.lon, loc.lat)
        by_bays = len(located) > 2 and _far(here, centre) and not _far(swapped, centre)
        # A zone's standard offset puts its longitude near 15 degrees an hour.
        zone_lon = None if offset is None else 15.0 * offset.total_seconds() / 3600
        by_zone = zone_lon is not None and abs(loc.lon - zone_lon) > 40 >= abs(loc.lat - zone_lon)
        if by_bays or by_zone:
            near = "the other bays" if by_bays else f"the time zone {timezone}"
            ck.warn(
                path,
                f"{{lat: {loc.lat:g}, lon: {loc.lon:g}}} looks swapped (far from {near}); "
                f"did you mean {{lat: {loc.lon:g}, lon: {loc.lat:g}}}?",
            )


def _far(a: tuple[float, float], b: tuple[float, float]) -> bool:
    """Further apart than a city (about 1 degree, ~100 km)."""
    return abs(a[0] - b[0]) > 1.0 or abs(a[1] - b[1]) > 1.0


def _location(ck: _Checker, value: object, path: str) -> Location | None:
    if value is None:
        return None
    entry = ck.mapping(value, path, {"lat", "lon"})
    if entry is None:
        return None
    out: list[float] = []
    for key, limit in (("lat", 90.0), ("lon", 180.0)):
        number = entry.get(key)
        if (
            isinstance(number, bool)
            or not isinstance(number, int | float)
            or not abs(number) <= limit  # NaN too
        ):
            ck.error(f"{path}.{key}", f"expected a number within +-{limit:g}, got {number!r}")
        else:
            out.append(float(number))
    if len(out) != 2:
        return None
    ck.locations.append((path, Location(out[0], out[1])))
    return ck.locations[-1][1]


def check_site_file(path: str | Path) -> tuple[Site | None, list[Problem]]:
    """Read a site file: (the site, or None on any error; every error and warning, with lines)."""
    try:
        doc = read_yaml(path)
    except ConfigFileError as exc:
        return None, list(exc.problems)
    return check_site(doc.data, str(path), doc)


def load_site(path: str | Path) -> Site:
    """Read and validate a site file; raise SiteError (a ConfigError) listing every problem."""
    site, problems = check_site_file(path)
    if site is None:
        raise SiteError(str(path), problems)
    return site
