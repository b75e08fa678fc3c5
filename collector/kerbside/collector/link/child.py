"""The collector's MQTT connection, in a process of its own.

paho-mqtt spends about as long on each message (select, three reads, building the message, the
ack) as the collector spends validating, storing and applying it. In one process the two share
one GIL and the collector drains a broker's backlog at well under half the rate paho alone
reaches; here paho runs in a child process (``python -m kerbside.collector.link.child``) and
the collector's event loop talks to it over a socket pair, in batches:

- child to collector: received messages, connection changes, broker acks of our publications;
- collector to child: message acks (sent only after the batch is committed), publications, stop.

The child exits when the collector goes away (the socket reads end of file), so a killed
collector never leaves a second client holding its session. It acks nothing by itself: a message
whose ack never comes is redelivered by the broker on the next connection. It reconnects by
itself after a loss, waiting core's one Backoff between attempts (kerbside.core.reconnect).

Frames are a 4-byte big-endian length and a pickled list of items. The socket pair is private
to the two processes, created by the collector and handed to the child it started.
"""

from __future__ import annotations

import argparse
import collections
import logging
import os
import pickle
import signal
import socket
import ssl
import struct
import sys
import threading
import time
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from kerbside.collector.config import MqttConfig
from kerbside.core.backoff import Backoff
from kerbside.core.logs import setup_logging
from kerbside.core.reconnect import serve_connection
from kerbside.core.throttle import Throttle

# By name: run as ``python -m`` this module is ``__main__``.
log = logging.getLogger("kerbside.collector.link.child")  # not __main__ (run with -m)

GATEWAY_KINDS = ("status", "events", "health")
MAX_PACKET_BYTES = 1024 * 1024  # the largest packet we let the broker send us (MQTT v5)
_LENGTH = struct.Struct(">I")

# Items, child -> collector
MESSAGE = "m"  # ("m", (topic, payload, qos, mid, generation, received_ms))
CONNECTION = "c"  # ("c", up, generation)
PUBLISHED = "p"  # ("p", token): the broker acknowledged publication ``token``
# Items, collector -> child (the first frame is ("config", MqttConfig, generation_base))
ACK = "a"  # ("a", mid, qos, generation)
PUBLISH = "P"  # ("P", token, topic, payload, qos, retain)
STOP = "s"  # ("s",)


def encode_frame(items: Any) -> bytes:
    body = pickle.dumps(items, protocol=pickle.HIGHEST_PROTOCOL)
    return _LENGTH.pack(len(body)) + body


class FrameReader:
    """Bytes in, whole frames out (``feed`` keeps a partial frame until the rest arrives)."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[Any]:
        buffer = self._buffer
        buffer += data
        frames: list[Any] = []
        start = 0
        while len(buffer) - start >= _LENGTH.size:
            (length,) = _LENGTH.unpack_from(buffer, start)
            end = start + _LENGTH.size + length
            if len(buffer) < end:
                break
            frames.append(pickle.loads(buffer[start + _LENGTH.size : end]))  # noqa: S301 (our own child)
            start = end
        if start:
            del buffer[:start]
        return frames


def gateway_subscriptions(config: MqttConfig) -> list[tuple[str, int]]:
    """As ``link.v5.gateway_filters``: with ``mqtt.shared_group`` the events are shared between
    the group's collectors (Mosquitto shares for MQTT 3.1.1 clients too)."""
    root = config.topic_root.rstrip("/")
    group = config.shared_group
    return [
        (
            f"$share/{group}/{root}/gw/+/{kind}"
            if group is not None and kind == "events"
            else f"{root}/gw/+/{kind}",
            1,
        )
        for kind in GATEWAY_KINDS
    ]


class BrokerLink:
    """The child's side: one paho client, its network thread, and a sender thread that hands
    what paho delivers to the collector in batches."""

    def __init__(
        self,
        config: MqttConfig,
        channel: socket.socket,
        generation: int,
        backoff: Backoff | None = None,
    ) -> None:
        self.config = config
        # between connection attempts: 0.5-1 s, doubling to 30 s (core's one backoff)
        self.backoff = backoff or Backoff(1.0, 30.0)
        self._stop = threading.Event()
        self._network: threading.Thread | None = None
        self._channel = channel
        self._generation = generation
        self.connected = False
        self._out: list[tuple[Any, ...]] = []
        self._out_ready = threading.Condition()
        self._acked_mids: collections.deque[int] = collections.deque()
        # paho mid -> the collector's token; ``_tokens_lock`` is held across publish() and the
        # mapping, so a PUBACK that overtakes the mapping waits for it in the sender
        self._tokens: dict[int, int] = {}
        self._tokens_lock = threading.Lock()
        self._closing = False
        self._unreachable_said = Throttle(60.0)  # said at once, then at most once a minute
        self._client = self._make_client()

    def _make_client(self) -> mqtt.Client:
        config = self.config
        v5 = config.protocol == "5"
        client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=config.client_id,
            protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
            # 3.1.1 has no session expiry: a persistent session keeps what v5's expiry keeps.
            clean_session=None if v5 else False,
            manual_ack=True,
        )
        # paho scans its in-flight messages on every PUBACK: a small window keeps the alert and
        # bay-state burst at the end of a backlog cheap (the broker is near; 100 is plenty)
        client.max_inflight_messages_set(100)
        client.max_queued_messages_set(0)
        if config.username is not None:
            password = None
            if config.password_file is not None:
                password = config.password_file.read_text(encoding="utf-8").strip()
            client.username_pw_set(config.username, password)
        if config.tls is not None:
            client.tls_set(ca_certs=str(config.tls.ca), tls_version=ssl.PROTOCOL_TLS_CLIENT)
        client.on_connect = self._handle_connect
        client.on_disconnect = self._handle_disconnect
        client.on_subscribe = self._handle_subscribe
        client.on_message = self._handle_message
        client.on_publish = self._handle_publish
        return client

    # -- main thread: the collector's commands ----------------------------------------------

    def run(self, reader: FrameReader, pending: list[Any]) -> int:
        """Connect, carry out ``pending`` and then the collector's commands until it stops us
        or goes away."""
        sender = threading.Thread(target=self._send_loop, name="to-collector", daemon=True)
        sender.start()
        self.connect()
        try:
            running = self._execute(pending)
            while running:
                data = self._channel.recv(1 << 20)
                if not data:
                    log.info("the collector went away: leaving the broker")
                    break
                running = self._execute(reader.feed(data))
        except OSError as exc:
            log.warning("collector channel failed (%s): leaving the broker", exc)
        self.close()
        with self._out_ready:
            self._out_ready.notify()
        sender.join(5)
        return 0

    def close(self) -> None:
        """Leave the broker (DISCONNECT) and end the network thread."""
        self._closing = True
        self._stop.set()
        self._client.disconnect()
        if self._network is not None:
            self._network.join(5)

    @property
    def serving(self) -> bool:
        """Whether the network thread runs (connected, connecting or waiting to)."""
        return self._network is not None and self._network.is_alive()

    def connect(self) -> None:
        """Start the network thread: it connects, and reconnects after each loss."""
        config = self.config
        if config.protocol != "5":
            self._client.connect_async(config.host, config.port, keepalive=config.keepalive_s)
        else:
            props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            props.SessionExpiryInterval = config.session_expiry_s
            props.ReceiveMaximum = config.receive_maximum
            # Nothing over 1 MiB comes to us (the broker drops it for us): a payload over 64 KiB
            # is only dead-lettered anyway, and reading a huge one costs its size several times.
            props.MaximumPacketSize = MAX_PACKET_BYTES
            self._client.connect_async(
                config.host,
                config.port,
                keepalive=config.keepalive_s,
                clean_start=False,
                properties=props,
            )
        self._network = threading.Thread(target=self._serve, name="mqtt-network", daemon=True)
        self._network.start()

    def _serve(self) -> None:
        serve_connection(self._client, self.backoff, self._stop, unreachable=self._unreachable)

    def _execute(self, frames: list[Any]) -> bool:
        """Carry out the collector's commands; False on stop."""
        client = self._client
        for items in frames:
            for item in items:
                kind = item[0]
                if kind == ACK:
                    _, mid, qos, generation = item
                    # an ack is only valid on the connection the message came in on: after a
                    # reconnect the broker redelivers it (the store absorbs the copy)
                    if generation == self._generation and self.connected:
                        client.ack(mid, qos)
                elif kind == PUBLISH:
                    _, token, topic, payload, qos, retain = item
                    with self._tokens_lock:
                        info = client.publish(topic, payload, qos=qos, retain=retain)
                        if qos > 0:
                            self._tokens[info.mid] = token
                elif kind == STOP:
                    return False
        return True

    # -- sender thread -------------------------------------------------------------------------

    def _push(self, item: tuple[Any, ...]) -> None:
        with self._out_ready:
            self._out.append(item)
            if len(self._out) == 1:
                self._out_ready.notify()

    def _send_loop(self) -> None:
        while True:
            with self._out_ready:
                while not self._out and not self._acked_mids and not self._closing:
                    self._out_ready.wait()
                items, self._out = self._out, []
            if self._acked_mids:
                with self._tokens_lock:
                    while self._acked_mids:
                        token = self._tokens.pop(self._acked_mids.popleft(), None)
                        if token is not None:
                            items.append((PUBLISHED, token))
            if items:
                try:
                    self._channel.sendall(encode_frame(items))
                except OSError:
                    return  # the collector is gone; the main thread sees it too
            elif self._closing:
                return

    # -- the network thread (paho's callbacks) ----------------------------------------------------

    def _handle_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any
    ) -> None:
        if reason.is_failure:
            log.warning("broker refused connection: %s", reason)
            return
        self._generation += 1
        self.connected = True
        self._unreachable_said.reset()
        log.info(
            "connected to %s:%s (session present: %s)",
            self.config.host,
            self.config.port,
            flags.session_present,
        )
        client.subscribe(gateway_subscriptions(self.config))
        self._push((CONNECTION, True, self._generation))

    def _unreachable(self, exc: OSError) -> None:
        if self._unreachable_said.ready():
            reason = exc.strerror or str(exc) or type(exc).__name__
            log.warning(
                "broker %s:%s unreachable (%s); retrying with backoff (1 s doubling to 30 s)",
                self.config.host,
                self.config.port,
                reason,
            )

    def _handle_subscribe(
        self, client: mqtt.Client, userdata: Any, mid: int, reasons: Any, properties: Any
    ) -> None:
        topics = [topic for topic, _ in gateway_subscriptions(self.config)]
        refused = [t for t, r in zip(topics, reasons, strict=False) if r.is_failure]
        if refused:
            log.error("broker refused the subscription to %s", ", ".join(refused))
        else:
            log.info("subscribed to %s", ", ".join(topics))

    def _handle_disconnect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any
    ) -> None:
        self.connected = False
        if not self._closing:
            log.warning("disconnected from broker: %s", reason)
        self._push((CONNECTION, False, self._generation))

    def _handle_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            topic = msg.topic
        except UnicodeDecodeError:
            topic = msg._topic.decode("utf-8", "replace")
        received = int(time.time() * 1000)
        self._push(
            (MESSAGE, (topic, bytes(msg.payload), msg.qos, msg.mid, self._generation, received))
        )

    def _handle_publish(
        self, client: mqtt.Client, userdata: Any, mid: int, reason: Any, properties: Any
    ) -> None:
        # paho holds its own lock here: only note the mid; the sender maps it to the token
        self._acked_mids.append(mid)
        with self._out_ready:
            self._out_ready.notify()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m kerbside.collector.link.child",
        description="The MQTT connection of `kerbside-collector run`, started by it (not run by "
        "hand): reads its config from the socket passed as --fd.",
    )
    parser.add_argument("--fd", type=int, required=True, help="socket to the collector")
    parser.add_argument("--log-level", default="INFO", help="as the collector's (default INFO)")
    args = parser.parse_args(argv)
    setup_logging(args.log_level)  # the collector's format, from the environment
    try:
        channel = socket.socket(fileno=args.fd)
    except OSError as exc:
        print(f"link.child: --fd {args.fd} is not a socket: {exc}", file=sys.stderr)
        return 2
    reader = FrameReader()
    first: list[Any] = []
    while not first:
        data = channel.recv(1 << 16)
        if not data:
            return 0
        first = reader.feed(data)
    kind, config, generation = first[0][0]
    if kind != "config" or not isinstance(config, MqttConfig):
        print("link.child: the first frame is not a config", file=sys.stderr)
        return 2
    pending = [first[0][1:], *first[1:]]
    # The collector decides when we stop (or we see it gone): a Ctrl-C or a service manager's
    # SIGTERM to the whole group must not drop the connection under its last acks.
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    return BrokerLink(config, channel, generation).run(reader, pending)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
