"""A short-lived cache of serialised list pages (the bay lists dashboards and phones poll).

Bay states reach the collector seconds after the fact (detectors confirm after ~10 s), so a
page at most ``ttl_s`` old changes nothing for a reader, and polling clients share one build.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable


class PageCache:
    def __init__(self, ttl_s: float = 1.0, max_entries: int = 512) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._pages: dict[Hashable, tuple[float, bytes]] = {}

    def get(self, key: Hashable, build: Callable[[], bytes]) -> bytes:
        now = time.monotonic()
        hit = self._pages.get(key)
        if hit is not None and now - hit[0] < self.ttl_s:
            return hit[1]
        body = build()
        if len(self._pages) >= self.max_entries:
            self._pages.clear()
        self._pages[key] = (now, body)
        return body
