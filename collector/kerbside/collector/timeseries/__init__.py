"""Time series in InfluxDB (docs/analysts.md): line builders, sinks, a durable spool, a recorder.

The collector builds one recorder with ``create_sink(config.influxdb, view, ..., store=store)``;
its units of work ask it for the lines of their points, write them to the store's spool with
their commit, then tell it; see ``recorder.TimeSeriesRecorder``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from kerbside.collector.effects import Effects
from kerbside.collector.store import LineSpool, Store, Work
from kerbside.collector.store.spool import Spool
from kerbside.collector.timeseries.errors import (
    RejectedWriteError,
    RetryableWriteError,
    TimeSeriesError,
)
from kerbside.collector.timeseries.lines import BayTags, session_figures
from kerbside.collector.timeseries.recorder import TimeSeriesRecorder
from kerbside.collector.timeseries.sinks import InfluxV1Sink, InfluxV2Sink, TimeSeriesSink
from kerbside.collector.timeseries.writer import SpoolWriter, WriterStats
from kerbside.core.config import ConfigError
from kerbside.core.instants import Instant, parse_instant
from kerbside.core.site import Site

log = logging.getLogger(__name__)

__all__ = [
    "BayTags",
    "CollectorView",
    "InfluxV1Sink",
    "InfluxV2Sink",
    "RejectedWriteError",
    "RetryableWriteError",
    "Spool",
    "SpoolWriter",
    "TimeSeriesError",
    "TimeSeriesRecorder",
    "TimeSeriesSink",
    "WriterStats",
    "create_sink",
    "current_states",
    "open_sink",
    "session_figures",
]


def _secret(path: Path | None, key: str) -> str | None:
    if path is None:
        return None
    try:
        return path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"influxdb.{key}: cannot read {path}: {exc.strerror or exc}") from exc


def open_sink(config: Any) -> TimeSeriesSink:
    """The sink for an ``influxdb:`` config block (the collector's ``InfluxConfig``)."""
    timeout_s = float(config.timeout_s)
    if config.api == "v1":
        if not config.database:
            raise ConfigError("influxdb.database: required with api: v1")
        return InfluxV1Sink(
            config.url,
            config.database,
            retention_policy=config.retention_policy,
            username=config.username,
            password=_secret(config.password_file, "password_file"),
            timeout_s=timeout_s,
        )
    for key in ("token_file", "org", "bucket"):
        if not getattr(config, key):
            raise ConfigError(f"influxdb.{key}: required with api: v2")
    token = _secret(config.token_file, "token_file") or ""
    return InfluxV2Sink(config.url, token, config.org, config.bucket, timeout_s=timeout_s)


class CollectorView(Protocol):
    """What the recorder reads of the collector: its site, its bays' states and its clock."""

    @property
    def site(self) -> Site: ...

    def bays(
        self, zone_id: str | None = None, limit: int = 100, cursor: str | None = None
    ) -> tuple[list[dict[str, Any]], str | None]: ...

    @property
    def clock(self) -> Callable[[], Instant]: ...

    @property
    def bay_origins(self) -> Mapping[str, Instant]:
        """When each bay came into being; zone occupancy counts no time before it."""


def current_states(service: CollectorView) -> dict[str, tuple[str, Instant]]:
    """Each bay's current (state, since) from the service's bay list (no store query)."""
    out: dict[str, tuple[str, Instant]] = {}
    cursor: str | None = None
    while True:
        page, cursor = service.bays(limit=10_000, cursor=cursor)
        for bay in page:
            if bay.get("since"):
                out[str(bay["bay_id"])] = (str(bay["state"]), parse_instant(str(bay["since"])))
        if cursor is None:
            return out


def create_sink(
    config: Any,
    service: CollectorView,
    store_path: str | Path | None = None,
    *,
    delay_s: float = 15.0,
    store: Store | None = None,
) -> TimeSeriesRecorder:
    """The collector's recorder, with its spool in ``store`` (the store's commits write the
    lines of their points there); without a store (tests, tools), a spool file of its own at
    ``influxdb.spool_path`` or ``store_path``.

    ``service`` provides ``site`` (its ``bays``: id -> Bay with ``zone_id``), ``bays()`` (pages
    of bay dicts with ``state`` and ``since``, read once at start), ``clock`` (epoch ms) and
    ``bay_origins`` (bay -> when it came into being, optional); all used on the event loop.
    """
    spool_path = config.spool_path or store_path or ":memory:"
    batch_size = int(config.batch_size)
    max_lines = int(config.spool_max_points)
    spool: Callable[[Sequence[str]], None] | None = None
    open_spool: Callable[[], LineSpool] | None = None
    if store is not None:
        if config.spool_path is not None:
            log.warning(
                "influxdb.spool_path is not used: points are spooled in the store (%s), in the"
                " same transaction as the batch they come from",
                store_path,
            )
        live = store

        def spool(lines: Sequence[str]) -> None:
            live.commit(Work(Effects(), lines=tuple(lines)))

        def open_spool() -> LineSpool:
            return live.open_spool(max_lines, batch_size)

    writer = SpoolWriter(
        open_sink(config),
        str(spool_path),
        batch_size=batch_size,
        flush_interval_s=int(config.flush_interval_ms) / 1000.0,
        max_lines=max_lines,
        open_spool=open_spool,
    )

    def zones() -> dict[str, str]:
        return {bay_id: bay.zone_id for bay_id, bay in service.site.bays.items()}

    def origins() -> Mapping[str, Instant]:
        return service.bay_origins

    return TimeSeriesRecorder(
        writer,
        zones=zones,
        current=lambda: current_states(service),
        origins=origins,
        delay_s=delay_s,
        clock=service.clock,
        spool=spool,
    )
