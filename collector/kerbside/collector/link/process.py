"""The MQTT link with paho in a child process of its own (``link.child`` says why).

MQTT v5 with a fixed client id, ``clean_start=False`` and a session expiry (or, with
``mqtt.protocol: "3.1.1"``, a persistent ``clean_session=False`` session), so the broker keeps
our subscriptions and queues the gateways' QoS 1 messages while the collector is down. Acks are
manual: a message is acknowledged only after its batch is committed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import subprocess
import sys
from typing import Any

from kerbside.collector.config import MqttConfig
from kerbside.collector.link import LinkEvents, Message
from kerbside.collector.link.child import (
    ACK,
    CONNECTION,
    MESSAGE,
    PUBLISH,
    PUBLISHED,
    STOP,
    FrameReader,
    encode_frame,
)
from kerbside.core.backoff import Backoff

log = logging.getLogger(__name__)


class ProcessLink:
    """The collector's side of its MQTT connection: paho runs in a child process (see
    ``link.child``); this starts it, hands its messages to the event loop and sends it acks and
    publications, batched once per turn of the loop."""

    def __init__(
        self,
        config: MqttConfig,
        loop: asyncio.AbstractEventLoop,
        backoff: Backoff | None = None,
    ) -> None:
        self.config = config
        self._loop = loop
        self._events: LinkEvents | None = None
        self._connected = False
        self._generation = 0
        self._token = 0
        self._pending: list[tuple[Any, ...]] = []
        self._outgoing = bytearray()
        self._writing = False
        self._reader = FrameReader()
        self._channel: socket.socket | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._stopping = False
        self._restart: asyncio.TimerHandle | None = None
        # before starting a child that died; reset when a child is connected
        self.backoff = backoff or Backoff(1.0, 30.0)

    @property
    def connected(self) -> bool:
        return self._connected

    def start(self, events: LinkEvents) -> None:
        """Start the child (it connects and subscribes by itself); what it reports goes to
        ``events``."""
        self._events = events
        self._spawn()

    def _spawn(self) -> None:
        ours, theirs = socket.socketpair()
        try:
            self._process = subprocess.Popen(  # noqa: S603 (our own module, no shell)
                [
                    sys.executable,
                    "-m",
                    "kerbside.collector.link.child",
                    "--fd",
                    str(theirs.fileno()),
                    "--log-level",
                    logging.getLevelName(logging.getLogger().getEffectiveLevel()),
                ],
                pass_fds=[theirs.fileno()],
            )
        finally:
            theirs.close()
        ours.setblocking(False)
        self._channel = ours
        self._reader = FrameReader()
        self._outgoing = bytearray(encode_frame([("config", self.config, self._generation)]))
        self._write()
        self._loop.add_reader(ours.fileno(), self._readable)

    def stop(self) -> None:
        """Flush the acks, let the child leave the broker, wait for it (5 s at most)."""
        self._stopping = True
        if self._restart is not None:
            self._restart.cancel()
        channel, process = self._channel, self._process
        if channel is None or process is None:
            return
        self._pending.append((STOP,))
        self._flush()
        self._loop.remove_reader(channel.fileno())
        if self._writing:
            self._loop.remove_writer(channel.fileno())
        with contextlib.suppress(OSError):
            channel.settimeout(5)  # blocking again, for the last frame
            channel.sendall(self._outgoing)
        self._outgoing.clear()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            log.warning("MQTT link process did not stop in 5 s: killing it")
            process.kill()
            process.wait()
        channel.close()
        self._channel = None
        self._connected = False

    # -- called from the event loop ------------------------------------------------------------

    def ack(self, message: Message) -> None:
        """Acknowledge a committed message (only on the connection it came in on: after a
        reconnect the broker redelivers it, and the store's de-duplication absorbs the copy)."""
        if message.qos > 0 and message.generation == self._generation and self._connected:
            self._queue((ACK, message.mid, message.qos, message.generation))

    def publish(self, topic: str, payload: str | bytes, qos: int, retain: bool = False) -> int:
        """Hand a publication to the child; the number returned comes back to
        ``on_published`` when the broker has it (QoS 1)."""
        self._token += 1
        self._queue((PUBLISH, self._token, topic, payload, qos, retain))
        return self._token

    def _queue(self, item: tuple[Any, ...]) -> None:
        if not self._pending:
            self._loop.call_soon(self._flush)
        self._pending.append(item)

    def _flush(self) -> None:
        if not self._pending or self._channel is None:
            return
        self._outgoing += encode_frame(self._pending)
        self._pending = []
        self._write()

    def _write(self) -> None:
        channel = self._channel
        if channel is None:
            return
        try:
            sent = channel.send(self._outgoing)
        except BlockingIOError:
            sent = 0
        except OSError:
            return  # the child is gone: _readable sees the end of file
        del self._outgoing[:sent]
        if self._outgoing and not self._writing:
            self._writing = True
            self._loop.add_writer(channel.fileno(), self._writable)

    def _writable(self) -> None:
        self._write()
        if not self._outgoing and self._writing and self._channel is not None:
            self._writing = False
            self._loop.remove_writer(self._channel.fileno())

    def _readable(self) -> None:
        channel = self._channel
        assert channel is not None
        try:
            data = channel.recv(1 << 20)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._child_gone()
            return
        for items in self._reader.feed(data):
            self._dispatch(items)

    def _dispatch(self, items: list[tuple[Any, ...]]) -> None:
        events = self._events
        assert events is not None
        messages: list[Message] = []
        make = Message._make
        for item in items:
            kind = item[0]
            if kind == MESSAGE:
                messages.append(make(item[1]))
                continue
            if messages:  # in order: a connection change applies to what follows it
                events.messages(messages)
                messages = []
            if kind == PUBLISHED:
                events.published(item[1])
            elif kind == CONNECTION:
                self._generation = max(self._generation, item[2])
                self._connected = item[1]
                if item[1]:
                    self.backoff.reset()
                events.connection(item[1])
        if messages:
            events.messages(messages)

    def _child_gone(self) -> None:
        """The child died (it never exits by itself while we run): start another."""
        channel, process = self._channel, self._process
        self._channel = None
        if channel is not None:
            self._loop.remove_reader(channel.fileno())
            if self._writing:
                self._loop.remove_writer(channel.fileno())
                self._writing = False
            channel.close()
        code = process.wait() if process is not None else None
        self._pending = []
        if self._stopping:
            return
        delay = self.backoff.next()
        log.error("MQTT link process exited (code %s): starting another in %.1f s", code, delay)
        if self._connected and self._events is not None:
            self._connected = False
            self._events.connection(False)
        self._generation += 1  # nothing received before can be acked on the next connection
        self._restart = self._loop.call_later(delay, self._spawn)
