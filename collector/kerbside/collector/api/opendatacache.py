"""The open data, built once and shared by every request until it is due again.

A build reads every bay's state and turns the site into entities (``ngsi.build``); public clients
poll, often many at once, and a build per request made four clients of 10,000 bays take a whole
core. So one build serves all requests for ``refresh_s`` (bay states reach the collector seconds
after the fact anyway), a site reload is served at once, and each response body is serialised
once per build (with its ETag) however often it is asked for. Only the last build is kept.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field

from kerbside.collector.api.ngsi import OpenDataSet, SpotTemplate, build, spot_templates
from kerbside.collector.queries import Queries
from kerbside.core.site import Site

REFRESH_S = 5.0


@dataclass(frozen=True)
class Rendered:
    body: bytes
    etag: str


@dataclass
class Published:
    """One build and the responses rendered from it."""

    data: OpenDataSet
    site: Site
    built: float  # on the cache's clock
    max_pages: int
    _pages: dict[Hashable, Rendered] = field(default_factory=dict)

    def render(self, key: Hashable, make: Callable[[], bytes]) -> Rendered:
        hit = self._pages.get(key)
        if hit is None:
            body = make()
            hit = Rendered(body, '"' + hashlib.blake2b(body, digest_size=12).hexdigest() + '"')
            if len(self._pages) >= self.max_pages:
                self._pages.clear()  # any number of limit/cursor pairs: bounded memory
            self._pages[key] = hit
        return hit


class OpenDataCache:
    def __init__(
        self,
        refresh_s: float = REFRESH_S,
        unseen_round_ms: int = 15_000,
        clock: Callable[[], float] = time.monotonic,
        max_pages: int = 256,
    ) -> None:
        self.refresh_s = refresh_s
        self.unseen_round_ms = unseen_round_ms  # a never-observed bay is unknown as of now, rounded
        self._clock = clock
        self._max_pages = max_pages
        self._published: Published | None = None
        self._templates: tuple[Site, tuple[SpotTemplate, ...]] | None = None
        self.builds = 0

    def current(self, queries: Queries) -> Published:
        site = queries.site
        now = self._clock()
        published = self._published
        if (
            published is None
            or published.site is not site
            or now - published.built >= self.refresh_s
        ):
            published = Published(self._build(queries, site), site, now, self._max_pages)
            self._published = published
        return published

    def _build(self, queries: Queries, site: Site) -> OpenDataSet:
        self.builds += 1
        if self._templates is None or self._templates[0] is not site:
            self._templates = (site, spot_templates(site))
        now = queries.now()
        bays, _ = queries.bays(limit=max(len(site.bays), 1))
        states = {b["bay_id"]: b for b in bays if b.get("since") is not None}
        return build(
            site,
            states,
            queries.suspended_bays(now),
            queries.bay_origins(),
            now=now,
            unseen_at=now - now % self.unseen_round_ms,
            templates=self._templates[1],
        )
