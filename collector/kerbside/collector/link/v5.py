"""The MQTT v5 link in the collector's own event loop: ``mqtt5`` codes the packets, asyncio moves
the bytes.

paho costs about 100 us a message in Python (select, three reads, a message object, the ack), so
it ran in a process of its own (``link.process``) and every batch was pickled across a socket
pair. ``mqtt5`` (Rust, no I/O) reads a PUBLISH in under a microsecond; here a received chunk is
parsed in one pass and its messages handed to the batcher as one list, and the acks of a batch go
out in one write. ``link.process`` (paho) stays for ``mqtt.protocol: "3.1.1"`` brokers.

The session: a fixed client id, ``clean_start=False`` and a session expiry, so the broker keeps
our subscriptions and queues the gateways' QoS 1 messages while the collector is down;
``receive_maximum`` bounds what it sends us unacknowledged. A message is acknowledged (PUBACK)
only when the collector says its batch is committed, and only on the connection it came in on.
Publications are QoS 1 with at most the broker's receive maximum in flight; the collector's outbox
sends again whatever was not acknowledged when a connection drops. PINGREQ keeps an idle
connection alive and finds a dead one. A lost connection is tried again after a capped, jittered
backoff. The subscriptions are given (``$share/<group>/...`` filters for several collectors).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import ssl
import time
from collections import deque
from collections.abc import Sequence
from enum import Enum

import mqtt5

from kerbside.collector.config import MqttConfig
from kerbside.collector.errors import CollectorError
from kerbside.collector.link import LinkEvents, Message
from kerbside.core.backoff import Backoff
from kerbside.core.throttle import Throttle

log = logging.getLogger(__name__)

GATEWAY_KINDS = ("status", "events", "health")
CONNECT_TIMEOUT_S = 10.0
_SUBSCRIBE_ID = 1  # the packet id of our one SUBSCRIBE per connection
_PUBLISH_IDS = 65535
# The largest packet we let the broker send us: bigger payloads are refused by the collector
# anyway, and one must not fill our memory (the broker drops it instead).
MAX_PACKET_BYTES = 1024 * 1024


def gateway_filters(config: MqttConfig, share_group: str | None = None) -> list[str]:
    """What the collector subscribes to. With ``share_group`` (``mqtt.shared_group``), as one of
    a group of collectors the broker shares the gateways' events between (each event reaches one
    of them); statuses and health reports, small and periodic, reach every collector, and the
    one that holds the maintenance alerts' lease acts on them."""
    root = config.topic_root.rstrip("/")
    share_group = share_group or config.shared_group
    return [
        f"$share/{share_group}/{root}/gw/+/{kind}"
        if share_group is not None and kind == "events"
        else f"{root}/gw/+/{kind}"
        for kind in GATEWAY_KINDS
    ]


class LinkError(CollectorError):
    """The MQTT connection failed in a way the log should name."""


class BrokerRefused(LinkError):  # noqa: N818 (the broker's verdict, named for the log)
    """The broker answered CONNECT with a failure reason code."""


class ProtocolFault(LinkError):  # noqa: N818
    """The broker sent bytes that are not MQTT v5, or a packet out of place."""


class Phase(Enum):
    IDLE = "idle"  # not started
    CONNECTING = "connecting"  # TCP, CONNECT sent, waiting for CONNACK
    CONNECTED = "connected"
    WAITING = "waiting"  # between attempts (backoff)
    STOPPED = "stopped"


class _Wire(asyncio.Protocol):
    """One TCP connection: bytes to the link, the end of the connection to a future."""

    def __init__(self, link: V5Link) -> None:
        self._link = link
        self.closed: asyncio.Future[Exception | None] = asyncio.get_running_loop().create_future()

    def data_received(self, data: bytes) -> None:
        self._link._received(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(exc)


class V5Link:
    """``link.Transport`` over MQTT v5 on the event loop."""

    def __init__(
        self,
        config: MqttConfig,
        *,
        subscriptions: Sequence[str] | None = None,
        backoff: Backoff | None = None,
    ) -> None:
        self.config = config
        self.subscriptions = list(subscriptions or gateway_filters(config))
        self.phase = Phase.IDLE
        self._backoff = backoff or Backoff(1.0, 30.0)
        self._events: LinkEvents | None = None
        self._task: asyncio.Task[None] | None = None
        self._transport: asyncio.Transport | None = None
        self._connack: asyncio.Future[mqtt5.ConnAckPacket] | None = None
        self._generation = 0
        self._subscribed_generation = -1  # the connection whose SUBACK granted every filter
        self._buffer = b""
        self._out: list[bytes] = []
        self._flush_scheduled = False
        self._token = 0
        self._next_id = 0
        self._inflight: dict[int, int] = {}  # packet id -> token
        self._waiting: deque[tuple[int, str, bytes, bool]] = deque()
        self._window = 65535  # the broker's receive maximum, from its CONNACK
        self._keepalive_s = float(config.keepalive_s)
        self._last_sent = 0.0
        self._last_heard = 0.0
        self._unreachable = Throttle(60.0)

    @property
    def connected(self) -> bool:
        return self.phase is Phase.CONNECTED

    @property
    def subscribed(self) -> bool:
        """Connected, and the broker granted every subscription on this connection (from then
        on a gateway's message reaches us even on a session that was new)."""
        return self.connected and self._subscribed_generation == self._generation

    # -- the Transport -----------------------------------------------------------------------

    def start(self, events: LinkEvents) -> None:
        self._events = events
        self._task = asyncio.get_running_loop().create_task(self._run(), name="mqtt-link")

    def stop(self) -> None:
        """Send the acks given so far and a DISCONNECT (the session stays at the broker)."""
        if self.phase is Phase.CONNECTED:
            self._write(mqtt5.DisconnectPacket().write())
            self._flush()
        self.phase = Phase.STOPPED
        if self._transport is not None:
            self._transport.close()
        if self._task is not None:
            self._task.cancel()

    def ack(self, message: Message) -> None:
        if message.qos and message.generation == self._generation and self.connected:
            self._write(mqtt5.PubAckPacket(message.mid).write())

    def publish(self, topic: str, payload: str | bytes, qos: int, retain: bool = False) -> int:
        """QoS 0 goes at once (or not at all while disconnected); QoS 1 within the broker's
        window, its token reported to ``LinkEvents.published`` on PUBACK. Nothing is kept over a
        lost connection: the outbox sends again what was not acknowledged."""
        self._token += 1
        if not self.connected:
            return self._token
        body = payload.encode() if isinstance(payload, str) else payload
        if qos == 0:
            self._write(mqtt5.PublishPacket(topic, body, retain=retain).write())
        else:
            self._waiting.append((self._token, topic, body, retain))
            self._send_waiting()
        return self._token

    # -- connections ---------------------------------------------------------------------------

    async def _run(self) -> None:
        config = self.config
        while self.phase is not Phase.STOPPED:
            self.phase = Phase.CONNECTING
            try:
                await self._connection()
            except (OSError, TimeoutError, LinkError) as exc:
                if isinstance(exc, LinkError) or self._unreachable.ready():
                    log.warning(
                        "broker %s:%s %s; retrying with backoff (%g s doubling to %g s)",
                        config.host,
                        config.port,
                        str(exc) if isinstance(exc, LinkError) else f"unreachable ({_reason(exc)})",
                        self._backoff.first_s,
                        self._backoff.cap_s,
                    )
            finally:
                self._lost()
            if self.phase is Phase.STOPPED:
                return
            self.phase = Phase.WAITING
            await asyncio.sleep(self._backoff.next())

    async def _connection(self) -> None:
        """One connection, from TCP to its end."""
        config = self.config
        loop = asyncio.get_running_loop()
        context = None
        if config.tls is not None:
            context = ssl.create_default_context(cafile=str(config.tls.ca))
        self._buffer = b""
        self._connack = loop.create_future()
        transport, wire = await asyncio.wait_for(
            loop.create_connection(lambda: _Wire(self), config.host, config.port, ssl=context),
            CONNECT_TIMEOUT_S,
        )
        self._transport = transport
        self._last_heard = self._last_sent = time.monotonic()
        password = None
        if config.password_file is not None:
            password = config.password_file.read_text(encoding="utf-8").strip().encode()
        self._write(
            mqtt5.ConnectPacket(
                config.client_id,
                username=config.username,
                password=password,
                clean_start=False,
                keep_alive=config.keepalive_s,
                session_expiry_interval=config.session_expiry_s,
                receive_max=config.receive_maximum,
                max_packet_size=MAX_PACKET_BYTES,
            ).write()
        )
        self._flush()
        await asyncio.wait(
            (self._connack, wire.closed), timeout=CONNECT_TIMEOUT_S, return_when="FIRST_COMPLETED"
        )
        if not self._connack.done():
            if wire.closed.done():
                raise LinkError("closed the connection before its CONNACK")
            raise LinkError(f"sent no CONNACK in {CONNECT_TIMEOUT_S:g} s")
        connack = self._connack.result()
        if connack.reason_code != mqtt5.ConnAckReasonCode.SUCCESS:
            detail = f": {connack.reason_str}" if connack.reason_str else ""
            raise BrokerRefused(f"refused the connection: {connack.reason_code.name}{detail}")
        self._backoff.reset()
        self._unreachable = Throttle(60.0)
        # PINGREQ when we have sent nothing for 3/4 of the keep-alive; the broker is gone when
        # we have heard nothing for 1.5 of it (a PINGRESP answers each PINGREQ)
        while not wire.closed.done():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(wire.closed), self._keepalive_s / 4)
            now = time.monotonic()
            if now - self._last_heard > self._keepalive_s * 1.5:
                transport.abort()
                raise LinkError(f"no word from the broker for {self._keepalive_s * 1.5:g} s")
            if now - self._last_sent > self._keepalive_s * 0.75:
                self._write(mqtt5.PingReqPacket().write())
        exc = wire.closed.result()
        if self.phase is not Phase.STOPPED:
            log.warning("disconnected from broker: %s", _reason(exc) if exc else "closed by it")

    def _lost(self) -> None:
        """The connection ended (or never came up)."""
        was_up = self.phase is Phase.CONNECTED
        if self._transport is not None:
            self._transport.abort()
            self._transport = None
        if self._connack is not None and not self._connack.done():
            self._connack.cancel()
        self._out.clear()
        self._inflight.clear()
        self._waiting.clear()
        if self.phase is not Phase.STOPPED:
            self.phase = Phase.WAITING
        if was_up and self._events is not None:
            self._events.connection(False)

    # -- bytes in ------------------------------------------------------------------------------

    def _received(self, data: bytes) -> None:
        self._last_heard = time.monotonic()
        buffer = self._buffer + data if self._buffer else data
        view = memoryview(buffer)
        size = len(buffer)
        pos = 0
        batch: list[Message] = []
        generation = self._generation
        received = int(time.time() * 1000)
        publish = mqtt5.PublishPacket
        try:
            while pos < size:
                try:
                    packet, used = mqtt5.read(view[pos:])
                except IndexError:  # the rest of the packet is still on its way
                    break
                pos += used
                if type(packet) is publish:
                    batch.append(
                        Message(
                            packet.topic,
                            packet.payload,
                            int(packet.qos),  # mqtt5's QoS is no int (QoS 0 is truthy)
                            packet.packet_id or 0,
                            generation,
                            received,
                        )
                    )
                    continue
                if batch:  # in order: what follows may change the connection
                    self._deliver(batch)
                    batch = []
                self._packet(packet)
                generation = self._generation
        except (ValueError, ProtocolFault) as exc:
            log.error(  # noqa: TRY400 (the broker's bytes, not our bug: no traceback)
                "broker sent a packet that is not MQTT v5 (%s): dropping the connection", exc
            )
            if self._transport is not None:
                self._transport.abort()
            return
        finally:
            self._buffer = bytes(view[pos:]) if pos < size else b""
            view.release()
        if batch:
            self._deliver(batch)

    def _deliver(self, batch: list[Message]) -> None:
        if self._events is not None and self.phase is Phase.CONNECTED:
            self._events.messages(batch)

    def _packet(self, packet: mqtt5.Packet) -> None:
        if isinstance(packet, mqtt5.PubAckPacket):
            token = self._inflight.pop(packet.packet_id, None)
            if token is None:
                return
            if int(packet.reason_code) >= 0x80:
                log.error("broker refused a publication: %s", packet.reason_code.name)
            if self._events is not None:
                self._events.published(token)
            self._send_waiting()
        elif isinstance(packet, mqtt5.ConnAckPacket):
            self._connected(packet)
        elif isinstance(packet, mqtt5.SubAckPacket):
            refused = 0
            for pattern, code in zip(self.subscriptions, packet.reason_codes, strict=False):
                if int(code) >= 0x80:
                    refused += 1
                    log.error("broker refused the subscription to %s: %s", pattern, code.name)
            if not refused:
                self._subscribed_generation = self._generation
                log.info("subscribed to %s", ", ".join(self.subscriptions))
        elif isinstance(packet, mqtt5.DisconnectPacket):
            detail = f" ({packet.reason_str})" if packet.reason_str else ""
            log.warning("the broker ended the connection: %s%s", packet.reason_code.name, detail)
        elif not isinstance(packet, mqtt5.PingRespPacket):
            raise ProtocolFault(f"unexpected {type(packet).__name__}")

    def _connected(self, connack: mqtt5.ConnAckPacket) -> None:
        future = self._connack
        if future is None or future.done():
            raise ProtocolFault("a second CONNACK")
        future.set_result(connack)
        if connack.reason_code != mqtt5.ConnAckReasonCode.SUCCESS:
            return
        self._generation += 1
        self._window = max(1, connack.receive_max)
        if connack.server_keep_alive is not None:
            self._keepalive_s = float(connack.server_keep_alive or self.config.keepalive_s)
        self.phase = Phase.CONNECTED
        log.info(
            "connected to %s:%s (session present: %s)",
            self.config.host,
            self.config.port,
            connack.session_present,
        )
        filters = [
            mqtt5.TopicFilter(f, max_qos=mqtt5.QoS.AT_LEAST_ONCE) for f in self.subscriptions
        ]
        self._write(mqtt5.SubscribePacket(_SUBSCRIBE_ID, filters).write())
        # before any message of the session: the collector holds its clock from here
        if self._events is not None:
            self._events.connection(True)

    # -- bytes out -----------------------------------------------------------------------------

    def _send_waiting(self) -> None:
        while self._waiting and len(self._inflight) < self._window:
            token, topic, body, retain = self._waiting.popleft()
            packet_id = self._packet_id()
            self._inflight[packet_id] = token
            self._write(
                mqtt5.PublishPacket(
                    topic, body, qos=mqtt5.QoS.AT_LEAST_ONCE, retain=retain, packet_id=packet_id
                ).write()
            )

    def _packet_id(self) -> int:
        while True:
            self._next_id = self._next_id % _PUBLISH_IDS + 1
            if self._next_id != _SUBSCRIBE_ID and self._next_id not in self._inflight:
                return self._next_id

    def _write(self, data: bytes) -> None:
        """Queue bytes; they go in one write at the end of this turn of the loop."""
        self._out.append(data)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        if not self._out:
            return
        data = b"".join(self._out)
        self._out.clear()
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(data)
            self._last_sent = time.monotonic()


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.errno:
        return os.strerror(exc.errno)  # asyncio's strerror is "Connect call failed (...)"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    if isinstance(exc, TimeoutError):
        return "timed out"
    return str(exc) or type(exc).__name__
