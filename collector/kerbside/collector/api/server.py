"""uvicorn's settings for the API, from the collector's ``http`` config (the collector and the
tests serve the app the same way)."""

from __future__ import annotations

from typing import Any

import uvicorn

from kerbside.collector.config import HttpConfig


def server_config(app: Any, http: HttpConfig, **overrides: Any) -> uvicorn.Config:
    """X-Forwarded-Proto and X-Forwarded-For are believed only from ``http.trusted_proxies``
    (uvicorn would otherwise believe any process on this machine); SSE streams never end by
    themselves, so a stop gives them 2 s and then closes them."""
    settings: dict[str, Any] = {
        "host": http.host,
        "port": http.port,
        "log_level": "warning",
        "timeout_graceful_shutdown": 2,
        "proxy_headers": bool(http.trusted_proxies),
        "forwarded_allow_ips": list(http.trusted_proxies),
    }
    settings.update(overrides)
    return uvicorn.Config(app, **settings)
