"""``kerbside-collector run``: one asyncio loop with the batcher, the alert timer, the HTTP API
and the time-series sink; paho's network thread feeds it."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any

import yaml

from kerbside.collector.config import CollectorConfig, HttpConfig, check_config, load_config
from kerbside.collector.ingest import Message, MqttLink
from kerbside.collector.service import CollectorService, wall_ms
from kerbside.collector.store import Store
from kerbside.core.checks import ConfigFileError
from kerbside.core.instants import parse_instant
from kerbside.core.site import Site, SiteError, load_site, parse_site
from kerbside.core.systemd import Notifier

log = logging.getLogger(__name__)

PRUNE_EVERY_S = 3600
# After (re)connecting, the broker first hands over what it queued for us; the engine's clock
# waits until that backlog is in (no message for QUIET_S) or for at most HOLD_MAX_S.
QUIET_S = 0.3
HOLD_MAX_S = 10.0
# The least time from the start of one batch to the start of the next when the batch was not
# full: a commit costs an fsync and a few ms of bookkeeping whatever its size.
BATCH_GATHER_S = 0.05
# Tests and demos run the collector on a faster clock: "START_INSTANT,SPEED,ANCHOR_EPOCH_MS"
# means now = START + (wall - ANCHOR) * SPEED. Never set in production.
CLOCK_ENV = "KERBSIDE_COLLECTOR_CLOCK"


def clock_from_env() -> tuple[Callable[[], int], float]:
    spec = os.environ.get(CLOCK_ENV)
    if not spec:
        return wall_ms, 1.0
    start_text, speed_text, anchor_text = spec.split(",")
    start, speed, anchor = parse_instant(start_text), float(speed_text), int(anchor_text)
    log.warning("%s set: running on a test clock %sx from %s", CLOCK_ENV, speed, start_text)

    def now() -> int:
        return start + int((time.time() * 1000 - anchor) * speed)

    return now, speed


def site_cache_path(config: CollectorConfig) -> Path:
    return config.store.path.with_name(config.store.path.name + ".site-cache.json")


def load_site_cached(path: Path, cache: Path) -> Site:
    """``load_site``, with the parsed YAML kept beside the store keyed by the file's hash.

    PyYAML builds a 100,000-bay site in about a minute; JSON of the same data loads in about a
    second. The cached data is validated again on every load, exactly as the file would be.
    """
    try:
        raw = path.read_bytes()
    except OSError:
        return load_site(path)  # the same one-line error as always
    digest = hashlib.sha256(raw).hexdigest()
    try:
        cached = json.loads(cache.read_text(encoding="utf-8"))
        if cached.get("sha256") == digest:
            return parse_site(cached["data"], source=str(path))
    except (OSError, ValueError, AttributeError):
        pass
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        data = yaml.load(raw.decode("utf-8"), Loader=loader)  # noqa: S506 (a safe loader)
    except (yaml.YAMLError, UnicodeDecodeError):
        return load_site(path)
    site = parse_site(data, source=str(path))
    with contextlib.suppress(OSError, TypeError, ValueError):
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(".tmp")
        tmp.write_text(json.dumps({"sha256": digest, "data": data}), encoding="utf-8")
        tmp.replace(cache)
    return site


def run_main(args: argparse.Namespace) -> int:
    # The same checks as `kerbside-collector check`; the site file through its cache (a big
    # one takes a minute to parse).
    config, problems, _ = check_config(args.config, site=False)
    for problem in problems:
        if problem.warning:
            log.warning("%s", problem.render(args.config))
    if config is None:
        raise ConfigFileError(args.config, [p for p in problems if not p.warning])
    try:
        site = load_site_cached(config.site, site_cache_path(config))
    except SiteError as exc:
        print(f"kerbside-collector: site file {config.site} is invalid:", file=sys.stderr)
        for line in exc.lines:
            print(f"  {line}", file=sys.stderr)
        return 2
    asyncio.run(serve(config, site))
    return 0


def export_journal_main(args: argparse.Namespace) -> int:
    """Print the store's accepted records as a journal (for replay and audits)."""
    config = load_config(args.config)
    site = load_site_cached(config.site, site_cache_path(config))
    store = Store(config.store.path)
    try:
        service = CollectorService(config.model_copy(update={"journal_file": None}), site, store)
        out = sys.stdout
        for record in service.export_journal():
            out.write(_line(record))
    finally:
        store.close()
    return 0


def _line(record: dict[str, Any]) -> str:
    return json.dumps(record, separators=(",", ":"), ensure_ascii=False) + "\n"


class _Hold:
    """When the engine's clock may move again after a (re)connection."""

    def __init__(self, service: CollectorService) -> None:
        self.service = service
        self.deadline = time.monotonic() + HOLD_MAX_S
        self.connected = False
        service.holding = True

    def connection(self, up: bool) -> None:
        self.connected = up
        self.service.holding = True
        self.deadline = time.monotonic() + HOLD_MAX_S

    def quiet(self) -> bool:
        """No message for QUIET_S: release the clock if the backlog is in (or we waited long
        enough for a broker that is away); returns True when it released."""
        if self.service.holding and (self.connected or time.monotonic() > self.deadline):
            self.service.holding = False
            return True
        return False


async def _batcher(
    queue: asyncio.Queue[list[Message] | None],
    service: CollectorService,
    most: int,
    hold: _Hold,
    due: asyncio.Event,
) -> None:
    """Take what has arrived (up to ``most`` messages) and process it as one transaction.

    The queue holds the messages as they came from the broker link, a burst at a time (None
    only wakes the batcher for the alert timer, which also sets ``due``)."""
    carry: list[Message] = []
    while True:
        if not carry:
            if service.holding:
                try:
                    item = await asyncio.wait_for(queue.get(), QUIET_S)
                except TimeoutError:
                    if hold.quiet():
                        service.tick()
                    continue
            else:
                item = await queue.get()
            if item:
                carry = item
        if service.holding and time.monotonic() > hold.deadline and hold.connected:
            service.holding = False
        while len(carry) < most:
            try:
                item = queue.get_nowait()
            except asyncio.QueueEmpty:
                break
            if item:
                carry += item
        batch, carry = carry[:most], carry[most:]
        began = time.monotonic()
        try:
            if batch:
                service.process_batch(batch)
            else:
                service.tick()
        except Exception:
            # The store refused a commit (disk full, locked): nothing was acked, so the broker
            # will redeliver; wait a little rather than spin.
            log.exception("batch of %d messages not committed", len(batch))
            await asyncio.sleep(1)
        remaining = began + BATCH_GATHER_S - time.monotonic()
        if carry or remaining <= 0 or due.is_set():
            await asyncio.sleep(0)
        else:
            # Under a steady stream, let a batch gather for BATCH_GATHER_S rather than commit
            # (and fsync) every few messages; a message after a quiet spell goes at once, and
            # an alert falling due ends the wait.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(due.wait(), remaining)
        due.clear()


async def _watchdog(notifier: Notifier, every_s: float) -> None:
    """systemd's keep-alive from the event loop: a loop that stalls stops feeding it."""
    while True:
        notifier.watchdog()
        await asyncio.sleep(every_s)


async def _prune(service: CollectorService, retention_days: float) -> None:
    while True:
        if retention_days > 0:
            cutoff = service.clock() - int(retention_days * 86_400_000)
            try:
                removed = service.store.prune(cutoff, service.snapshot_pos())
                if removed:
                    log.info(
                        "retention: pruned %d events older than %s days", removed, retention_days
                    )
            except Exception:
                log.exception("retention pruning failed")
        await asyncio.sleep(PRUNE_EVERY_S)


class _QuietServer:
    """uvicorn's Server without its own signal handlers (the collector owns the signals)."""

    @staticmethod
    def make(app: Any, http: HttpConfig) -> Any:
        import uvicorn  # noqa: PLC0415 (only when serving HTTP)

        from kerbside.collector.api.server import server_config  # noqa: PLC0415

        class Server(uvicorn.Server):
            @contextlib.contextmanager
            def capture_signals(self) -> Generator[None, None, None]:
                yield

        config = server_config(app, http)
        return Server(config)


async def serve(
    config: CollectorConfig,
    site: Site,
    *,
    started: asyncio.Event | None = None,
    stop: asyncio.Event | None = None,
    service_out: list[CollectorService] | None = None,
) -> None:
    """Run the collector until SIGTERM/SIGINT (or ``stop`` is set)."""
    loop = asyncio.get_running_loop()
    begun = time.monotonic()
    store = Store(config.store.path)
    clock, speed = clock_from_env()
    service = CollectorService(config, site, store, clock=clock, clock_speed=speed)
    service.site_loader = lambda: load_site_cached(config.site, site_cache_path(config))
    hold = _Hold(service)
    if service_out is not None:
        service_out.append(service)
    stop = stop or asyncio.Event()
    sink: Any = None
    if config.influxdb is not None:
        from kerbside.collector.timeseries import create_sink  # noqa: PLC0415

        sink = create_sink(
            config.influxdb, service, store_path=config.store.path, delay_s=config.alert_delay_s
        )
        service.sink = sink
        await sink.start()
    queue: asyncio.Queue[list[Message] | None] = asyncio.Queue()

    def on_connection(up: bool) -> None:
        hold.connection(up)
        if up:
            service.publisher.reconnected()

    link = MqttLink(config.mqtt, loop, queue.put_nowait, service.publisher.published, on_connection)
    service.link = link
    service.publisher.link = link
    due = asyncio.Event()

    def wake() -> None:
        due.set()
        queue.put_nowait(None)

    service.set_waker(wake)
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    with contextlib.suppress(NotImplementedError, RuntimeError):
        loop.add_signal_handler(signal.SIGHUP, service.reload_site)
    server: Any = None
    if config.http is not None:
        try:
            from kerbside.collector.api import create_app  # noqa: PLC0415
        except ImportError as exc:
            log.warning("HTTP API not available (%s); running without it", exc)
        else:
            app = create_app(
                service, tokens_file=config.tokens_file, signin_store=store, http=config.http
            )
            server = _QuietServer.make(app, config.http)
    link.start()
    service.tick()
    log.info(
        "collector started in %.2fs: %d bays, %d zones, store %s",
        time.monotonic() - begun,
        len(site.bays),
        len(site.zones),
        config.store.path,
    )
    try:
        async with asyncio.TaskGroup() as tasks:
            batcher = tasks.create_task(
                _batcher(queue, service, config.ingest.batch_max, hold, due), name="batcher"
            )
            pruner = tasks.create_task(_prune(service, config.store.retention_days), name="prune")
            http = None
            if server is not None:
                http = tasks.create_task(server.serve(), name="http")
            if started is not None:
                started.set()
            notifier = Notifier()
            notifier.ready(f"{len(site.bays)} bays")
            watchdog = None
            if notifier.keepalive_s is not None:
                watchdog = tasks.create_task(
                    _watchdog(notifier, notifier.keepalive_s), name="watchdog"
                )
            await stop.wait()
            notifier.stopping()
            if watchdog is not None:
                watchdog.cancel()
            log.info("stopping")
            if server is not None:
                server.should_exit = True
            link.stop()
            batcher.cancel()
            pruner.cancel()
            if http is not None:
                await http
    finally:
        service.save_state()
        if sink is not None:
            await sink.stop()
        store.close()
        log.info("stopped")
