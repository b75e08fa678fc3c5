"""The collector's HTTP API (docs/api.md) and the officers' page."""

from __future__ import annotations

from kerbside.collector.api.app import create_app

__all__ = ["create_app"]
