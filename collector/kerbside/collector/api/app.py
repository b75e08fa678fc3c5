"""``create_app(queries, commands, feed)``: the HTTP API (docs/api.md), served from the
collector's loop."""

from __future__ import annotations

import asyncio
from pathlib import Path

from fastapi import FastAPI
from fastapi_offline import FastAPIOffline

from kerbside.collector.api import errors
from kerbside.collector.api.bodylimit import BodyLimit
from kerbside.collector.api.fastpath import BaysFastPath
from kerbside.collector.api.metrics import registry_for
from kerbside.collector.api.occupancy import HEAVY_READS_AT_ONCE
from kerbside.collector.api.opendatacache import OpenDataCache
from kerbside.collector.api.pagecache import PageCache
from kerbside.collector.api.routes import (
    alerts,
    bays,
    gateways,
    occupancy,
    officer,
    opendata,
    rights,
    signin,
    system,
)
from kerbside.collector.api.routes.alerts import EventFrames
from kerbside.collector.api.siteview import SiteCache
from kerbside.collector.commands import Commands
from kerbside.collector.config import HttpConfig
from kerbside.collector.feed import AlertFeed
from kerbside.collector.queries import Queries
from kerbside.collector.signin import SignIns, SignInStore
from kerbside.collector.tokens import TokenRegistry

MAX_BODY_BYTES = 64 * 1024

DESCRIPTION = """\
Kerbside's collector API. Send `Authorization: Bearer <token>`; roles are `officer`, `analyst`,
`provider` and `admin` (admin may do everything). The officers' page signs in with a one-time
link (`POST /api/v1/signin-links`) and uses a session cookie instead. `/healthz`, `/metrics`,
`/officer` and `/api/v1/opendata/*` need no token. Lists take `limit` and `cursor` and answer
`{"items": [...], "next_cursor": ...}`. Bad input gets a 4xx whose JSON names the field
(`{"field": "body.end", "detail": [...]}`).
"""


def create_app(
    queries: Queries,
    commands: Commands,
    feed: AlertFeed,
    *,
    signin_store: SignInStore,
    tokens_file: Path | str | None = None,
    tokens: TokenRegistry | None = None,
    http: HttpConfig | None = None,
) -> FastAPI:
    """The API: reads from ``queries``, writes through ``commands``, the alert stream from
    ``feed``; tokens from ``tokens_file`` (re-read when it changes); the officers' sessions and
    sign-in links in ``signin_store`` (the collector's store, where every collector sharing it
    finds them); ``http`` the collector's http settings."""
    if tokens is None:
        tokens = TokenRegistry(Path(tokens_file) if tokens_file is not None else None)
    http = http or HttpConfig()
    # Swagger UI's script and styles come from this server, not a CDN (fastapi-offline ships
    # them): /docs works on a closed network and loads no third-party code.
    app = FastAPIOffline(
        title="Kerbside collector API",
        version="1",
        description=DESCRIPTION,
        static_url="/docs/static",
        redoc_url=None,
        favicon_url="/favicon.ico",
    )
    app.state.queries = queries
    app.state.commands = commands
    app.state.feed = feed
    app.state.tokens = tokens
    app.state.http = http
    app.state.signins = SignIns(
        signin_store,
        tokens,
        session_minutes=http.session_hours * 60,
        link_minutes=http.signin_link_minutes,
    )
    app.state.site_cache = SiteCache()
    app.state.heavy_reads = asyncio.Semaphore(HEAVY_READS_AT_ONCE)
    app.state.sse_clients = 0
    app.state.page_cache = PageCache(ttl_s=1.0)
    app.state.opendata = OpenDataCache(unseen_round_ms=opendata.MAX_AGE_S * 1000)
    app.state.sse_frames = EventFrames()
    app.state.metrics_registry = registry_for(
        lambda: app.state.queries, lambda: app.state.sse_clients
    )
    errors.install(app)
    for module in (bays, alerts, rights, occupancy, opendata, system, officer, signin, gateways):
        app.include_router(module.router)
    app.add_middleware(BodyLimit, max_bytes=MAX_BODY_BYTES)
    app.add_middleware(BaysFastPath, fastapi_app=app)  # outermost: the hot read skips the rest
    return app
