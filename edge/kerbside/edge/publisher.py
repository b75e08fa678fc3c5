"""MQTT out: a thin paho-mqtt adapter (``MqttLink``) and the outbox drain (``EventForwarder``).

Threads: paho's network loop runs on one thread of ours, ``mqtt-network``, reconnecting after
each loss with core's one Backoff (kerbside.core.reconnect; paho's own reconnect policy is not
used); if that thread ever dies the agent exits (``alive``), so a supervisor restarts it rather
than it sitting silent with a full outbox. paho's callbacks do
nothing but hand a fact to the agent's event loop with ``loop.call_soon_threadsafe``
(connected, disconnected, a batch of PUBACKed message ids); every
decision and all SQLite access happen on the loop's thread. ``client.publish`` is called from
the loop's thread (paho guards its queues with locks).

Ordering: events are handed to paho once per process, in seq order, at most ``window`` at a time
(the in-flight window: a backlog drains as fast as PUBACKs come back, not one round trip per
event). If the connection drops, paho keeps what it was given and re-sends it, in the order given,
right after the next CONNACK; the forwarder hands over nothing new until all of those are
acknowledged, so a fresh event can never overtake an older one on the wire. Fresh events simply
queue behind the backlog in the outbox: the order out is seq order.

Acknowledged seqs are deleted from the outbox in batches (``flush_acks``, every
``ACK_FLUSH_S`` or ``ACK_FLUSH_COUNT`` acks, whichever first).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import ssl
import threading
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from kerbside.core.backoff import Backoff
from kerbside.core.config import ConfigError
from kerbside.core.reconnect import serve_connection
from kerbside.core.throttle import Throttle
from kerbside.edge.config import EdgeConfig
from kerbside.edge.outbox import Outbox, OutboxError

log = logging.getLogger(__name__)

ACK_FLUSH_S = 0.25
ACK_FLUSH_COUNT = 500
DEFAULT_WINDOW = 500


class MqttLink:
    """One paho client, configured from the edge config; callbacks cross into ``loop``."""

    def __init__(
        self,
        config: EdgeConfig,
        loop: asyncio.AbstractEventLoop,
        *,
        will: bytes,
        window: int = DEFAULT_WINDOW,
        on_connected: Callable[[], None],
        on_disconnected: Callable[[], None],
        on_published: Callable[[list[int]], None],
        on_connect_failed: Callable[[str], None] | None = None,
        backoff: Backoff | None = None,
    ) -> None:
        self._loop = loop
        # 0.5-1 s, then doubling to 30 s, jittered so that gateways cut off together (a broker
        # restart) do not all come back in the same second
        self.backoff = backoff or Backoff(1.0, 30.0)
        self._stop = threading.Event()
        self._on_connect_failed = on_connect_failed
        self._on_connected = on_connected
        self._on_disconnected = on_disconnected
        self._on_published = on_published
        self._published: collections.deque[int] = collections.deque()
        self._published_lock = threading.Lock()
        self._delivery_scheduled = False
        self.connected = False
        self._stopping = False
        self._thread: threading.Thread | None = None
        root = config.mqtt.topic_root.rstrip("/")
        self.topic_base = f"{root}/gw/{config.gateway_id}"
        self._host = config.mqtt.host
        self._port = config.mqtt.port
        self._keepalive = config.mqtt.keepalive_s

        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"kerbside-edge-{config.gateway_id}",
            protocol=mqtt.MQTTv311,
            clean_session=True,
        )
        # The forwarder's window bounds what is in flight. paho's own limit stays off: with one
        # set, paho rescans every queued message on each PUBACK (quadratic in the window).
        client.max_inflight_messages_set(0)
        password = None
        if config.mqtt.password_file is not None:
            try:
                password = _read_secret(config.mqtt.password_file)
            except OSError as exc:
                raise ConfigError(
                    f"mqtt.password_file: cannot read {config.mqtt.password_file}: "
                    f"{exc.strerror or exc}"
                ) from exc
        client.username_pw_set(config.mqtt_username, password)
        tls = config.mqtt.tls
        if tls is not None:
            client.tls_set(
                ca_certs=None if tls.ca is None else str(tls.ca),
                certfile=None if tls.cert is None else str(tls.cert),
                keyfile=None if tls.key is None else str(tls.key),
                cert_reqs=ssl.CERT_REQUIRED,
            )
            client.tls_insecure_set(tls.insecure)
        client.will_set(self.topic("status"), will, qos=1, retain=True)
        client.on_connect = self._paho_connect
        client.on_disconnect = self._paho_disconnect
        client.on_publish = self._paho_publish
        self._client = client

    def topic(self, leaf: str) -> str:
        return f"{self.topic_base}/{leaf}"

    def start(self) -> None:
        log.info("connecting to mqtt %s:%d as %s", self._host, self._port, self.topic_base)
        self._client.connect_async(self._host, self._port, keepalive=self._keepalive)
        self._thread = threading.Thread(target=self._network, name="mqtt-network", daemon=True)
        self._thread.start()

    def _network(self) -> None:
        try:
            serve_connection(
                self._client, self.backoff, self._stop, unreachable=self._cannot_connect
            )
        except Exception:
            log.exception("mqtt network thread failed")

    @property
    def alive(self) -> bool:
        """False if paho's network thread ended without being asked to."""
        return self._stopping or (self._thread is not None and self._thread.is_alive())

    def publish(self, leaf: str, payload: bytes, *, qos: int, retain: bool = False) -> int:
        """Hand a message to paho (queued if not connected); returns its message id."""
        info = self._client.publish(self.topic(leaf), payload, qos=qos, retain=retain)
        if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
            log.warning("publish to %s refused by client: %s", leaf, mqtt.error_string(info.rc))
        mid: int = info.mid
        return mid

    def stop(self) -> None:
        """Disconnect cleanly (no last will) and stop paho's thread."""
        self._stopping = True
        self._stop.set()
        self._client.disconnect()
        if self._thread is not None:
            self._thread.join(timeout=5)

    # --- paho's thread: short, and nothing but a hand-over to the loop ---

    def _paho_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any
    ) -> None:
        if reason.is_failure:
            self._loop.call_soon_threadsafe(self._connect_failed, f"broker refused: {reason}")
            return
        self._loop.call_soon_threadsafe(self._connected)

    def _cannot_connect(self, exc: OSError) -> None:
        reason = exc.strerror or str(exc) or type(exc).__name__
        self._loop.call_soon_threadsafe(self._connect_failed, reason)

    def _paho_disconnect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any
    ) -> None:
        self._loop.call_soon_threadsafe(self._disconnected, str(reason))

    def _paho_publish(
        self, client: mqtt.Client, userdata: Any, mid: int, reason: Any, properties: Any
    ) -> None:
        with self._published_lock:
            self._published.append(mid)
            if self._delivery_scheduled:
                return
            self._delivery_scheduled = True
        self._loop.call_soon_threadsafe(self._deliver_published)

    # --- the loop's thread ---

    def _connected(self) -> None:
        self.connected = True
        log.info("mqtt connected to %s:%d", self._host, self._port)
        self._on_connected()

    def _connect_failed(self, reason: str) -> None:
        if self._on_connect_failed is not None:
            self._on_connect_failed(reason)
        else:
            log.warning("mqtt %s:%d: cannot connect: %s", self._host, self._port, reason)

    @property
    def address(self) -> str:
        return f"{self._host}:{self._port}"

    def _disconnected(self, reason: str) -> None:
        if self.connected and not self._stopping:
            log.warning("mqtt connection lost (%s); reconnecting with backoff", reason)
        self.connected = False
        self._on_disconnected()

    def _deliver_published(self) -> None:
        with self._published_lock:
            mids = list(self._published)
            self._published.clear()
            self._delivery_scheduled = False
        self._on_published(mids)


def _read_secret(path: object) -> str:
    from pathlib import Path  # noqa: PLC0415  (only gateways with a password file need it)

    return Path(str(path)).read_text(encoding="utf-8").strip()


class EventForwarder:
    """Moves events from the outbox to the broker in seq order (see module docstring)."""

    def __init__(self, outbox: Outbox, window: int = DEFAULT_WINDOW) -> None:
        self.outbox = outbox
        self.window = window
        self.link: MqttLink | None = None
        self.cursor = 0  # last seq handed to paho in this process
        self.inflight: dict[int, int] = {}  # paho mid -> seq
        self.published = 0  # PUBACKed events, this process
        self._await_resends = False
        self._wake = asyncio.Event()
        self._last_flush = 0.0
        self._flush_warning = Throttle(60.0)

    def attach(self, link: MqttLink) -> None:
        self.link = link

    def wake(self) -> None:
        self._wake.set()

    def connected(self) -> None:
        # Whatever paho still holds is re-sent right after the CONNACK; nothing new goes out
        # until all of it is acknowledged, so nothing overtakes it.
        self._await_resends = bool(self.inflight)
        self._wake.set()

    def disconnected(self) -> None:
        self._wake.set()

    def acknowledged(self, mids: list[int]) -> None:
        for mid in mids:
            seq = self.inflight.pop(mid, None)
            if seq is not None:
                self.outbox.ack(seq)
                self.published += 1
        if not self.inflight:
            self._await_resends = False
        if self.outbox.pending_acks >= ACK_FLUSH_COUNT:
            self.flush()
        self._wake.set()

    def flush(self) -> None:
        """Delete acknowledged events; on a full disk they stay pending (and are not re-sent)."""
        try:
            self.outbox.flush_acks()
        except OutboxError as exc:
            if self._flush_warning.ready():
                log.warning("%s; kept for a later try", exc)

    @property
    def idle(self) -> bool:
        """Nothing in flight and nothing stored that has not been acknowledged."""
        return not self.inflight and self.outbox.depth - self.outbox.pending_acks == 0

    def fill(self) -> int:
        """Hand paho as many events as the window allows; returns how many."""
        link = self.link
        if link is None or not link.connected or self._await_resends:
            return 0
        handed = 0
        while (room := self.window - len(self.inflight)) > 0:
            rows = self.outbox.read_after(self.cursor, min(room, 256))
            if not rows:
                break
            for seq, payload in rows:
                mid = link.publish("events", payload, qos=1)
                self.inflight[mid] = seq
                self.cursor = seq
            handed += len(rows)
        return handed

    async def run(self) -> None:
        """Fill on every wake-up; flush acknowledged deletes at least every ``ACK_FLUSH_S``."""
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(ACK_FLUSH_S):
                    await self._wake.wait()
            self._wake.clear()
            self.fill()
            now = asyncio.get_running_loop().time()
            if now - self._last_flush >= ACK_FLUSH_S:
                self.flush()
                self._last_flush = now
