"""The collector's MQTT adapter: paho-mqtt's network thread, crossed into asyncio.

MQTT v5 with a fixed client id, ``clean_start=False`` and a session expiry (or, with
``mqtt.protocol: "3.1.1"``, a persistent ``clean_session=False`` session), so the broker keeps
our subscriptions and queues the gateways' QoS 1 messages while the collector is down. Acks are
manual: the service acks a message only after its batch is committed. Callbacks here only hand
data to the event loop with ``call_soon_threadsafe``.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from kerbside.collector.config import MqttConfig
from kerbside.collector.records import Rejected, decode_payload
from kerbside.core.ids import is_valid_id
from kerbside.core.instants import InstantError, parse_instant

log = logging.getLogger(__name__)

GATEWAY_KINDS = ("status", "events", "health")


@dataclass(frozen=True, slots=True)
class Message:
    """One received PUBLISH, as the event loop sees it."""

    topic: str
    payload: bytes
    qos: int
    mid: int
    generation: int  # connection it arrived on: an ack is only valid on that connection
    received: int  # epoch ms at arrival


class MqttLink:
    """paho client wrapper: subscribe to the gateways, ack, publish, track broker acks."""

    def __init__(
        self,
        config: MqttConfig,
        loop: asyncio.AbstractEventLoop,
        on_message: Callable[[Message], None],
        on_published: Callable[[int], None] | None = None,
        on_connection: Callable[[bool], None] | None = None,
    ) -> None:
        self.config = config
        self._loop = loop
        self._on_message = on_message
        self._on_published = on_published
        self._on_connection = on_connection
        self.connected = False
        self._generation = 0
        self._inbox: collections.deque[Message] = collections.deque()
        self._wake_pending = False
        self._acked: collections.deque[int] = collections.deque()
        self._acked_wake_pending = False
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
        client.reconnect_delay_set(min_delay=1, max_delay=30)
        if config.username is not None:
            password = None
            if config.password_file is not None:
                password = config.password_file.read_text(encoding="utf-8").strip()
            client.username_pw_set(config.username, password)
        if config.tls is not None:
            client.tls_set(ca_certs=str(config.tls.ca), tls_version=ssl.PROTOCOL_TLS_CLIENT)
        client.on_connect = self._handle_connect
        client.on_disconnect = self._handle_disconnect
        client.on_message = self._handle_message
        client.on_publish = self._handle_publish
        self._client = client

    @property
    def root(self) -> str:
        return self.config.topic_root.rstrip("/")

    def start(self) -> None:
        if self.config.protocol != "5":
            self._client.connect_async(
                self.config.host, self.config.port, keepalive=self.config.keepalive_s
            )
            self._client.loop_start()
            return
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = self.config.session_expiry_s
        props.ReceiveMaximum = self.config.receive_maximum
        self._client.connect_async(
            self.config.host,
            self.config.port,
            keepalive=self.config.keepalive_s,
            clean_start=False,
            properties=props,
        )
        self._client.loop_start()

    def stop(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    # -- called from the event loop ------------------------------------------------------------

    def ack(self, message: Message) -> None:
        """Acknowledge a committed message (only on the connection it came in on: after a
        reconnect the broker redelivers it, and the store's de-duplication absorbs the copy)."""
        if message.qos > 0 and message.generation == self._generation and self.connected:
            self._client.ack(message.mid, message.qos)

    def publish(self, topic: str, payload: str | bytes, qos: int, retain: bool = False) -> int:
        info = self._client.publish(topic, payload, qos=qos, retain=retain)
        return int(info.mid)

    # -- paho's thread ---------------------------------------------------------------------------

    def _handle_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any
    ) -> None:
        if reason.is_failure:
            log.warning("broker refused connection: %s", reason)
            return
        self._generation += 1
        self.connected = True
        log.info(
            "connected to %s:%s (session present: %s)",
            self.config.host,
            self.config.port,
            flags.session_present,
        )
        client.subscribe([(f"{self.root}/gw/+/{kind}", 1) for kind in GATEWAY_KINDS])
        if self._on_connection is not None:
            self._loop.call_soon_threadsafe(self._on_connection, True)

    def _handle_disconnect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any
    ) -> None:
        self.connected = False
        log.warning("disconnected from broker: %s", reason)
        if self._on_connection is not None:
            self._loop.call_soon_threadsafe(self._on_connection, False)

    def _handle_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            topic = msg.topic
        except UnicodeDecodeError:
            topic = msg._topic.decode("utf-8", "replace")
        message = Message(
            topic,
            bytes(msg.payload),
            msg.qos,
            msg.mid,
            self._generation,
            int(time.time() * 1000),
        )
        # One wake-up of the event loop per burst, not per message: a backlog arrives as
        # thousands of messages a second, and each call_soon_threadsafe is a syscall.
        self._inbox.append(message)
        if not self._wake_pending:
            self._wake_pending = True
            with contextlib.suppress(RuntimeError):  # the loop closed under us at shutdown
                self._loop.call_soon_threadsafe(self._deliver)

    def _deliver(self) -> None:
        self._wake_pending = False  # before draining: a message appended after this wakes again
        inbox = self._inbox
        while inbox:
            self._on_message(inbox.popleft())

    def _handle_publish(
        self, client: mqtt.Client, userdata: Any, mid: int, reason: Any, properties: Any
    ) -> None:
        if self._on_published is None:
            return
        # like messages: one wake-up of the loop per burst of broker acks
        self._acked.append(mid)
        if not self._acked_wake_pending:
            self._acked_wake_pending = True
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._deliver_acked)

    def _deliver_acked(self) -> None:
        self._acked_wake_pending = False
        acked = self._acked
        on_published = self._on_published
        assert on_published is not None
        while acked:
            on_published(acked.popleft())


# -- gateway status and health payloads (SPEC 5) ------------------------------------------------


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
