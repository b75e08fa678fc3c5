"""The MQTT v5 link on the event loop (``link.v5``): its reading of the byte stream, and its
session, acks, publications, keep-alive, reconnection and shared subscriptions against a real
Mosquitto of the test's own."""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import mqtt5
import paho.mqtt.client as mqtt
import pytest
from hypothesis import given
from hypothesis import strategies as st
from paho.mqtt.enums import CallbackAPIVersion

from kerbside.collector.config import MqttConfig
from kerbside.collector.link import Message
from kerbside.collector.link.v5 import Phase, V5Link, gateway_filters
from kerbside.core.backoff import Backoff
from tests.helpers import (
    Mosquitto,
    RecordingBackoff,
    topic_root_for,
    wait_until,
    wait_until_async,
)

pytestmark = pytest.mark.slow  # starts processes (brokers, programs, servers)


class Events:
    """``LinkEvents``, recorded."""

    def __init__(self) -> None:
        self.received: list[Message] = []
        self.batches = 0
        self.tokens: list[int] = []  # publications the broker acknowledged
        self.connections: list[bool] = []

    def messages(self, batch: list[Message]) -> None:
        self.batches += 1
        self.received.extend(batch)

    def published(self, token: int) -> None:
        self.tokens.append(token)

    def connection(self, up: bool) -> None:
        self.connections.append(up)


def recorder() -> Events:
    return Events()


# -- the byte stream, without a broker -----------------------------------------------------------


def _stream() -> list[bytes]:
    packets = [mqtt5.ConnAckPacket(session_present=True).write()]
    packets += [
        mqtt5.PublishPacket(
            f"root/gw/gw-{i}/events",
            b"x" * (i * 37 % 300),
            qos=mqtt5.QoS.AT_LEAST_ONCE,
            packet_id=i + 1,
        ).write()
        for i in range(12)
    ]
    packets.append(mqtt5.PingRespPacket().write())
    packets.append(mqtt5.PublishPacket("root/gw/gw-x/status", b"{}").write())
    return packets


def _fed(chunks: list[bytes]) -> tuple[V5Link, Events]:
    """A link just connected (CONNECT sent) fed ``chunks`` as they came off the socket."""
    link = V5Link(MqttConfig(topic_root="root"))
    events = recorder()

    async def feed() -> None:
        link._events = events
        link._connack = asyncio.get_running_loop().create_future()
        link.phase = Phase.CONNECTING
        link._write = lambda data: None  # type: ignore[method-assign]
        for chunk in chunks:
            link._received(chunk)

    asyncio.run(feed())
    return link, events


EXPECTED = [(f"root/gw/gw-{i}/events", b"x" * (i * 37 % 300), 1, i + 1) for i in range(12)] + [
    ("root/gw/gw-x/status", b"{}", 0, 0)
]


def test_every_prefix_is_incomplete_and_the_rest_completes_it() -> None:
    stream = b"".join(_stream())
    for cut in range(0, len(stream), 7):
        link, events = _fed([stream[:cut], stream[cut:]])
        got = [(m.topic, m.payload, m.qos, m.mid) for m in events.received]
        assert got == EXPECTED
        assert link._buffer == b""
        assert events.connections == [True]
        assert {m.generation for m in events.received} == {1}


@given(st.lists(st.integers(min_value=1, max_value=400), max_size=30))
def test_any_chunking_gives_the_same_messages(cuts: list[int]) -> None:
    stream = b"".join(_stream())
    chunks = []
    pos = 0
    for size in cuts:
        chunks.append(stream[pos : pos + size])
        pos += size
    chunks.append(stream[pos:])
    _, events = _fed(chunks)
    assert [(m.topic, m.payload, m.qos, m.mid) for m in events.received] == EXPECTED


def test_garbage_from_the_broker_drops_the_connection_not_the_collector(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.ERROR):
        _, events = _fed([_stream()[0], b"\xff\x00\x00\x00", _stream()[1]])
    assert "not MQTT v5" in caplog.text
    assert events.received == []


def test_a_shared_group_shares_the_events_and_every_collector_hears_statuses() -> None:
    config = MqttConfig(topic_root="kerbside/v1", shared_group="collectors")
    assert gateway_filters(config) == [
        "kerbside/v1/gw/+/status",
        "$share/collectors/kerbside/v1/gw/+/events",
        "kerbside/v1/gw/+/health",
    ]
    assert gateway_filters(MqttConfig(topic_root="kerbside/v1")) == [
        "kerbside/v1/gw/+/status",
        "kerbside/v1/gw/+/events",
        "kerbside/v1/gw/+/health",
    ]


# -- against Mosquitto ---------------------------------------------------------------------------


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    mosquitto = Mosquitto(tmp_path / "mosquitto").start()
    try:
        yield mosquitto
    finally:
        mosquitto.stop()


def phase_of(link: V5Link) -> Phase:
    """The link's phase now (read through a call: mypy keeps what an earlier assert said)."""
    return link.phase


def _config(broker: Mosquitto, root: str, client_id: str = "collector", **over: Any) -> MqttConfig:
    return MqttConfig(
        host="127.0.0.1", port=broker.port, topic_root=root, client_id=client_id, **over
    )


def _gateway(port: int, root: str, count: int, start: int = 0) -> None:
    """A gateway's QoS 1 events, ``start`` .. ``start + count - 1``, all acknowledged."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"gw-{time.time_ns()}")
    client.connect("127.0.0.1", port)
    client.loop_start()
    infos = [
        client.publish(f"{root}/gw/gw-1/events", f"event {i}".encode(), qos=1)
        for i in range(start, start + count)
    ]
    for info in infos:
        info.wait_for_publish(10)
    client.loop_stop()
    client.disconnect()


def run(body: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(body(), 60))


async def _session(broker: Mosquitto, root: str) -> None:
    """Create the collector's session (subscribed) and leave."""
    link = V5Link(_config(broker, root))
    events = recorder()
    link.start(events)
    await wait_until_async(lambda: link.subscribed, what="the first connection's SUBACK")
    link.stop()


def test_acked_messages_are_not_sent_again_and_the_others_are(
    broker: Mosquitto, request: pytest.FixtureRequest
) -> None:
    root = topic_root_for(request.node.name)

    async def body() -> None:
        await _session(broker, root)
        await asyncio.to_thread(_gateway, broker.port, root, 300)  # queued while we are away
        link = V5Link(_config(broker, root))
        events = recorder()
        link.start(events)
        await wait_until_async(lambda: len(events.received) == 300, what="300 messages")
        assert [m.payload for m in events.received] == [f"event {i}".encode() for i in range(300)]
        assert events.batches < 300  # a chunk of the stream is one batch
        left = broker.disconnections("collector")
        for message in events.received[:200]:  # "committed"
            link.ack(message)
        link.stop()  # sends the acks given, then DISCONNECT
        await wait_until_async(
            lambda: broker.disconnections("collector") > left, what="the broker saw us leave"
        )
        again = V5Link(_config(broker, root))
        redelivered = recorder()
        again.start(redelivered)
        await wait_until_async(
            lambda: len(redelivered.received) == 100, None, "the 100 not acknowledged"
        )
        assert [m.payload for m in redelivered.received] == [
            f"event {i}".encode() for i in range(200, 300)
        ]
        # nothing else is redelivered: a message sent now arrives next (MQTT keeps the order)
        await asyncio.to_thread(_gateway, broker.port, root, 1, 300)
        await wait_until_async(lambda: len(redelivered.received) > 100, what="event 300")
        assert [m.payload for m in redelivered.received[100:]] == [b"event 300"]
        again.stop()

    run(body)


def test_an_ack_after_a_reconnection_is_not_sent_and_the_broker_redelivers(
    broker: Mosquitto, request: pytest.FixtureRequest
) -> None:
    root = topic_root_for(request.node.name)

    async def body() -> None:
        link = V5Link(_config(broker, root), backoff=Backoff(0.1, 0.5))
        events = recorder()
        link.start(events)
        await wait_until_async(lambda: link.subscribed, what="subscribed")
        await asyncio.to_thread(_gateway, broker.port, root, 10)
        await wait_until_async(lambda: len(events.received) == 10, what="10 messages")
        first = list(events.received)
        await asyncio.to_thread(broker.restart)  # persistence: the session and its queue stay
        await wait_until_async(lambda: events.connections == [True, False, True], 20, "reconnected")
        for message in first:
            link.ack(message)  # from the connection before: not valid on this one
        await wait_until_async(lambda: len(events.received) == 20, 20, "the 10 again")
        assert [m.payload for m in events.received[10:]] == [m.payload for m in first]
        assert {m.generation for m in events.received[10:]} == {first[0].generation + 1}
        link.stop()

    run(body)


def test_publications_come_back_as_their_tokens_once_the_broker_has_them(
    broker: Mosquitto, request: pytest.FixtureRequest
) -> None:
    root = topic_root_for(request.node.name)
    seen: list[tuple[str, bytes, bool]] = []
    watcher = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="watcher")
    subscribed = threading.Event()
    watcher.on_subscribe = lambda *a: subscribed.set()
    watcher.on_message = lambda c, u, m: seen.append((m.topic, bytes(m.payload), bool(m.retain)))
    watcher.connect("127.0.0.1", broker.port)
    watcher.subscribe(f"{root}/alerts/#", 1)
    watcher.loop_start()
    assert subscribed.wait(10)

    async def body() -> None:
        link = V5Link(_config(broker, root))
        events = recorder()
        link.start(events)
        await wait_until_async(lambda: link.connected, what="connected")
        tokens = [link.publish(f"{root}/alerts/A{i}", f"alert {i}", 1) for i in range(500)]
        tokens.append(link.publish(f"{root}/bays/B1", b"occupied", 1, retain=True))
        link.publish(f"{root}/alerts/dead", "qos 0", 0)
        await wait_until_async(lambda: sorted(events.tokens) == sorted(tokens), what="every token")
        link.stop()

    try:
        run(body)
        wait_until(lambda: len(seen) >= 501, what="the 500 alerts and the QoS 0 one")
        assert [s[1] for s in seen[:500]] == [f"alert {i}".encode() for i in range(500)]
        assert (f"{root}/alerts/dead", b"qos 0", False) in seen
    finally:
        watcher.loop_stop()
        watcher.disconnect()
    retained: list[bytes] = []
    reader = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="reader")
    reader.on_message = lambda c, u, m: retained.append(bytes(m.payload))
    reader.connect("127.0.0.1", broker.port)
    reader.subscribe(f"{root}/bays/#", 1)
    reader.loop_start()
    wait_until(lambda: retained, what="the retained bay state")
    reader.loop_stop()
    reader.disconnect()
    assert retained == [b"occupied"]


def test_a_broker_down_then_back_is_reconnected_with_backoff_and_said_once(
    tmp_path: Path, request: pytest.FixtureRequest, caplog: pytest.LogCaptureFixture
) -> None:
    root = topic_root_for(request.node.name)
    broker = Mosquitto(tmp_path / "mosquitto")  # not started yet: the port is closed

    async def body() -> None:
        backoff = RecordingBackoff(0.05, 0.2)
        link = V5Link(_config(broker, root), backoff=backoff)
        events = recorder()
        link.start(events)
        await wait_until_async(
            lambda: backoff.failures >= 4 and link.phase is Phase.WAITING, what="four attempts"
        )
        assert backoff.spaced([at for at, _ in backoff.given])
        assert events.connections == []
        await asyncio.to_thread(broker.start)
        await wait_until_async(lambda: link.subscribed, what="subscribed")
        await asyncio.to_thread(_gateway, broker.port, root, 5)
        await wait_until_async(lambda: len(events.received) == 5, what="5 messages")
        link.stop()
        assert phase_of(link) is Phase.STOPPED

    try:
        with caplog.at_level(logging.WARNING, logger="kerbside.collector.link.v5"):
            run(body)
    finally:
        broker.stop()
    unreachable = [r for r in caplog.records if "unreachable" in r.getMessage()]
    assert len(unreachable) == 1  # said at once, then at most once a minute
    assert "Connection refused" in unreachable[0].getMessage()


def test_a_frozen_broker_is_found_dead_by_keepalive_and_an_idle_link_stays_up(
    broker: Mosquitto, request: pytest.FixtureRequest
) -> None:
    root = topic_root_for(request.node.name)

    async def body() -> None:
        link = V5Link(_config(broker, root, keepalive_s=5), backoff=Backoff(0.1, 0.5))
        events = recorder()
        link.start(events)
        await wait_until_async(lambda: link.connected, what="connected")
        # idle for longer than 1.5 keep-alives: our PINGREQs keep the broker from dropping us
        await asyncio.sleep(8.5)
        assert events.connections == [True]
        assert broker.proc is not None
        broker.proc.send_signal(signal.SIGSTOP)  # TCP stays open; nothing answers
        try:
            await wait_until_async(lambda: not link.connected, 12, "the frozen broker found")
        finally:
            broker.proc.send_signal(signal.SIGCONT)
        await wait_until_async(lambda: link.connected, 15, "connected again")
        assert events.connections == [True, False, True]
        link.stop()

    run(body)


def test_a_refused_login_is_said_with_the_brokers_reason(
    tmp_path: Path, request: pytest.FixtureRequest, caplog: pytest.LogCaptureFixture
) -> None:
    root = topic_root_for(request.node.name)
    passwords = tmp_path / "passwd"
    passwords.write_text("")
    broker = Mosquitto(
        tmp_path / "mosquitto", f"allow_anonymous false\npassword_file {passwords}\n"
    ).start()

    async def body() -> None:
        backoff = RecordingBackoff(0.2, 1.0)
        link = V5Link(_config(broker, root, username="nobody"), backoff=backoff)
        events = recorder()
        link.start(events)
        await wait_until_async(lambda: backoff.failures >= 2, what="two refused attempts")
        assert not link.connected
        assert events.connections == []
        link.stop()

    try:
        with caplog.at_level(logging.WARNING, logger="kerbside.collector.link.v5"):
            run(body)
    finally:
        broker.stop()
    assert "refused the connection: NOT_AUTHORIZED" in caplog.text


def test_collectors_sharing_a_subscription_get_each_message_once_between_them(
    broker: Mosquitto, request: pytest.FixtureRequest
) -> None:
    root = topic_root_for(request.node.name)

    async def body() -> None:
        links = [
            V5Link(
                _config(broker, root, client_id=f"collector-{n}"),
                subscriptions=gateway_filters(_config(broker, root), "collectors"),
            )
            for n in range(2)
        ]
        events = [recorder() for _ in links]
        for link, recorded in zip(links, events, strict=True):
            link.start(recorded)
        await wait_until_async(
            lambda: all(link.subscribed for link in links), None, "both subscribed"
        )
        await asyncio.to_thread(_gateway, broker.port, root, 200)
        await wait_until_async(
            lambda: sum(len(e.received) for e in events) == 200, None, "200 between them"
        )
        # none twice: 100 more, and each of the 300 came to one of them, once
        await asyncio.to_thread(_gateway, broker.port, root, 100, 200)
        await wait_until_async(
            lambda: sum(len(e.received) for e in events) >= 300, None, "300 between them"
        )
        payloads = [m.payload for e in events for m in e.received]
        assert sorted(payloads) == sorted(f"event {i}".encode() for i in range(300))
        assert all(e.received for e in events)  # the broker shared them
        for link in links:
            link.stop()

    run(body)


def test_the_broker_drops_a_packet_over_the_maximum_we_announced(
    broker: Mosquitto, request: pytest.FixtureRequest
) -> None:
    root = topic_root_for(request.node.name)

    async def body() -> None:
        await _session(broker, root)
        big = V5Link(_config(broker, root))
        events = recorder()

        def publish_two() -> None:
            client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="big-gw")
            client.connect("127.0.0.1", broker.port)
            client.loop_start()
            client.publish(
                f"{root}/gw/gw-1/events", b"x" * (1024 * 1024 + 1), qos=1
            ).wait_for_publish(10)
            client.publish(f"{root}/gw/gw-1/events", b"small", qos=1).wait_for_publish(10)
            client.loop_stop()
            client.disconnect()

        await asyncio.to_thread(publish_two)
        big.start(events)
        await wait_until_async(lambda: len(events.received) >= 1, what="the small one")
        # the big one was published first: had the broker let it through, it came before
        assert [m.payload for m in events.received] == [b"small"]
        assert big.connected
        big.stop()

    run(body)
