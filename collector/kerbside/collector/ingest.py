"""The collector's MQTT adapter, and the checks of gateway status and health payloads.

MQTT v5 with a fixed client id, ``clean_start=False`` and a session expiry (or, with
``mqtt.protocol: "3.1.1"``, a persistent ``clean_session=False`` session), so the broker keeps
our subscriptions and queues the gateways' QoS 1 messages while the collector is down. Acks are
manual: the service acks a message only after its batch is committed. paho itself runs in a
child process (``broker_link``, which says why); ``MqttLink`` is its handle on the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import subprocess
import sys
from collections.abc import Callable
from typing import Any, NamedTuple

from kerbside.collector.broker_link import (
    ACK,
    CONNECTION,
    MESSAGE,
    PUBLISH,
    PUBLISHED,
    STOP,
    FrameReader,
    encode_frame,
)
from kerbside.collector.config import MqttConfig
from kerbside.collector.records import Rejected, decode_payload
from kerbside.core.ids import is_valid_id
from kerbside.core.instants import InstantError, parse_instant

log = logging.getLogger(__name__)


class Message(NamedTuple):
    """One received PUBLISH, as the event loop sees it (a tuple: thousands a second)."""

    topic: str
    payload: bytes
    qos: int
    mid: int
    generation: int  # connection it arrived on: an ack is only valid on that connection
    received: int  # epoch ms at arrival


class MqttLink:
    """The collector's side of its MQTT connection: paho runs in a child process (see
    ``broker_link``); this starts it, hands its messages to the event loop and sends it acks
    and publications, batched once per turn of the loop."""

    def __init__(
        self,
        config: MqttConfig,
        loop: asyncio.AbstractEventLoop,
        on_messages: Callable[[list[Message]], None],
        on_published: Callable[[int], None] | None = None,
        on_connection: Callable[[bool], None] | None = None,
    ) -> None:
        self.config = config
        self._loop = loop
        self._on_messages = on_messages
        self._on_published = on_published
        self._on_connection = on_connection
        self.connected = False
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
        self._backoff = 1.0  # before starting a child that died; doubles, reset on connection

    def start(self) -> None:
        """Start the child (it connects and subscribes by itself)."""
        ours, theirs = socket.socketpair()
        try:
            self._process = subprocess.Popen(  # noqa: S603 (our own module, no shell)
                [
                    sys.executable,
                    "-m",
                    "kerbside.collector.broker_link",
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
        self.connected = False

    # -- called from the event loop ------------------------------------------------------------

    def ack(self, message: Message) -> None:
        """Acknowledge a committed message (only on the connection it came in on: after a
        reconnect the broker redelivers it, and the store's de-duplication absorbs the copy)."""
        if message.qos > 0 and message.generation == self._generation and self.connected:
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
        messages: list[Message] = []
        make = Message._make
        for item in items:
            kind = item[0]
            if kind == MESSAGE:
                messages.append(make(item[1]))
                continue
            if messages:  # in order: a connection change applies to what follows it
                self._on_messages(messages)
                messages = []
            if kind == PUBLISHED:
                if self._on_published is not None:
                    self._on_published(item[1])
            elif kind == CONNECTION:
                self._generation = max(self._generation, item[2])
                self.connected = item[1]
                if item[1]:
                    self._backoff = 1.0
                if self._on_connection is not None:
                    self._on_connection(item[1])
        if messages:
            self._on_messages(messages)

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
        log.error(
            "MQTT link process exited (code %s): starting another in %s s", code, self._backoff
        )
        if self.connected:
            self.connected = False
            if self._on_connection is not None:
                self._on_connection(False)
        self._generation += 1  # nothing received before can be acked on the next connection
        self._restart = self._loop.call_later(self._backoff, self.start)
        self._backoff = min(self._backoff * 2, 30.0)


# -- gateway status and health payloads ---------------------------------------------------


def _decode(payload: bytes) -> dict[str, Any]:
    data = decode_payload(payload)
    if "v" not in data:
        raise Rejected("schema", "required", "v")
    version = data["v"]
    if version != 1 or isinstance(version, bool):
        reason = "unknown_version" if isinstance(version, int) else "schema"
        raise Rejected(reason, f"version {version!r} is not understood", "v")
    return data


def _common(data: dict[str, Any], topic_gateway: str) -> None:
    gateway_id = data.get("gateway_id")
    if not is_valid_id(gateway_id):
        raise Rejected("schema", "gateway_id is not an id", "gateway_id")
    if gateway_id != topic_gateway:
        raise Rejected("gateway_mismatch", "gateway_id differs from the topic's", "gateway_id")
    try:
        parse_instant(data.get("ts"))  # type: ignore[arg-type]
    except InstantError as exc:
        raise Rejected("schema", "ts is not an instant", "ts") from exc


def check_status(payload: bytes, topic_gateway: str) -> dict[str, Any]:
    data = _decode(payload)
    _common(data, topic_gateway)
    if not isinstance(data.get("online"), bool):
        raise Rejected("schema", "online is not a boolean", "online")
    return data


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_health(payload: bytes, topic_gateway: str) -> dict[str, Any]:
    data = _decode(payload)
    _common(data, topic_gateway)
    for key in ("outbox_depth", "events_dropped", "unknown_sensors", "uptime_s"):
        if key in data and not _is_int(data[key]):
            raise Rejected("schema", f"{key} is not an integer", key)
    sensors = data.get("sensors", [])
    if not isinstance(sensors, list):
        raise Rejected("schema", "sensors is not a list", "sensors")
    for i, sensor in enumerate(sensors):
        if not isinstance(sensor, dict) or not is_valid_id(sensor.get("sensor_id")):
            raise Rejected("schema", "sensor_id is not an id", f"sensors[{i}].sensor_id")
        for key in ("battery_mv", "frames", "lost_frames", "duplicates", "rssi"):
            value = sensor.get(key)
            if value is not None and not _is_int(value):
                raise Rejected("schema", f"{key} is not an integer", f"sensors[{i}].{key}")
        temp = sensor.get("temp_c")
        if temp is not None and (isinstance(temp, bool) or not isinstance(temp, int | float)):
            raise Rejected("schema", "temp_c is not a number", f"sensors[{i}].temp_c")
    return data
