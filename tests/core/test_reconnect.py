"""paho's network loop with our reconnects: each wait between attempts is the one Backoff's, and
the backoff starts over when the broker accepts the connection."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from kerbside.core.reconnect import serve_connection
from tests.helpers import Mosquitto, RecordingBackoff, free_port, wait_until

pytestmark = pytest.mark.slow  # starts processes (brokers, programs, servers)


@contextlib.contextmanager
def served(
    client: mqtt.Client, backoff: RecordingBackoff, unreachable: Callable[[OSError], None]
) -> Iterator[threading.Thread]:
    """``client``'s connection served on a thread of its own, as the programs do; on leaving,
    stopped as they stop it (``stop``, then ``disconnect``)."""
    stop = threading.Event()
    thread = threading.Thread(
        target=serve_connection, args=(client, backoff, stop), kwargs={"unreachable": unreachable}
    )
    thread.start()
    try:
        yield thread
    finally:
        stop.set()
        client.disconnect()
        thread.join(5)


def test_attempts_wait_the_backoff_and_a_connack_resets_it(tmp_path: Path) -> None:
    port = free_port()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="reconnect-test")
    client.connect_async("127.0.0.1", port, keepalive=5)
    backoff = RecordingBackoff(0.1, 0.4)
    attempts: list[float] = []
    broker: Mosquitto | None = None
    try:
        with served(client, backoff, lambda exc: attempts.append(time.monotonic())) as thread:
            wait_until(lambda: len(attempts) >= 4, what="four refused attempts")
            assert [delay for _, delay in backoff.given[:3]] == [0.1, 0.2, 0.4]
            assert backoff.spaced(attempts)
            broker = Mosquitto(tmp_path, port=port).start()
            wait_until(client.is_connected, what="the client connected once the broker is up")
            assert backoff.failures == 0
            assert backoff.resets == 1
    finally:
        if broker is not None:
            broker.stop()
    assert not thread.is_alive(), "stop and disconnect end the loop"


def test_messages_published_from_another_thread_go_out_in_order(tmp_path: Path) -> None:
    """paho writes a publish at once from the caller's thread unless an event loop is said to
    write: beside the thread serving the connection, two threads would take packets off one
    queue and send them in either order. Served here, only the loop's thread writes."""
    broker = Mosquitto(tmp_path).start()
    received: list[int] = []
    subscribed = threading.Event()
    sub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="order-sub")
    sub.on_message = lambda c, u, msg: received.append(int(msg.payload))
    sub.on_subscribe = lambda c, u, mid, rc, p: subscribed.set()
    sub.connect("127.0.0.1", broker.port)
    sub.subscribe("order/#", qos=1)
    sub.loop_start()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="order-pub")
    client.max_inflight_messages_set(0)
    window = threading.Semaphore(200)  # a publisher's window: the next as an ack comes in
    client.on_publish = lambda c, u, mid, rc, p: window.release()
    client.connect_async("127.0.0.1", broker.port, keepalive=5)
    count = 20_000
    try:
        with served(client, RecordingBackoff(0.1, 0.4), lambda exc: None):
            assert subscribed.wait(10), "the subscription in place"
            wait_until(client.is_connected, what="the publisher connected")
            for i in range(count):
                assert window.acquire(timeout=10)
                client.publish("order/x", str(i).encode(), qos=1)
            wait_until(lambda: len(received) >= count, what=f"{count} messages at the subscriber")
        assert received == list(range(count))
    finally:
        sub.loop_stop()
        sub.disconnect()
        broker.stop()
