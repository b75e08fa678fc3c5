"""The few facts about the site the API checks bodies against: which zones and bays exist."""

from __future__ import annotations

from dataclasses import dataclass

from kerbside.core.site import Site


@dataclass(frozen=True)
class SiteView:
    zones: dict[str, str | None]  # zone id -> name
    bay_zone: dict[str, str]  # bay id -> zone id


def site_view(site: Site) -> SiteView:
    return SiteView(
        zones={zone.id: zone.name for zone in site.zones.values()},
        bay_zone={bay.id: bay.zone_id for bay in site.bays.values()},
    )


class SiteCache:
    """Rebuilds the view only when the site object changes (a SIGHUP reload)."""

    def __init__(self) -> None:
        self._site: Site | None = None
        self._view = SiteView({}, {})

    def get(self, site: Site) -> SiteView:
        if site is not self._site:
            self._view = site_view(site)
            self._site = site
        return self._view
