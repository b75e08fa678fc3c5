"""``create_app(service)``: the HTTP API (docs/api.md), served from the collector's loop."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from kerbside.collector.api import errors
from kerbside.collector.api.bodylimit import BodyLimit
from kerbside.collector.api.fastpath import BaysFastPath
from kerbside.collector.api.pagecache import PageCache
from kerbside.collector.api.ports import ApiService
from kerbside.collector.api.routes import (
    alerts,
    bays,
    gateways,
    occupancy,
    officer,
    opendata,
    rights,
    system,
)
from kerbside.collector.api.routes.alerts import EventFrames
from kerbside.collector.api.siteview import SiteCache
from kerbside.collector.tokens import TokenRegistry

MAX_BODY_BYTES = 64 * 1024

DESCRIPTION = """\
Kerbside's collector API. Send `Authorization: Bearer <token>`; roles are `officer`, `analyst`,
`provider` and `admin` (admin may do everything). `/healthz`, `/metrics`, `/officer` and
`/api/v1/opendata/*` need no token. Lists take `limit` and `cursor` and answer
`{"items": [...], "next_cursor": ...}`. Bad input gets a 4xx whose JSON names the field
(`{"field": "body.end", "detail": [...]}`).
"""


def create_app(
    service: ApiService,
    *,
    tokens_file: Path | str | None = None,
    tokens: TokenRegistry | None = None,
) -> FastAPI:
    """The API over ``service``; tokens from ``tokens_file`` (re-read when it changes)."""
    if tokens is None:
        if tokens_file is None:
            config = getattr(service, "config", None)
            tokens_file = getattr(config, "tokens_file", None)
        tokens = TokenRegistry(Path(tokens_file) if tokens_file is not None else None)
    app = FastAPI(
        title="Kerbside collector API",
        version="1",
        description=DESCRIPTION,
    )
    app.state.service = service
    app.state.tokens = tokens
    app.state.site_cache = SiteCache()
    app.state.sse_clients = 0
    app.state.page_cache = PageCache(ttl_s=1.0)
    app.state.sse_frames = EventFrames()
    errors.install(app)
    for module in (bays, alerts, rights, occupancy, opendata, system, officer, gateways):
        app.include_router(module.router)
    app.add_middleware(BodyLimit, max_bytes=MAX_BODY_BYTES)
    app.add_middleware(BaysFastPath, fastapi_app=app)  # outermost: the hot read skips the rest
    app.mount("/officer/static", StaticFiles(directory=officer.STATIC), name="officer-static")
    return app
