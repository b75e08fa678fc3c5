"""A serial port as a source: pyserial opens and configures it, the event loop reads it.

pyserial sets the line up (baud rate, 8N1, raw mode, an exclusive lock so two agents cannot
share a port); after that the port's file descriptor is registered with the loop
(``add_reader``), so every port is read without a thread and without polling. A read that
fails or hits end-of-file (a USB adapter unplugged, a pseudo-terminal whose other end closed)
closes the port and reopens it by name with capped, jittered backoff; the other ports never
notice.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable

import serial

from kerbside.core.backoff import Backoff
from kerbside.core.instants import Instant
from kerbside.core.throttle import Throttle
from kerbside.edge.kbs1 import Kbs1Parser
from kerbside.edge.model import Frame, Garbage
from kerbside.edge.sources.base import Emit, Received, SerialChunk, Source

log = logging.getLogger(__name__)

READ_SIZE = 4096
WAITING_LOG_S = 60.0


def _reason(exc: Exception) -> str:
    """``No such file or directory`` rather than pyserial's sentence that repeats the port."""
    errno = getattr(exc, "errno", None)
    return os.strerror(errno) if isinstance(errno, int) else str(exc)


class Kbs1Decoder:
    """KBS1 frames out of one serial stream's chunks (one parser per port)."""

    def __init__(self) -> None:
        self._parser = Kbs1Parser()

    @property
    def bytes_seen(self) -> int:
        return self._parser.bytes_seen

    @property
    def bad_frames(self) -> int:
        return self._parser.bad_frames

    def decode(self, item: Received) -> list[Frame | Garbage]:
        if not isinstance(item, SerialChunk):
            return []
        return self._parser.feed(item.data)


class SerialSource(Source):
    """Reads ``port`` at ``baudrate`` until cancelled, reopening it whenever it goes away."""

    def __init__(
        self,
        port: str,
        baudrate: int,
        clock: Callable[[], Instant],
        backoff: Backoff | None = None,
    ) -> None:
        self.port = port
        self.baudrate = baudrate
        self.src = f"serial:{port}"
        self._clock = clock
        self.backoff = backoff or Backoff(first_s=0.5, cap_s=30.0)
        self._connected = False
        self.opens = 0  # successful opens (the first one and every reopen)

    @property
    def connected(self) -> bool:
        return self._connected

    def decoder(self) -> Kbs1Decoder:
        return Kbs1Decoder()

    async def run(self, emit: Emit) -> None:
        missing_since: float | None = None
        said = Throttle(WAITING_LOG_S)
        while True:
            try:
                port = self._open()
            except (serial.SerialException, OSError, ValueError) as exc:
                now = time.monotonic()
                missing_since = missing_since if missing_since is not None else now
                delay = self.backoff.next()
                # At once, then at most once a minute: a missing adapter must not flood the
                # log, nor be forgotten in it.
                if said.ready():
                    waited = now - missing_since
                    since = f" for {waited / 60:.0f} min" if waited >= 60 else ""
                    log.warning(
                        "%s: cannot open%s (%s); waiting for it, retrying every %.0f s or less",
                        self.src,
                        since,
                        _reason(exc),
                        self.backoff.cap_s,
                    )
                await asyncio.sleep(delay)
                continue
            missing_since = None
            said.reset()
            self.backoff.reset()
            self.opens += 1
            self._connected = True
            log.info("%s: open at %d baud", self.src, self.baudrate)
            try:
                reason = await self._read_until_lost(port, emit)
            finally:
                self._connected = False
                port.close()
            delay = self.backoff.next()
            log.warning("%s: lost (%s); reopening in %.1fs", self.src, reason, delay)
            await asyncio.sleep(delay)

    def _open(self) -> serial.Serial:
        return serial.Serial(self.port, self.baudrate, timeout=0, exclusive=True)

    async def _read_until_lost(self, port: serial.Serial, emit: Emit) -> str:
        loop = asyncio.get_running_loop()
        lost: asyncio.Future[str] = loop.create_future()
        fd = port.fileno()

        def readable() -> None:
            try:
                data = os.read(fd, READ_SIZE)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if not lost.done():
                    lost.set_result(exc.strerror or str(exc))
                loop.remove_reader(fd)
                return
            if not data:
                if not lost.done():
                    lost.set_result("end of file")
                loop.remove_reader(fd)
                return
            try:
                emit(SerialChunk(self.src, self._clock(), data))
            except Exception:  # a bug downstream must not stop this port (or the others)
                log.exception("%s: error handling %d bytes", self.src, len(data))

        loop.add_reader(fd, readable)
        try:
            return await lost
        finally:
            loop.remove_reader(fd)
