"""``kerbside-edge run``: sensors in, confirmed occupancy events out, nothing lost on the way.

Concurrency: one asyncio loop owns every piece of state (parsers, detector, outbox, counters).
Its background loops run under one ``asyncio.TaskGroup``, each task named:

- ``serial:/dev/...`` (one per port; a BLE source alike): read, stamp, hand to ``received``;
- ``detector-ticks``: sleeps until ``detector.next_deadline()`` (or until a frame brings the
  deadline forward), then ticks: confirmations and silences happen on time without polling;
- ``forwarder``: moves the outbox to the broker in seq order (``publisher.EventForwarder``);
- ``health``: publishes health every ``health_interval_s``, and saves the detector's learned
  levels and the agent's status (read by ``kerbside-edge status``) in the outbox database (also
  at a clean stop); a restart within ``silence_s`` takes the levels back, so bays with cars
  parked over them go on instead of being learned afresh;
- ``clock``: watches NTP synchronisation, releases held events, updates status;
- ``disk``: while the outbox cannot be written (a full card), retries every ``DISK_RETRY_S``;
- ``watchdog``: systemd's keep-alive (``WATCHDOG=1``), sent from this loop, so a loop that stalls
  is restarted by systemd (only when the unit sets ``WatchdogSec=``).

Saying what it waits for: a broker that cannot be reached (each failed attempt, at most once a
minute, with the reason and how long the oldest event has waited), a serial port that is
missing (the source says so), sensors configured but not heard within ``silence_s`` of the
start, a clock not yet synchronised (every ``WAITING_LOG_S``), a full disk.

A full disk: confirmed changes the outbox cannot take are held in memory, in order, up to
``MAX_UNWRITTEN`` (beyond it the oldest are dropped and counted in ``events_dropped``), and
written as soon as the disk takes them again; nothing already in the outbox is touched.

paho-mqtt runs its network loop on its own thread; its callbacks only cross into this loop with
``call_soon_threadsafe`` (see ``publisher``). On SIGTERM or SIGINT the sources stop first, then
the forwarder gets a bounded time to hand the broker what it will take, then ``online:false``
is published and acknowledged (bounded), then the connection is closed cleanly and the outbox
and capture are closed. Whatever did not make it stays in the outbox for the next start.

Time: a chunk is stamped with the wall clock when it is read, and that stamp is the ``now`` the
detector sees; the capture records the same stamp, so ``replay`` reproduces ``run``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import logging
import signal
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from kerbside.core.checks import ConfigFileError
from kerbside.core.config import ConfigError
from kerbside.core.instants import Instant, parse_instant
from kerbside.core.systemd import Notifier
from kerbside.core.throttle import Throttle
from kerbside.core.version import VERSION
from kerbside.edge.clock import is_synchronised, now_ms
from kerbside.edge.config import EdgeConfig, check_edge_config
from kerbside.edge.detector import Detector
from kerbside.edge.health import PortHealth, health_payloads, status_payload
from kerbside.edge.model import Frame, OccupancyChange
from kerbside.edge.outbox import Outbox, OutboxError
from kerbside.edge.publisher import DEFAULT_WINDOW, EventForwarder, MqttLink
from kerbside.edge.sources.base import BleAdvert, Decoder, Received, SerialChunk, Source
from kerbside.edge.sources.serial import SerialSource
from kerbside.edge.status import DETECTOR_STATE, STATUS_STATE, status_record

if TYPE_CHECKING:
    from kerbside.edge.capture import CaptureWriter

log = logging.getLogger(__name__)

SHUTDOWN_FLUSH_S = 5.0  # at SIGTERM: how long the broker gets to take the backlog
STATUS_ACK_S = 2.0  # and then to acknowledge online:false
CLOCK_CHECK_S = 5.0
MAX_HELD_EVENTS = 50_000  # events held while the clock is unsynchronised (memory bound)
CLOCK_STEP_RESTART_MS = 60_000  # a step this big at synchronisation restarts the detector
MAX_UNWRITTEN = 20_000  # confirmed changes held in memory while the disk is full (~4 MB)
DISK_RETRY_S = 5.0
WAITING_LOG_S = 60.0  # a thing waited for is said again at most this often
NOT_HEARD_LOG_S = 3600.0  # sensors never heard: said at silence_s, then hourly
STATUS_MIN_GAP_S = 5.0  # status saves on link changes, at most this often


def _monotonic_ms() -> int:
    return time.monotonic_ns() // 1_000_000


class AgentError(Exception):
    """The agent cannot go on (it exits non-zero; its supervisor restarts it)."""


class Agent:
    """The gateway agent. ``run(stop)`` until ``stop`` is set; see the module docstring."""

    def __init__(
        self,
        config: EdgeConfig,
        sources: Sequence[Source],
        *,
        capture: CaptureWriter | None = None,
        clock: Callable[[], Instant] = now_ms,
        clock_synced: Callable[[], bool] = is_synchronised,
        window: int = DEFAULT_WINDOW,
        clock_check_s: float = CLOCK_CHECK_S,
        notifier: Notifier | None = None,
    ) -> None:
        self.config = config
        self.notifier = notifier or Notifier({})
        self.clock_check_s = clock_check_s
        self.sources = list(sources)
        self.capture = capture
        self.clock = clock
        self._clock_synced_check = clock_synced
        self.outbox = Outbox(config.outbox.path, config.gateway_id, config.outbox.max_mb)
        self.detector = Detector(config.detector, config.bay_of_sensor)
        self._restore_detector()
        self.decoders: dict[str, Decoder] = {s.src: s.decoder() for s in self.sources}
        self.forwarder = EventForwarder(self.outbox, window)
        self.window = window
        self.link: MqttLink | None = None
        self.started = clock()
        self.clock_synced = False
        # None once events may flow; else the events held until the clock is synchronised,
        # each with the wall-minus-monotonic offset at the time, to correct them for the step.
        self.held: list[tuple[OccupancyChange, int]] | None = (
            [] if config.clock.require_sync else None
        )
        self.held_dropped = 0
        # Confirmed changes the outbox could not take (a full disk), oldest first.
        self.unwritten: list[OccupancyChange] = []
        self.unwritten_dropped = 0
        self.disk_error: str | None = None
        self._disk_warning = Throttle(WAITING_LOG_S)
        self._broker_warning = Throttle(WAITING_LOG_S)
        self._clock_warning = Throttle(WAITING_LOG_S * 5)
        self._save_warning = Throttle(WAITING_LOG_S)
        self.link_since: Instant = self.started
        self.link_error: str | None = None
        self.last_ack: Instant | None = None
        self._not_heard_said: float | None = None
        self._status_saved = 0.0
        self._start_offset = clock() - _monotonic_ms()
        self._deadline_moved = asyncio.Event()
        self._scheduled: Instant | None = None
        self._status_mid: int | None = None
        self._status_acked = asyncio.Event()
        log.info(
            "outbox %s: epoch %s, last seq %d, %d events waiting",
            self.outbox.path,
            self.outbox.epoch,
            self.outbox.last_seq,
            self.outbox.depth,
        )

    # --- the detector's learned levels, kept across restarts ---

    def _restore_detector(self) -> None:
        text = self.outbox.load_state(DETECTOR_STATE)
        if text is None:
            return
        try:
            restored = self.detector.restore(json.loads(text), self.clock())
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("saved detector state unusable, learning afresh: %s", exc)
            return
        log.info("detector: took back the learned levels of %d sensors", restored)

    def save_state(self, *, stopped: bool = False) -> None:
        """The detector's learned levels and the status, in one transaction (no fsync)."""
        now = self.clock()
        self._status_saved = time.monotonic()
        try:
            snapshot = self.detector.snapshot(now)
            status = self.status_record(now, stopped=stopped)
            self.outbox.save_states(
                {
                    DETECTOR_STATE: json.dumps(snapshot, separators=(",", ":")),
                    STATUS_STATE: json.dumps(status, separators=(",", ":")),
                }
            )
        except OutboxError as exc:
            if self._save_warning.ready():
                log.warning("%s (tried again every %g s)", exc, self.config.health_interval_s)

    def status_record(self, now: Instant, *, stopped: bool = False) -> dict[str, object]:
        return status_record(
            gateway_id=self.config.gateway_id,
            version=VERSION,
            now=now,
            started=self.started,
            every_s=self.config.health_interval_s,
            stopped=stopped,
            broker=self.link.address if self.link is not None else "",
            connected=self.link is not None and self.link.connected,
            link_since=self.link_since,
            link_error=self.link_error,
            last_ack=self.last_ack,
            clock_synced=self.clock_synced,
            clock_required=self.config.clock.require_sync,
            held_events=len(self.held or ()),
            unwritten_events=len(self.unwritten),
            disk_error=self.disk_error,
            events_dropped=self.events_dropped,
            unknown_sensors=self.detector.unknown_sensors,
            ports=[
                (
                    src,
                    source.connected,
                    self.decoders[src].bytes_seen,
                    self.decoders[src].bad_frames,
                )
                for src, source in ((s.src, s) for s in self.sources)
            ],
            bay_of_sensor=self.config.bay_of_sensor,
            stats=self.detector.stats,
            published={sid: self.detector.state_of(sid) for sid in self.config.bay_of_sensor},
        )

    def _status_soon(self) -> None:
        """Save the status now if the last save is older than STATUS_MIN_GAP_S (link changes)."""
        if time.monotonic() - self._status_saved >= STATUS_MIN_GAP_S:
            self.save_state()

    # --- input: called on the loop's thread by every source ---

    def received(self, item: Received) -> None:
        if self.capture is not None:
            try:
                if isinstance(item, SerialChunk):
                    self.capture.serial(item.t, item.src, item.data)
                else:
                    self.capture.ble(item.t, item.address, item.rssi, item.mfr)
            except OSError as exc:  # a full card stops the capture, never the detection
                log.error("capture stopped: %s", exc)  # noqa: TRY400  (one line, no traceback)
                self.capture = None
        decoder = self.decoders.get(item.src)
        if decoder is None:
            return
        for frame in decoder.decode(item):
            if not isinstance(frame, Frame):
                continue
            if isinstance(item, BleAdvert):
                self.detector.note_rssi(frame.sensor_id, item.rssi)
            self.commit(self.detector.observe(frame, item.t))
        deadline = self.detector.next_deadline()
        if deadline is not None and (self._scheduled is None or deadline < self._scheduled):
            self._deadline_moved.set()

    def commit(self, changes: list[OccupancyChange]) -> None:
        """Confirmed changes: to disk now (fsynced), or held while the clock is unsynchronised
        or the disk is full. Never raises: a change is never lost without being counted."""
        if not changes:
            return
        if self.held is not None:
            offset = self.clock() - _monotonic_ms()
            self.held.extend((change, offset) for change in changes)
            if len(self.held) > MAX_HELD_EVENTS:
                excess = len(self.held) - MAX_HELD_EVENTS
                del self.held[:excess]
                self.held_dropped += excess
                log.warning("clock still unsynchronised: dropped %d oldest held events", excess)
            return
        self.write(changes)

    def write(self, changes: list[OccupancyChange]) -> None:
        """Number and store ``changes`` behind any that wait in memory for disk space."""
        pending = self.unwritten + changes if self.unwritten else changes
        if not pending:
            return
        try:
            self.outbox.append(pending)
        except OutboxError as exc:
            self._hold_unwritten(pending, exc)
            return
        if self.disk_error is not None:
            log.warning(
                "outbox writable again: stored %d events held in memory", len(self.unwritten)
            )
            self.disk_error = None
            self._disk_warning.reset()
        self.unwritten = []
        self.forwarder.wake()

    def _hold_unwritten(self, pending: list[OccupancyChange], exc: OutboxError) -> None:
        if len(pending) > MAX_UNWRITTEN:
            excess = len(pending) - MAX_UNWRITTEN
            del pending[:excess]
            self.unwritten_dropped += excess
            log.error(
                "outbox still not writable: dropped the %d oldest events held in memory "
                "(%d dropped in all)",
                excess,
                self.unwritten_dropped,
            )
        self.unwritten = pending
        self.disk_error = str(exc.__cause__ or exc)
        if self._disk_warning.ready():
            log.error(
                "%s: holding %d events in memory (at most %d) until the disk takes them; "
                "free space on %s",
                exc,
                len(pending),
                MAX_UNWRITTEN,
                self.outbox.path.parent,
            )

    def release_held(self) -> None:
        """The clock is synchronised: stamp-correct the held events and let them out."""
        held, self.held = self.held or [], None
        now_offset = self.clock() - _monotonic_ms()
        step = now_offset - self._start_offset
        if abs(step) >= CLOCK_STEP_RESTART_MS:
            # The detector's times (last frames, pending confirmations) are on the old clock; a
            # jump forward would make every sensor look silent at once. Start it afresh: each bay
            # is unknown until its next confirmation, which is then published as usual.
            log.warning("clock stepped by %.0f s: restarting detection", step / 1000)
            self.detector = Detector(self.config.detector, self.config.bay_of_sensor)
            self._deadline_moved.set()
        if not held:
            return
        changes = []
        for change, offset in held:
            step = now_offset - offset
            if abs(step) > 1000:  # the clock was stepped since: move the event with it
                change = dataclasses.replace(  # noqa: PLW2901
                    change, ts=change.ts + step, confirmed_ts=change.confirmed_ts + step
                )
            changes.append(change)
        log.info("clock synchronised: releasing %d held events", len(changes))
        self.commit(changes)

    # --- health and status ---

    @property
    def events_dropped(self) -> int:
        return self.outbox.events_dropped + self.held_dropped + self.unwritten_dropped

    @property
    def waiting(self) -> int:
        """Confirmed events not yet acknowledged: on disk, held for the clock, or for disk."""
        return (
            self.outbox.depth
            - self.outbox.pending_acks
            + len(self.held or ())
            + len(self.unwritten)
        )

    def health(self) -> list[bytes]:
        return health_payloads(
            self.config.gateway_id,
            ts=self.clock(),
            uptime_s=(self.clock() - self.started) // 1000,
            outbox_depth=self.waiting,
            events_dropped=self.events_dropped,
            unknown_sensors=self.detector.unknown_sensors,
            ports=[
                PortHealth(src, decoder.bytes_seen, decoder.bad_frames)
                for src, decoder in self.decoders.items()
            ],
            bay_of_sensor=self.config.bay_of_sensor,
            stats=self.detector.stats,
        )

    def status(self, *, online: bool) -> bytes:
        return status_payload(
            self.config.gateway_id,
            online=online,
            ts=self.clock(),
            version=VERSION,
            clock_synced=self.clock_synced,
        )

    def publish_status(self, *, online: bool) -> int | None:
        if self.link is None or not self.link.connected:
            return None
        return self.link.publish("status", self.status(online=online), qos=1, retain=True)

    # --- MQTT link callbacks (already on the loop's thread) ---

    def _connected(self) -> None:
        self.link_since = self.clock()
        self.link_error = None
        self._broker_warning.reset()
        self.publish_status(online=True)
        self.forwarder.connected()
        self._status_soon()

    def _disconnected(self) -> None:
        if self.link is not None and not self.link.connected:
            self.link_since = self.clock()
        self.forwarder.disconnected()
        self._status_soon()

    def _connect_failed(self, reason: str) -> None:
        first = self.link_error is None
        self.link_error = reason
        if self._broker_warning.ready():
            log.warning(
                "mqtt broker %s unreachable (%s); retrying with backoff (1 s doubling to 30 s); %s",
                self.link.address if self.link is not None else "?",
                reason,
                self._waiting_words(),
            )
        if first:
            self._status_soon()

    def _waiting_words(self) -> str:
        """``12 events waiting, the oldest confirmed 5 min ago`` (or ``no events waiting``)."""
        waiting = self.waiting
        if not waiting:
            return "no events waiting"
        oldest: Instant | None = None
        with contextlib.suppress(ValueError):
            text = self.outbox.oldest_confirmed()
            oldest = None if text is None else parse_instant(text)
        for items in (self.held or [], [(c, 0) for c in self.unwritten]):
            if items and (oldest is None or items[0][0].confirmed_ts < oldest):
                oldest = items[0][0].confirmed_ts
        age = "" if oldest is None else f", the oldest confirmed {_ago(self.clock() - oldest)}"
        return f"{waiting} events waiting{age}"

    def _published(self, mids: list[int]) -> None:
        self.last_ack = self.clock()
        if self._status_mid is not None and self._status_mid in mids:
            self._status_acked.set()
        self.forwarder.acknowledged(mids)

    # --- background loops ---

    async def _detector_ticks(self) -> None:
        while True:
            self._scheduled = self.detector.next_deadline()
            timeout = None
            if self._scheduled is not None:
                timeout = max(0.0, (self._scheduled - self.clock()) / 1000)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._deadline_moved.wait()
            self._deadline_moved.clear()
            self.commit(self.detector.tick(self.clock()))

    async def _health(self) -> None:
        while True:
            await asyncio.sleep(self.config.health_interval_s)
            self.save_state()
            self._say_not_heard()
            if self.link is not None and self.link.connected:
                for payload in self.health():
                    self.link.publish("health", payload, qos=0)

    def _say_not_heard(self) -> None:
        """Sensors configured but never heard once ``silence_s`` has passed since the start."""
        if (self.clock() - self.started) / 1000 < self.config.detector.silence_s:
            return
        now = time.monotonic()
        if self._not_heard_said is not None and now - self._not_heard_said < NOT_HEARD_LOG_S:
            return
        stats = self.detector.stats
        silent = [sid for sid in self.config.bay_of_sensor if stats[sid].last_seen is None]
        if not silent:
            return
        self._not_heard_said = now
        shown = ", ".join(silent[:10]) + (
            f" and {len(silent) - 10} more" if len(silent) > 10 else ""
        )
        log.warning(
            "%d of %d configured sensors not heard since the start %s: %s (check the sensor "
            "ids in the config, the serial ports or the BLE range)",
            len(silent),
            len(stats),
            _ago(self.clock() - self.started),
            shown,
        )

    async def _disk(self) -> None:
        while True:
            await asyncio.sleep(DISK_RETRY_S)
            if self.unwritten:
                self.write([])

    async def _watchdog(self, every_s: float) -> None:
        while True:
            self.notifier.watchdog()
            await asyncio.sleep(every_s)

    async def _watch_clock(self) -> None:
        while True:
            synced = await asyncio.to_thread(self._clock_synced_check)
            if synced != self.clock_synced:
                self.clock_synced = synced
                if synced:
                    log.info("system clock is NTP-synchronised")
                elif self.held is not None:
                    log.warning(
                        "system clock is not NTP-synchronised: detecting, but holding events "
                        "back until it is (clock.require_sync)"
                    )
                    self._clock_warning.ready()
                else:
                    log.warning("system clock is not NTP-synchronised")
                self.publish_status(online=True)
                self._status_soon()
            elif not synced and self.held is not None and self._clock_warning.ready():
                log.warning(
                    "still waiting for the system clock to be NTP-synchronised (started %s): "
                    "%d events held; see `timedatectl`",
                    _ago(self.clock() - self.started),
                    len(self.held),
                )
            if synced and self.held is not None:
                self.release_held()
            await asyncio.sleep(self.clock_check_s)

    async def _watch_link(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            if self.link is not None and not self.link.alive:
                raise AgentError("the MQTT network thread died; exiting so that it restarts")

    # --- the whole run ---

    async def run(self, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        self.clock_synced = await asyncio.to_thread(self._clock_synced_check)
        if self.held is not None and not self.clock_synced:
            log.warning("system clock is not NTP-synchronised: holding events back until it is")
            self._clock_warning.ready()  # said: the next reminder comes after the interval
        self.link = MqttLink(
            self.config,
            loop,
            will=self.status(online=False),
            window=self.window,
            on_connected=self._connected,
            on_disconnected=self._disconnected,
            on_published=self._published,
            on_connect_failed=self._connect_failed,
        )
        self.forwarder.attach(self.link)
        self.link.start()
        try:
            async with asyncio.TaskGroup() as tasks:
                # Input side: stopped first, together, so that nothing is detected after the
                # last chunk received (and captured): replay of the capture then agrees.
                inputs = [
                    tasks.create_task(source.run(self.received), name=source.src)
                    for source in self.sources
                ]
                inputs.append(tasks.create_task(self._detector_ticks(), name="detector-ticks"))
                inputs.append(tasks.create_task(self._watch_clock(), name="clock"))
                outputs = [
                    tasks.create_task(self.forwarder.run(), name="forwarder"),
                    tasks.create_task(self._health(), name="health"),
                    tasks.create_task(self._watch_link(), name="mqtt-watch"),
                    tasks.create_task(self._disk(), name="disk"),
                ]
                keepalive = self.notifier.keepalive_s
                if keepalive is not None:
                    outputs.append(tasks.create_task(self._watchdog(keepalive), name="watchdog"))
                self.save_state()
                self.notifier.ready(f"reading {len(self.sources)} sources")
                await stop.wait()
                self.notifier.stopping()
                log.info("stopping: %d events not yet acknowledged", self.waiting)
                for task in inputs:
                    task.cancel()
                await self._flush(loop.time() + SHUTDOWN_FLUSH_S)
                self.save_state(stopped=True)
                for task in outputs:
                    task.cancel()
        finally:
            self.link.stop()
            self.outbox.close()
            if self.capture is not None:
                with contextlib.suppress(OSError):
                    self.capture.close()
        if self.unwritten:
            log.error(
                "stopped with %d events the full disk never took: they are lost (%s)",
                len(self.unwritten),
                self.disk_error,
            )
        log.info("stopped; %d events kept in the outbox for the next start", self.outbox.depth)

    async def _flush(self, deadline: float) -> None:
        """Give the broker what it will take before ``deadline``, then say ``online:false``."""
        loop = asyncio.get_running_loop()
        link = self.link
        assert link is not None
        while link.connected and not self.forwarder.idle and loop.time() < deadline:
            self.forwarder.wake()
            await asyncio.sleep(0.02)
        self._status_mid = self.publish_status(online=False)
        if self._status_mid is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(STATUS_ACK_S):
                    await self._status_acked.wait()
        self.forwarder.flush()


def _ago(ms: int) -> str:
    """``45 s ago``, ``12 min ago``, ``3.5 h ago``."""
    seconds = max(0, ms) / 1000
    if seconds < 120:
        return f"{seconds:.0f} s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min ago"
    return f"{seconds / 3600:.1f} h ago"


def build_sources(config: EdgeConfig, clock: Callable[[], Instant]) -> list[Source]:
    ports = [p.port for p in config.serial]
    for index, port in enumerate(ports):
        if port in ports[:index]:
            raise ConfigError(f"serial[{index}].port: {port} is listed twice")
    sources: list[Source] = [SerialSource(p.port, p.baudrate, clock) for p in config.serial]
    if config.ble.enabled:
        # Imported only when wanted, so a serial-only gateway never loads bleak.
        from kerbside.edge.sources.ble import BleSource, BleSourceError  # noqa: PLC0415

        try:
            sources.append(BleSource(config.ble, clock))
        except BleSourceError as exc:
            raise ConfigError(f"{exc}") from exc
    return sources


async def _run(config: EdgeConfig, capture_path: str | None) -> None:
    capture = None
    if capture_path is not None:
        from kerbside.edge.capture import CaptureWriter  # noqa: PLC0415

        try:
            capture = CaptureWriter(capture_path)
        except OSError as exc:
            raise ConfigError(f"--capture: cannot write {capture_path}: {exc.strerror}") from exc
    agent = Agent(config, build_sources(config, now_ms), capture=capture, notifier=Notifier())
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await agent.run(stop)


def run_main(args: argparse.Namespace) -> int:
    """``kerbside-edge run --config FILE [--capture FILE]``; exit 0 after a clean stop."""
    config, problems = check_edge_config(args.config)
    if config is None:
        raise ConfigFileError(args.config, [p for p in problems if not p.warning])
    for problem in problems:
        log.warning("%s", problem.render(args.config))
    if not config.serial and not config.ble.enabled:
        log.warning("no serial ports and BLE disabled: nothing to read")
    try:
        asyncio.run(_run(config, getattr(args, "capture", None)))
    except OutboxError as exc:  # at start: a full or read-only disk; systemd retries
        log.error("cannot start: %s", exc)  # noqa: TRY400  (one line: the reason is known)
        return 1
    except ExceptionGroup as group:
        failed = group.subgroup(AgentError)
        if failed is None:
            raise
        log.error("%s", failed.exceptions[0])  # noqa: TRY400  (one line: the reason is known)
        return 1
    return 0
