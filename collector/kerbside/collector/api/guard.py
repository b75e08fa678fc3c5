"""The HTTP server's guard against clients that hold connections: a limit on open connections and
a deadline for a request's head.

uvicorn has neither a deadline for a request's head (its keep-alive timer only runs between
requests, and restarts at every byte) nor a limit that counts connections still sending one (its
``limit_concurrency`` is checked once the head is in). So a client that sends half a request and
waits holds a connection and its file descriptor for ever, and a thousand of them leave none for
``/healthz``, the broker link or the store. ``guarded_protocol`` wraps uvicorn's HTTP protocol:

- a connection whose request head (request line and headers) is not in ``header_timeout_s``
  after the connection opened, or after the previous response was sent, is closed (uvicorn's
  ``timeout_keep_alive``, 5 s, closes an idle one sooner);
- at ``max_connections`` open, a new connection closes the oldest one still sending its head (a
  real client sends its head at once, so it is an idle or hostile one), or, if every connection is
  busy with a request, is itself answered 503 and closed;
- what it closed is logged at once, then at most once a minute with the count.

The loop's own errors (a listener out of file descriptors) are quietened by ``loop_errors.py``.
"""

from __future__ import annotations

import asyncio
import logging
import resource
from collections import OrderedDict
from typing import Any

from kerbside.core.throttle import Throttle

log = logging.getLogger("kerbside.collector.api")

# File descriptors kept for everything but HTTP clients (the store, the broker link, InfluxDB,
# the threads' own store connections, logs), out of the process's limit; and the connections the
# loop may accept in one go (the listen backlog).
RESERVED_FDS = 100
ACCEPT_BACKLOG = 128
# Connections open beyond the limit at worst: the loop accepts a backlog's worth in one pass; the
# guard sees them two passes later (a task makes each one's transport, which then reports it);
# and one the guard closes lets go of its descriptor a pass after that. Three bursts in flight.
ACCEPT_IN_FLIGHT = 3 * ACCEPT_BACKLOG
SAY_EVERY_S = 60.0
_BUSY = (
    b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n"
    b"connection: close\r\ncontent-length: 62\r\n\r\n"
    b'{"field":null,"detail":"too many connections; try again soon"}'
)


def connection_limit(wanted: int) -> int:
    """``wanted``, or less if the process may not open that many files (with RESERVED_FDS kept
    for the rest of the collector)."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return wanted
    return max(1, min(wanted, soft - RESERVED_FDS - ACCEPT_IN_FLIGHT))


class ConnectionGuard:
    """What the server's connections share: the open ones, and those still sending a head
    (oldest first) with their deadlines."""

    def __init__(self, max_connections: int, header_timeout_s: float) -> None:
        self.max_connections = max_connections
        self.header_timeout_s = header_timeout_s
        self.open: set[Any] = set()
        self.waiting: OrderedDict[Any, asyncio.TimerHandle] = OrderedDict()
        self.closed = {"evicted": 0, "timed_out": 0, "refused": 0}  # since last said
        self.totals = dict.fromkeys(self.closed, 0)
        self._say = Throttle(SAY_EVERY_S)

    def opened(self, conn: Any) -> bool:
        """A new connection; False if it was refused (the limit, and no one to evict)."""
        self.open.add(conn)
        self.wait(conn)
        while len(self.open) > self.max_connections:
            oldest = next((c for c in self.waiting if c is not conn), None)
            if oldest is None:
                self._close(conn, "refused", _BUSY)
                return False
            self._close(oldest, "evicted")
        return True

    def wait(self, conn: Any) -> None:
        """``conn`` begins a request: its head must be in by the deadline."""
        if conn not in self.waiting:
            loop = asyncio.get_running_loop()
            self.waiting[conn] = loop.call_later(self.header_timeout_s, self._late, conn)

    def head_in(self, conn: Any) -> None:
        timer = self.waiting.pop(conn, None)
        if timer is not None:
            timer.cancel()

    def lost(self, conn: Any) -> None:
        self.head_in(conn)
        self.open.discard(conn)

    def _late(self, conn: Any) -> None:
        self.waiting.pop(conn, None)
        self._close(conn, "timed_out")

    def _close(self, conn: Any, why: str, answer: bytes = b"") -> None:
        self.lost(conn)
        transport = getattr(conn, "transport", None)
        if transport is not None and not transport.is_closing():
            if answer:
                transport.write(answer)
                transport.close()
            else:
                transport.abort()  # nothing to say to a client that never finished asking
        self.closed[why] += 1
        self.totals[why] += 1
        if self._say.ready():
            evicted, timed_out, refused = self.closed.values()
            log.warning(
                "HTTP connections: closed %d still sending their request when %d were open (the"
                " limit), %d that sent no complete request in %.0f s, and refused %d",
                evicted,
                self.max_connections,
                timed_out,
                self.header_timeout_s,
                refused,
            )
            self.closed = dict.fromkeys(self.closed, 0)


def _base_protocol() -> type[asyncio.Protocol]:
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol  # noqa: PLC0415
    except ImportError:  # httptools not installed: uvicorn's pure-Python parser
        from uvicorn.protocols.http.h11_impl import H11Protocol  # noqa: PLC0415

        return H11Protocol
    return HttpToolsProtocol


def guarded_protocol(guard: ConnectionGuard) -> type[asyncio.Protocol]:
    """uvicorn's HTTP protocol class with ``guard`` watching each connection (pass it as
    ``uvicorn.Config(http=...)``)."""
    base: Any = _base_protocol()

    class GuardedHttp(base):  # type: ignore[misc]
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            super().connection_made(transport)
            guard.opened(self)

        def data_received(self, data: bytes) -> None:
            before = self.cycle
            if before is None or before.response_complete:
                guard.wait(self)  # a keep-alive connection's next request has begun
            super().data_received(data)
            if self.cycle is not before:  # uvicorn starts a cycle once the head is in
                guard.head_in(self)

        def on_response_complete(self) -> None:
            super().on_response_complete()
            idle = self.cycle is None or self.cycle.response_complete
            if idle and not self.transport.is_closing():
                # ready for the next request: its head is due from now (a client may have sent
                # part of it already, while this response was still on its way)
                guard.wait(self)

        def connection_lost(self, exc: Exception | None) -> None:
            guard.lost(self)
            super().connection_lost(exc)

    return GuardedHttp


class QuietRepeats(logging.Filter):
    """For uvicorn's own log: each message (by its template) passes once, then at most once a
    minute, saying how many were held back (a client sending garbage gets "Invalid HTTP request
    received." per request)."""

    def __init__(self) -> None:
        super().__init__()
        self._kinds: dict[str, tuple[Throttle, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        key = str(record.msg)
        throttle, held = self._kinds.get(key, (Throttle(SAY_EVERY_S), 0))
        if throttle.ready():
            if held:
                record.msg = f"{record.msg} (and {held} more like it since last said)"
            self._kinds[key] = (throttle, 0)
            return True
        self._kinds[key] = (throttle, held + 1)
        return False
