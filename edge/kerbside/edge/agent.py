"""``kerbside-edge run``: sensors in, confirmed occupancy events out, nothing lost on the way.

Concurrency: one asyncio loop owns every piece of state (parsers, detector, outbox, counters).
Its background loops run under one ``asyncio.TaskGroup``, each task named:

- ``serial:/dev/...`` (one per port; a BLE source alike): read, stamp, hand to ``received``;
- ``detector-ticks``: sleeps until ``detector.next_deadline()`` (or until a frame brings the
  deadline forward), then ticks: confirmations and silences happen on time without polling;
- ``forwarder``: moves the outbox to the broker in seq order (``publisher.EventForwarder``);
- ``health``: publishes health every ``health_interval_s``, and saves the detector's learned
  levels in the outbox database (also at a clean stop); a restart within ``silence_s`` takes them
  back, so bays with cars parked over them go on instead of being learned afresh;
- ``clock``: watches NTP synchronisation, releases held events, updates status.

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

from kerbside.core.config import ConfigError
from kerbside.core.instants import Instant
from kerbside.core.version import VERSION
from kerbside.edge.clock import is_synchronised, now_ms
from kerbside.edge.config import EdgeConfig, load_edge_config
from kerbside.edge.detector import Detector
from kerbside.edge.health import PortHealth, health_payloads, status_payload
from kerbside.edge.model import Frame, OccupancyChange
from kerbside.edge.outbox import Outbox, OutboxError
from kerbside.edge.publisher import DEFAULT_WINDOW, EventForwarder, MqttLink
from kerbside.edge.sources.base import BleAdvert, Decoder, Received, SerialChunk, Source
from kerbside.edge.sources.serial import SerialSource

if TYPE_CHECKING:
    from kerbside.edge.capture import CaptureWriter

log = logging.getLogger(__name__)

SHUTDOWN_FLUSH_S = 5.0  # at SIGTERM: how long the broker gets to take the backlog
STATUS_ACK_S = 2.0  # and then to acknowledge online:false
CLOCK_CHECK_S = 5.0
MAX_HELD_EVENTS = 50_000  # events held while the clock is unsynchronised (memory bound)
DETECTOR_STATE = "detector"  # key of the detector's snapshot in the outbox's state table
CLOCK_STEP_RESTART_MS = 60_000  # a step this big at synchronisation restarts the detector


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
    ) -> None:
        self.config = config
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

    def save_detector(self) -> None:
        try:
            snapshot = self.detector.snapshot(self.clock())
            self.outbox.save_state(DETECTOR_STATE, json.dumps(snapshot, separators=(",", ":")))
        except OutboxError as exc:
            log.warning("%s", exc)

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
        """Confirmed changes: to disk now (fsynced), or held while the clock is unsynchronised."""
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
        self.outbox.append(changes)
        self.forwarder.wake()

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
        return self.outbox.events_dropped + self.held_dropped

    def health(self) -> list[bytes]:
        return health_payloads(
            self.config.gateway_id,
            ts=self.clock(),
            uptime_s=(self.clock() - self.started) // 1000,
            outbox_depth=self.outbox.depth - self.outbox.pending_acks + len(self.held or ()),
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
        self.publish_status(online=True)
        self.forwarder.connected()

    def _published(self, mids: list[int]) -> None:
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
            self.save_detector()
            if self.link is not None and self.link.connected:
                for payload in self.health():
                    self.link.publish("health", payload, qos=0)

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
                else:
                    log.warning("system clock is not NTP-synchronised")
                self.publish_status(online=True)
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
        self.link = MqttLink(
            self.config,
            loop,
            will=self.status(online=False),
            window=self.window,
            on_connected=self._connected,
            on_disconnected=self.forwarder.disconnected,
            on_published=self._published,
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
                ]
                await stop.wait()
                log.info("stopping: %d events not yet acknowledged", self.outbox.depth)
                for task in inputs:
                    task.cancel()
                self.save_detector()
                await self._flush(loop.time() + SHUTDOWN_FLUSH_S)
                for task in outputs:
                    task.cancel()
        finally:
            self.link.stop()
            self.outbox.close()
            if self.capture is not None:
                with contextlib.suppress(OSError):
                    self.capture.close()
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
        self.outbox.flush_acks()


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

        capture = CaptureWriter(capture_path)
    agent = Agent(config, build_sources(config, now_ms), capture=capture)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await agent.run(stop)


def run_main(args: argparse.Namespace) -> int:
    """``kerbside-edge run --config FILE [--capture FILE]``; exit 0 after a clean stop."""
    config = load_edge_config(args.config)
    if not config.serial and not config.ble.enabled:
        log.warning("no serial ports and BLE disabled: nothing to read")
    try:
        asyncio.run(_run(config, getattr(args, "capture", None)))
    except ExceptionGroup as group:
        failed = group.subgroup(AgentError)
        if failed is None:
            raise
        log.error("%s", failed.exceptions[0])  # noqa: TRY400  (one line: the reason is known)
        return 1
    return 0
