"""uvicorn's settings for the API, from the collector's ``http`` config (the collector and the
tests serve the app the same way)."""

from __future__ import annotations

import logging
from typing import Any

import uvicorn

from kerbside.collector.api.guard import (
    ACCEPT_BACKLOG,
    ConnectionGuard,
    QuietRepeats,
    connection_limit,
    guarded_protocol,
)
from kerbside.collector.config import HttpConfig

log = logging.getLogger("kerbside.collector.api")


def server_config(app: Any, http: HttpConfig, **overrides: Any) -> uvicorn.Config:
    """X-Forwarded-Proto and X-Forwarded-For are believed only from ``http.trusted_proxies``
    (uvicorn would otherwise believe any process on this machine); SSE streams never end by
    themselves, so a stop gives them 2 s and then closes them. Connections are limited and a
    request's head has a deadline (api/guard.py)."""
    limit = connection_limit(http.max_connections)
    if limit < http.max_connections:
        log.info(
            "HTTP connections limited to %d: this process may open no more files (LimitNOFILE"
            " raises it)",
            limit,
        )
    guard = ConnectionGuard(limit, http.header_timeout_s)
    uvicorn_log = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, QuietRepeats) for f in uvicorn_log.filters):
        uvicorn_log.addFilter(QuietRepeats())
    settings: dict[str, Any] = {
        "http": guarded_protocol(guard),
        "backlog": ACCEPT_BACKLOG,
        "host": http.host,
        "port": http.port,
        "log_level": "warning",
        "timeout_graceful_shutdown": 2,
        "proxy_headers": bool(http.trusted_proxies),
        "forwarded_allow_ips": list(http.trusted_proxies),
    }
    settings.update(overrides)
    return uvicorn.Config(app, **settings)
