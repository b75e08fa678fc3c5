"""``kerbside-collector run``: one asyncio loop with the batcher, the alert timer, the HTTP API
and the time-series sink; paho's network thread feeds it."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
import time
from collections.abc import Generator
from typing import Any

from kerbside.collector.config import CollectorConfig, load_config
from kerbside.collector.ingest import Message, MqttLink
from kerbside.collector.service import CollectorService
from kerbside.collector.site import Site, SiteError, load_site
from kerbside.collector.store import Store

log = logging.getLogger(__name__)

PRUNE_EVERY_S = 3600


def run_main(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    try:
        site = load_site(config.site)
    except SiteError as exc:
        print(f"kerbside-collector: site file {config.site} is invalid:", file=sys.stderr)
        for error in exc.errors:
            print(f"  {error}", file=sys.stderr)
        return 2
    asyncio.run(serve(config, site))
    return 0


def export_journal_main(args: argparse.Namespace) -> int:
    """Print the store's accepted records as a SPEC 8 journal (for replay and audits)."""
    config = load_config(args.config)
    site = load_site(config.site)
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
    import json  # noqa: PLC0415

    return json.dumps(record, separators=(",", ":"), ensure_ascii=False) + "\n"


async def _batcher(
    queue: asyncio.Queue[Message | None], service: CollectorService, most: int
) -> None:
    """Take what has arrived (up to ``most`` messages) and process it as one transaction."""
    while True:
        item = await queue.get()
        batch: list[Message] = [] if item is None else [item]
        while len(batch) < most:
            try:
                item = queue.get_nowait()
            except asyncio.QueueEmpty:
                break
            if item is not None:
                batch.append(item)
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
        await asyncio.sleep(0)


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
    def make(app: Any, host: str, port: int) -> Any:
        import uvicorn  # noqa: PLC0415 (only when serving HTTP)

        class Server(uvicorn.Server):
            @contextlib.contextmanager
            def capture_signals(self) -> Generator[None, None, None]:
                yield

        return Server(uvicorn.Config(app, host=host, port=port, log_level="warning"))


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
    service = CollectorService(config, site, store)
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
    queue: asyncio.Queue[Message | None] = asyncio.Queue()

    def on_connection(up: bool) -> None:
        if up:
            service.publisher.reconnected()

    link = MqttLink(config.mqtt, loop, queue.put_nowait, service.publisher.published, on_connection)
    service.link = link
    service.publisher.link = link
    service.set_waker(lambda: queue.put_nowait(None))
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
            app = create_app(service, tokens_file=config.tokens_file)
            server = _QuietServer.make(app, config.http.host, config.http.port)
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
                _batcher(queue, service, config.ingest.batch_max), name="batcher"
            )
            pruner = tasks.create_task(_prune(service, config.store.retention_days), name="prune")
            http = None
            if server is not None:
                http = tasks.create_task(server.serve(), name="http")
            if started is not None:
                started.set()
            await stop.wait()
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
