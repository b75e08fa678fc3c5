"""``kerbside-collector backfill``: rewrite a period's time series from the collector's store.

For a new InfluxDB, or after an outage longer than the spool's bound. Points are rewritten, not
appended: a point with the same series and time replaces itself, so running a backfill twice,
or over a period the live path already wrote, leaves one copy of each point.

What the store keeps gives ``bay_state`` (every state change), ``zone_occupancy`` (every minute
of the period, from the state history, as the live task computes it), ``bay_session`` (sessions
that started in the period and have ended) and ``alert`` (raised or cleared in the period). The
store keeps only the latest health of each gateway and sensor, so ``sensor_health`` and
``gateway`` history cannot be rewritten.

``zone_occupancy`` is written only for minutes that are over, as live: ``t + alert_delay_s <=
now``, however far ``--to`` reaches; and a bay counts only from its origin (when the collector
first ran with a site holding it), so no point is written for minutes before a zone's bays
existed.
"""

from __future__ import annotations

import argparse
import itertools
import logging
import sys
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Protocol

from kerbside.collector.timeseries import lines as lp
from kerbside.collector.timeseries import open_sink
from kerbside.collector.timeseries.errors import RetryableWriteError
from kerbside.collector.timeseries.sinks import TimeSeriesSink
from kerbside.collector.timeseries.writer import write_splitting
from kerbside.core.config import ConfigError
from kerbside.core.instants import Instant, InstantError, format_instant, parse_instant
from kerbside.core.output import print_lines

log = logging.getLogger(__name__)

MINUTE_MS = 60_000
_PAGE = 1000


class StoreReader(Protocol):
    """The parts of ``kerbside.collector.store.Store`` a backfill reads."""

    def bay_origins(self, bay_ids: Iterable[str] | None = None) -> dict[str, int]: ...

    def state_changes(
        self, bay_ids: list[str] | None, start: int, end: int
    ) -> dict[str, list[tuple[int, str]]]: ...

    def sessions(
        self, bay_id: str, start: int | None, end: int | None, limit: int, after: int | None
    ) -> list[tuple[int, int | None, int]]: ...

    def alerts(
        self, *, limit: int = 100, after: tuple[int, str] | None = None
    ) -> list[dict[str, Any]]: ...


class SiteLike(Protocol):
    @property
    def bays(self) -> Mapping[str, Any]: ...


def _measurement(line: str) -> str:
    return line.split(",", 1)[0].split(" ", 1)[0]


def occupancy_end(end: Instant, now: Instant, delay_ms: int) -> Instant:
    """Where ``zone_occupancy`` stops: at ``end``, or after the last minute ``t`` that is over
    (``t + delay <= now``), whichever is first."""
    return min(end, (now - delay_ms) // MINUTE_MS * MINUTE_MS + 1)


def state_lines(
    store: StoreReader,
    site: SiteLike,
    start: Instant,
    end: Instant,
    *,
    now: Instant,
    delay_ms: int = 0,
) -> Iterator[str]:
    """``bay_state`` for every change in [start, end) and ``zone_occupancy`` every minute of it
    that is over by ``now``."""
    before = {
        bay: changes[-1][1] for bay, changes in store.state_changes(None, start, start).items()
    }
    during = store.state_changes(None, start, end)
    timeline: dict[str, list[tuple[int, str]]] = {}
    for bay_id, changes in during.items():
        # The first item is the state before `start`, restamped; it is not a change.
        own = changes[1:] if bay_id in before else changes
        timeline[bay_id] = own
        bay = site.bays.get(bay_id)
        if bay is None:
            continue  # removed from the site since: no tags to write it with
        for ts, state in own:
            yield lp.bay_state_line(bay, state, ts, getattr(bay, "gateway", None))
    zone_of_bay = {bay_id: bay.zone_id for bay_id, bay in site.bays.items()}
    origins = store.bay_origins(zone_of_bay)
    current = dict(before)
    cursor = dict.fromkeys(timeline, 0)
    first_minute = -(-start // MINUTE_MS) * MINUTE_MS
    if origins:
        first_minute = max(first_minute, -(-min(origins.values()) // MINUTE_MS) * MINUTE_MS)
    for t in range(first_minute, occupancy_end(end, now, delay_ms), MINUTE_MS):
        for bay_id, changes in timeline.items():
            i = cursor[bay_id]
            while i < len(changes) and changes[i][0] <= t:
                current[bay_id] = changes[i][1]
                i += 1
            cursor[bay_id] = i
        counts = lp.count_zones(zone_of_bay, current, origins, t)
        for zone_id in sorted(counts):
            yield lp.zone_occupancy_line(zone_id, counts[zone_id], t)


def _all_alerts(store: StoreReader) -> Iterator[dict[str, Any]]:
    after: tuple[int, str] | None = None
    while True:
        page = store.alerts(limit=_PAGE, after=after)
        yield from page
        if len(page) < _PAGE:
            return
        last = page[-1]
        after = (parse_instant(last["raised_at"]), str(last["alert_id"]))


def _in(value: Any, start: Instant, end: Instant) -> bool:
    return value is not None and start <= parse_instant(str(value)) < end


def alert_and_session_lines(
    store: StoreReader, site: SiteLike, start: Instant, end: Instant
) -> Iterator[str]:
    """``alert`` points raised or cleared in [start, end); ``bay_session`` for sessions that
    started in it and have ended."""
    of_session: dict[tuple[str, Instant], list[dict[str, Any]]] = {}
    for record in _all_alerts(store):
        if record.get("bay_id") and record.get("session_start"):
            key = (str(record["bay_id"]), parse_instant(str(record["session_start"])))
            of_session.setdefault(key, []).append(record)
        if _in(record.get("raised_at"), start, end):
            line = lp.alert_line({**record, "status": "open"})
            if line is not None:
                yield line
        if record.get("status") in lp.CLOSED_STATUSES and _in(record.get("cleared_at"), start, end):
            line = lp.alert_line(record)
            if line is not None:
                yield line
    for bay_id, bay in site.bays.items():
        after: int | None = start - 1
        while True:
            page = store.sessions(bay_id, None, end, _PAGE, after)
            for s_start, s_end, alerts in page:
                if s_end is None or s_start < start:
                    continue
                overstay_s, _ = lp.session_figures(of_session.get((bay_id, s_start), []), s_end)
                yield lp.bay_session_line(bay, s_start, s_end, overstay_s, alerts)
            if len(page) < _PAGE:
                break
            after = page[-1][0]


def write_all(
    sink: TimeSeriesSink,
    lines: Iterator[str],
    batch_size: int = 5000,
    attempts: int = 5,
) -> tuple[Counter[str], int]:
    """Write in batches (rejected lines split out and counted); retries a failing batch with
    backoff a few times, then raises RetryableWriteError. Returns (written per measurement,
    rejected)."""
    written: Counter[str] = Counter()
    rejected = 0
    batch: list[str] = []

    def flush() -> None:
        nonlocal rejected
        for attempt in range(attempts):
            try:
                _, bad = write_splitting(sink, batch)
                break
            except RetryableWriteError:
                if attempt == attempts - 1:
                    raise
                log.warning("write failed; retrying in %.0fs", 2**attempt)
                time.sleep(2**attempt)
        rejected += bad
        written.update(_measurement(line) for line in batch)
        batch.clear()

    for line in lines:
        batch.append(line)
        if len(batch) >= batch_size:
            flush()
    if batch:
        flush()
    return written, rejected


def backfill_main(args: argparse.Namespace) -> int:
    from kerbside.collector.config import load_config  # noqa: PLC0415 - CLI-only imports
    from kerbside.collector.runtime import clock_from_env  # noqa: PLC0415
    from kerbside.collector.store.opening import open_store  # noqa: PLC0415
    from kerbside.core.site import load_site  # noqa: PLC0415

    config = load_config(args.config)
    if config.influxdb is None:
        raise ConfigError(f"{args.config}: influxdb: not configured, nothing to backfill into")
    try:
        start, end = parse_instant(args.start), parse_instant(args.end)
    except InstantError as exc:
        raise ConfigError(f"--from/--to: {exc}") from exc
    if end <= start:
        raise ConfigError("--to: must be after --from")
    no_file = config.store.url is None and not config.store.path.exists()
    if no_file and str(config.store.path) != ":memory:":
        raise ConfigError(f"store.path: {config.store.path} does not exist")
    site = load_site(config.site)
    store = open_store(config.store)
    sink = open_sink(config.influxdb)
    clock, _ = clock_from_env()
    now = clock()
    delay_ms = int(config.alert_delay_s * 1000)
    lines = itertools.chain(
        state_lines(store, site, start, end, now=now, delay_ms=delay_ms),
        alert_and_session_lines(store, site, start, end),
    )
    try:
        written, rejected = write_all(sink, lines, batch_size=config.influxdb.batch_size)
    except RetryableWriteError as exc:
        print(f"kerbside-collector backfill: {sink.target}: {exc}", file=sys.stderr)
        return 1
    finally:
        sink.close()
        store.close()
    summary = ", ".join(f"{m} {n}" for m, n in sorted(written.items())) or "no points"
    report = [
        f"backfill {format_instant(start)} .. {format_instant(end)} -> {sink.target}: "
        f"{summary}; {rejected} rejected"
    ]
    stop = occupancy_end(end, now, delay_ms)
    if stop < end:
        later = format_instant(stop - 1 + MINUTE_MS)
        report.append(f"zone_occupancy: no points from {later} on (those minutes are not over yet)")
    print_lines(report)
    return 0 if rejected == 0 else 1
