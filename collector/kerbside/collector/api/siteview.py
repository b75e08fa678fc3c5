"""The few facts about the site the API needs: which zones and bays exist (bodies are checked
against them) and each bay's kind and maximum stay (an officer's alert card shows them)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class BayRules:
    kind: str  # paid, resident, limited, loading, disabled, free
    max_stay_minutes: int | None


@dataclass(frozen=True)
class SiteView:
    zones: dict[str, str | None]  # zone id -> name
    bay_zone: dict[str, str]  # bay id -> zone id
    bay_rules: dict[str, BayRules] = field(default_factory=dict)


def _items(container: Any) -> Iterable[Any]:
    if isinstance(container, dict):
        return container.values()
    return container or ()


def _get(obj: Any, *names: str) -> Any:
    for name in names:
        value = obj.get(name) if isinstance(obj, dict) else getattr(obj, name, None)
        if value is not None:
            return value
    return None


def site_view(site: Any) -> SiteView:
    """Read zone and bay ids from the rules' site model (attributes or dict keys)."""
    zones: dict[str, str | None] = {}
    for zone in _items(_get(site, "zones")):
        zone_id = _get(zone, "id", "zone_id")
        if zone_id is not None:
            zones[str(zone_id)] = _get(zone, "name")
    bay_zone: dict[str, str] = {}
    bay_rules: dict[str, BayRules] = {}
    for bay in _items(_get(site, "bays")):
        bay_id = _get(bay, "id", "bay_id")
        zone = _get(bay, "zone", "zone_id")
        if bay_id is not None:
            bay_zone[str(bay_id)] = str(zone) if zone is not None else ""
            kind, max_stay = _get(bay, "kind"), _get(bay, "max_stay_minutes")
            if kind is not None:
                bay_rules[str(bay_id)] = BayRules(str(kind), max_stay)
    return SiteView(zones=zones, bay_zone=bay_zone, bay_rules=bay_rules)


class SiteCache:
    """Rebuilds the view only when the service's site object changes (a SIGHUP reload)."""

    def __init__(self) -> None:
        self._site: Any = None
        self._view = SiteView({}, {})

    def get(self, site: Any) -> SiteView:
        if site is not self._site:
            self._view = site_view(site)
            self._site = site
        return self._view
