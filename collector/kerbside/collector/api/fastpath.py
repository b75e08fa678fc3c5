"""The hot read, ``GET /api/v1/bays``, answered from the page cache without FastAPI's machinery.

Dashboards and phones poll the bay list; per request FastAPI resolves dependencies, validates
query parameters through pydantic and builds a Response, which cost several times what serving
a cached page does (bench/bench_api.py). This ASGI middleware answers only requests it can
answer exactly as the route would: method GET, path ``/api/v1/bays``, no body, a bearer token in
the Authorization header whose holder may list bays, and query parameters that are plainly valid
(``zone``, ``limit``, ``cursor``, each at most once). Everything else (no or unknown token, a
cookie, a forbidden role, an odd or invalid query, a cursor the read side refuses) goes on to
FastAPI unchanged, so errors and their bodies stay those of the route.
"""

from __future__ import annotations

import re
from urllib.parse import unquote_plus

from fastapi import FastAPI
from starlette.types import ASGIApp, Receive, Scope, Send

from kerbside.collector.api.pagecache import PageCache
from kerbside.collector.queries import Queries
from kerbside.collector.tokens import TokenRegistry

PATH = "/api/v1/bays"
ALLOWED_ROLES = frozenset(("officer", "analyst", "admin"))  # routes/bays.py: OfficerOrAnalyst
_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")  # routes/common.py: IdQuery
_LIMIT = re.compile(r"[1-9][0-9]{0,3}")  # routes/common.py: Limit, 1..1000
MAX_CURSOR = 200  # routes/common.py: Cursor
_JSON_HEADERS = (b"content-type", b"application/json")

Query = tuple[str | None, int, str | None]
_DEFAULT: Query = (None, 100, None)


def parse_query(raw: bytes) -> Query | None:
    """(zone, limit, cursor) when the query string is plainly valid; None to let FastAPI judge."""
    if not raw:
        return _DEFAULT
    zone: str | None = None
    limit = 100
    cursor: str | None = None
    seen: set[str] = set()
    for part in raw.decode("latin-1").split("&"):
        name, sep, value = part.partition("=")
        if not sep or name in seen:
            return None
        seen.add(name)
        value = unquote_plus(value)
        if name == "zone" and _ID.fullmatch(value):
            zone = value
        elif name == "limit" and _LIMIT.fullmatch(value) and int(value) <= 1000:
            limit = int(value)
        elif name == "cursor" and 0 < len(value) <= MAX_CURSOR:
            cursor = value
        else:
            return None
    return zone, limit, cursor


class BaysFastPath:
    """ASGI middleware serving cached ``/api/v1/bays`` pages to authorised callers."""

    def __init__(self, app: ASGIApp, fastapi_app: FastAPI) -> None:
        self.app = app
        self.state = fastapi_app.state

    def _page(self, scope: Scope) -> bytes | None:
        token: bytes | None = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                if token is None:
                    token = value
            elif name in (b"content-length", b"transfer-encoding"):
                return None
        if token is None:
            return None
        scheme, _, rest = token.decode("latin-1").partition(" ")
        presented = rest.strip()
        if scheme.lower() != "bearer" or not presented:
            return None
        registry: TokenRegistry = self.state.tokens
        holder = registry.lookup(presented)
        if holder is None or holder.role not in ALLOWED_ROLES:
            return None
        query = parse_query(scope.get("query_string", b""))
        if query is None:
            return None
        from kerbside.collector.api.routes.bays import bays_page  # noqa: PLC0415 (no cycle)

        queries: Queries = self.state.queries
        cache: PageCache = self.state.page_cache
        try:
            return bays_page(cache, queries, *query)
        except Exception:  # noqa: BLE001 - the route raises it again and answers as it should
            return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == PATH and scope["method"] == "GET":
            body = self._page(scope)
            if body is not None:
                await send(
                    {
                        "type": "http.response.start",
                        "status": 200,
                        "headers": [
                            (b"content-length", str(len(body)).encode()),
                            _JSON_HEADERS,
                        ],
                    }
                )
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)
