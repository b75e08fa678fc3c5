"""``kerbside-collector run``: the collector wired together, and its asyncio tasks.

``assemble`` builds the parts by constructor (store, core through recovery, unit of work,
outbox, alert feed, read side, commands); ``serve`` adds the MQTT link (MQTT v5 on the event
loop; paho in a child process for 3.1.1), the batcher that feeds the unit of work, the alarm for
the rules' deadlines, retention, the HTTP API and the time-series sink, under one task group,
and owns the signals.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from kerbside.collector.batcher import Hold, LoopAlarm, Switchboard, gather_batches
from kerbside.collector.commands import Commands
from kerbside.collector.config import CollectorConfig, HttpConfig, check_config, load_config
from kerbside.collector.core import CollectorCore, CoreSettings
from kerbside.collector.cycle import Alarm, CommitCycle, Cycle, Sink, Wiring
from kerbside.collector.feed import AlertFeed
from kerbside.collector.link import Message, Transport
from kerbside.collector.link.process import ProcessLink
from kerbside.collector.link.v5 import V5Link
from kerbside.collector.loop_errors import QuietLoopErrors
from kerbside.collector.outbox import Outbox
from kerbside.collector.queries import Health, Queries, export_journal
from kerbside.collector.recovery import RecoveryReport, recover
from kerbside.collector.sitecache import load_site_cached, site_cache_path
from kerbside.collector.store import MAINTENANCE_LEASE, Store
from kerbside.collector.store.opening import migrate_store, open_store, store_name
from kerbside.collector.telemetry import Telemetry
from kerbside.collector.zones import only_zones
from kerbside.core.checks import ConfigFileError
from kerbside.core.config import ConfigError
from kerbside.core.instants import Instant, parse_instant
from kerbside.core.output import print_lines
from kerbside.core.site import Site, SiteError
from kerbside.core.systemd import Notifier

if TYPE_CHECKING:
    import uvicorn
    from fastapi import FastAPI

    from kerbside.collector.cluster.node import ClusterNode
    from kerbside.collector.timeseries import TimeSeriesRecorder

log = logging.getLogger(__name__)

PRUNE_EVERY_S = 3600
# Tests and demos run the collector on a faster clock: "START_INSTANT,SPEED,ANCHOR_EPOCH_MS"
# means now = START + (wall - ANCHOR) * SPEED. Never set in production.
CLOCK_ENV = "KERBSIDE_COLLECTOR_CLOCK"

# The garbage collector's first pass after this many new objects (Python's default: 700), and
# its full pass after this many of its middle ones (Python's default: 10).
GC_FIRST_AFTER = 50_000
GC_FULL_AFTER = 100


def wall_ms() -> Instant:
    return int(time.time() * 1000)


def clock_from_env() -> tuple[Callable[[], Instant], float]:
    spec = os.environ.get(CLOCK_ENV)
    if not spec:
        return wall_ms, 1.0
    start_text, speed_text, anchor_text = spec.split(",")
    start, speed, anchor = parse_instant(start_text), float(speed_text), int(anchor_text)
    log.warning("%s set: running on a test clock %sx from %s", CLOCK_ENV, speed, start_text)

    def now() -> Instant:
        return start + int((time.time() * 1000 - anchor) * speed)

    return now, speed


# -- wiring ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Collector:
    """The collector's parts, wired."""

    store: Store
    link: Transport
    cycle: Cycle
    outbox: Outbox
    feed: AlertFeed
    queries: Queries
    commands: Commands
    telemetry: Telemetry
    sink: Sink | None = None
    recovery: RecoveryReport = field(default_factory=RecoveryReport)
    node: ClusterNode | None = None  # one of several collectors (``cluster`` in the config)


def assemble(
    config: CollectorConfig,
    site: Site,
    store: Store,
    link: Transport,
    *,
    clock: Callable[[], Instant] = wall_ms,
    sink: Sink | None = None,
    alarm: Alarm | None = None,
) -> Collector:
    settings = CoreSettings.of(config)
    telemetry = Telemetry(store.counters())
    report = RecoveryReport()

    def rebuild(site: Site) -> CollectorCore:
        core = recover(store, site, settings, clock(), report)
        telemetry.journal_skipped = report.skipped
        return core

    outbox = Outbox(store.outbox(), link, latency=telemetry.publish_latency)
    feed = AlertFeed(store)
    wiring = Wiring(link, outbox, feed, telemetry, clock, sink, alarm)
    cycle: Cycle
    node = None
    settle_s = 0.0
    if config.cluster is not None:
        from kerbside.collector.cluster.node import join_cluster  # noqa: PLC0415
        from kerbside.collector.store.postgres import PostgresStore  # noqa: PLC0415

        assert isinstance(store, PostgresStore)  # the config refuses a cluster on SQLite
        cycle, node = join_cluster(config.cluster, site, store, settings, wiring)
        settle_s = config.cluster.lease_s + 5
    else:
        cycle = CommitCycle(site, store, rebuild, wiring)
    # When each bay came into being: occupancy counts no time before it (docs/analysts.md).
    cycle.store_bays(site)
    queries = Queries(
        store,
        lambda: cycle.site,
        clock=clock,
        health=Health(link, cycle, sink, None if node is None else node.health),
        telemetry=telemetry,
        outbox=outbox,
        sink=sink,
    )
    commands = Commands(cycle, store, settle_s=settle_s)
    return Collector(
        store, link, cycle, outbox, feed, queries, commands, telemetry, sink, report, node
    )


# -- commands ---------------------------------------------------------------------------------


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
    try:
        asyncio.run(serve(config, site))
    except ApiPortError as exc:
        # one line; exit 1, which systemd restarts (the program holding the port may go)
        print(f"kerbside-collector: {exc} (the http section of {args.config})", file=sys.stderr)
        return 1
    return 0


def export_journal_main(args: argparse.Namespace) -> int:
    """Print the store's accepted records as a journal (for replay and audits)."""
    config = load_config(args.config)
    # opening a missing SQLite file would create an empty store, and print an empty journal
    no_file = config.store.url is None and not config.store.path.exists()
    if no_file and str(config.store.path) != ":memory:":
        raise ConfigError(f"store.path: {config.store.path} does not exist")
    store = open_store(config.store)
    try:
        print_lines(
            json.dumps(record, separators=(",", ":"), ensure_ascii=False)
            for record in export_journal(store)
        )
    finally:
        store.close()
    return 0


def migrate_main(args: argparse.Namespace) -> int:
    """Create or upgrade the store's schema (idempotent); a newer one is refused."""
    config = load_config(args.config)
    found, now = migrate_store(config.store)
    name = store_name(config.store)
    if found == now:
        done = f"schema version {now}, up to date"
    elif found == 0:
        done = f"schema version {now} created"
    else:
        done = f"schema upgraded from version {found} to {now}"
    print_lines([f"store {name}: {done}"])
    return 0


# -- the tasks ----------------------------------------------------------------------------------


async def _watchdog(notifier: Notifier, every_s: float) -> None:
    """systemd's keep-alive from the event loop: a loop that stalls stops feeding it."""
    while True:
        notifier.watchdog()
        await asyncio.sleep(every_s)


async def _prune(collector: Collector, retention_days: float) -> None:
    while True:
        node = collector.node
        if node is not None and not node.beat.acting(MAINTENANCE_LEASE):
            pass  # among several collectors, the holder of the maintenance lease prunes
        elif retention_days > 0:
            cutoff = collector.cycle.clock() - int(retention_days * 86_400_000)
            try:
                removed = collector.store.prune(cutoff, collector.cycle.oldest_needed())
                if removed:
                    log.info(
                        "retention: pruned %d events older than %s days", removed, retention_days
                    )
            except Exception:
                log.exception("retention pruning failed")
        await asyncio.sleep(PRUNE_EVERY_S)


class ApiPortError(Exception):
    """The API's address cannot be listened on (another program holds the port, or the host is
    not this machine's)."""


def claim_api_address(http: HttpConfig) -> list[socket.socket]:
    """Sockets bound to the API's address, one per address ``http.host`` names (as uvicorn would
    bind them), made before the collector opens anything: a port in use is one line at start,
    not a collector that runs, connects and then stops. They listen once the store and the
    rules are ready (until then a connection is refused: an open port means the API answers
    at once, or within moments)."""
    try:
        infos = socket.getaddrinfo(
            http.host or None, http.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except OSError as exc:  # a name that does not resolve (its errno is getaddrinfo's own)
        raise _cannot_serve(http, exc.strerror or str(exc)) from exc
    sockets: list[socket.socket] = []
    try:
        for family, kind, proto, _, address in dict.fromkeys(infos):
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:  # "::" is IPv6 only, as uvicorn binds it
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
    except OSError as exc:
        for sock in sockets:
            sock.close()
        raise _cannot_serve(http, _reason(exc)) from exc
    return sockets


def listen_api(sockets: list[socket.socket], http: HttpConfig, backlog: int) -> None:
    """The claimed sockets listen, once what the API reads is in place. Another program that
    claimed the same port meanwhile (it may, as these do, until one listens) is one line too."""
    for sock in sockets:
        try:
            sock.listen(backlog)
        except OSError as exc:
            raise _cannot_serve(http, _reason(exc)) from exc


def _reason(exc: OSError) -> str:
    """The system's words for a socket's error, without the address Python adds to them."""
    return os.strerror(exc.errno) if exc.errno else str(exc)


def _cannot_serve(http: HttpConfig, reason: str) -> ApiPortError:
    return ApiPortError(
        f"cannot serve the API on {http.host}:{http.port}: {reason[:1].lower()}{reason[1:]}"
    )


class _QuietServer:
    """uvicorn's Server without its own signal handlers (the collector owns the signals)."""

    @staticmethod
    def make(app: FastAPI, http: HttpConfig) -> uvicorn.Server:
        import uvicorn  # noqa: PLC0415 (only when serving HTTP)

        from kerbside.collector.api.server import server_config  # noqa: PLC0415

        class Server(uvicorn.Server):
            @contextlib.contextmanager
            def capture_signals(self) -> Generator[None, None, None]:
                yield

        return Server(server_config(app, http))


class SinkView:
    """What the time-series sink reads of the collector (once it runs): the site, the bays'
    states, the clock. Among several collectors, the site is the zones this one runs, whose
    occupancy it writes (each zone's, once, by its owner)."""

    def __init__(
        self,
        queries: Callable[[], Queries],
        clock: Callable[[], Instant],
        node: Callable[[], ClusterNode | None] = lambda: None,
    ) -> None:
        self._queries = queries
        self.clock = clock
        self._node = node

    @property
    def site(self) -> Site:
        site = self._queries().site
        node = self._node()
        return site if node is None else only_zones(site, node.beat.zones)

    def bays(
        self, zone_id: str | None = None, limit: int = 100, cursor: str | None = None
    ) -> tuple[list[dict[str, Any]], str | None]:
        return self._queries().bays(zone_id, limit, cursor)

    @property
    def bay_origins(self) -> Mapping[str, Instant]:
        return self._queries().bay_origins()


def reload_site(config: CollectorConfig, cycle: Cycle) -> bool:
    """SIGHUP: the site file again, keeping state; an invalid one is refused (and logged)."""
    try:
        site = load_site_cached(config.site, site_cache_path(config))
    except SiteError as exc:
        log.error("site reload refused, keeping the old site: %s", "; ".join(exc.errors))  # noqa: TRY400
        return False
    except Exception:
        log.exception("site reload refused, keeping the old site")
        return False
    try:
        cycle.replace_site(site)
        cycle.store_bays(site)
    except Exception:
        log.exception("site reload not committed, keeping the old site")
        return False
    log.info("site reloaded: %d zones, %d bays", len(site.zones), len(site.bays))
    return True


async def serve(
    config: CollectorConfig,
    site: Site,
    *,
    started: asyncio.Event | None = None,
    stop: asyncio.Event | None = None,
    collector_out: list[Collector] | None = None,
) -> None:
    """Run the collector until SIGTERM/SIGINT (or ``stop`` is set)."""
    begun = time.monotonic()
    api_sockets: list[socket.socket] = []
    if config.http is not None:
        try:
            from kerbside.collector.api import create_app  # noqa: F401, PLC0415
        except ImportError as exc:
            log.warning("HTTP API not available (%s); running without it", exc)
        else:
            api_sockets = claim_api_address(config.http)
    try:
        await _run(
            config,
            site,
            api_sockets,
            begun=begun,
            started=started,
            stop=stop,
            collector_out=collector_out,
        )
    finally:
        for sock in api_sockets:  # uvicorn closes them at its stop; not if the start failed
            sock.close()


async def _run(
    config: CollectorConfig,
    site: Site,
    api_sockets: list[socket.socket],
    *,
    begun: float,
    started: asyncio.Event | None,
    stop: asyncio.Event | None,
    collector_out: list[Collector] | None,
) -> None:
    loop = asyncio.get_running_loop()
    # A listener out of file descriptors reports every failed accept: said once a minute.
    loop.set_exception_handler(QuietLoopErrors())
    clock, speed = clock_from_env()
    node = config.cluster.node_id if config.cluster is not None else ""
    store = open_store(config.store, node=node)
    stop = stop or asyncio.Event()
    queue: asyncio.Queue[list[Message] | None] = asyncio.Queue()
    due = asyncio.Event()

    def wake() -> None:
        due.set()
        queue.put_nowait(None)

    sink: TimeSeriesRecorder | None = None
    if config.influxdb is not None:
        from kerbside.collector.timeseries import create_sink  # noqa: PLC0415

        sink = create_sink(
            config.influxdb,
            SinkView(lambda: collector.queries, clock, lambda: collector.node),
            store_path=config.store.path,
            delay_s=config.alert_delay_s,
            store=store,
        )
    mqtt = config.mqtt
    if config.cluster is not None:
        # each collector of the group keeps a session of its own at the broker
        mqtt = mqtt.model_copy(update={"client_id": f"{mqtt.client_id}-{node}"})
    # MQTT v5 on this loop (mqtt5's codec); paho in a process of its own for 3.1.1 brokers
    link: Transport = V5Link(mqtt) if mqtt.protocol == "5" else ProcessLink(mqtt, loop)
    collector = assemble(
        config,
        site,
        store,
        link,
        clock=clock,
        sink=sink,
        alarm=LoopAlarm(loop, clock, speed, wake),
    )
    cycle = collector.cycle
    hold = Hold(cycle)
    if collector_out is not None:
        collector_out.append(collector)
    if config.journal_file is not None:
        collector.commands.load_journal_file(config.journal_file)
    if config.http is not None and api_sockets:
        from kerbside.collector.api.guard import ACCEPT_BACKLOG  # noqa: PLC0415

        listen_api(api_sockets, config.http, ACCEPT_BACKLOG)
    if sink is not None:
        await sink.start()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    with contextlib.suppress(NotImplementedError, RuntimeError):
        loop.add_signal_handler(signal.SIGHUP, reload_site, config, cycle)
    server: uvicorn.Server | None = None
    if config.http is not None and api_sockets:
        from kerbside.collector.api import create_app  # noqa: PLC0415

        app = create_app(
            collector.queries,
            collector.commands,
            collector.feed,
            signin_store=store,
            tokens_file=config.tokens_file,
            http=config.http,
        )
        server = _QuietServer.make(app, config.http)
    link.start(Switchboard(queue, hold, collector.outbox))
    cycle.tick()
    # What the start built (the site, the rules' state, the caches) lives as long as the
    # process: kept out of the garbage collector's passes, which would walk it again and again
    # as a backlog's batches come and go. Its first pass runs every 50,000 new objects, not 700
    # (in a 200,000-event drain: ~100 passes and 0.6-0.8 us an event collecting, where 700 made
    # ~2,000 passes and 2.7-2.8 us); its full pass after 100 of its middle ones, not 10 (what a
    # drain keeps, the rules' recent records, made one every ~12,000 events). Nothing holding a
    # descriptor waits for a pass: a closed connection's socket is closed as it ends, only its
    # spent transport waits, in a cycle.
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_FIRST_AFTER, 10, GC_FULL_AFTER)
    log.info(
        "collector started in %.2fs: %d bays, %d zones, store %s",
        time.monotonic() - begun,
        len(site.bays),
        len(site.zones),
        store_name(config.store),
    )
    try:
        async with asyncio.TaskGroup() as tasks:
            batcher = tasks.create_task(
                gather_batches(queue, cycle, config.ingest.batch_max, hold, due), name="batcher"
            )
            pruner = tasks.create_task(_prune(collector, config.store.retention_days), name="prune")
            cluster = []
            if collector.node is not None:
                cluster = [
                    tasks.create_task(collector.node.keep_leases(), name="leases"),
                    tasks.create_task(collector.node.patrol(), name="patrol"),
                    tasks.create_task(collector.node.listen(), name="listen"),
                ]
            http = None
            if server is not None:
                http = tasks.create_task(server.serve(sockets=api_sockets), name="http")
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
            for task in cluster:
                task.cancel()
            if http is not None:
                await http
    finally:
        try:
            cycle.save()
            if collector.node is not None:
                collector.node.leave()  # the others take the zones now, not when leases run out
        except Exception:
            log.exception("rules not saved at stop: the next start re-executes more journal")
        if sink is not None:
            await sink.stop()
        store.close()
        log.info("stopped")
