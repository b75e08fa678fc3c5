"""paho's network loop with our reconnects: each wait between attempts is the one Backoff's, and
the backoff starts over when the broker accepts the connection."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from kerbside.core.reconnect import serve_connection
from tests.helpers import Mosquitto, RecordingBackoff, free_port, wait_until

pytestmark = pytest.mark.slow  # starts processes (brokers, programs, servers)


def test_attempts_wait_the_backoff_and_a_connack_resets_it(tmp_path: Path) -> None:
    port = free_port()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="reconnect-test")
    client.connect_async("127.0.0.1", port, keepalive=5)
    backoff = RecordingBackoff(0.1, 0.4)
    attempts: list[float] = []
    stop = threading.Event()
    thread = threading.Thread(
        target=serve_connection,
        args=(client, backoff, stop),
        kwargs={"unreachable": lambda exc: attempts.append(time.monotonic())},
    )
    thread.start()
    broker: Mosquitto | None = None
    try:
        wait_until(lambda: len(attempts) >= 4, what="four refused attempts")
        assert [delay for _, delay in backoff.given[:3]] == [0.1, 0.2, 0.4]
        assert backoff.spaced(attempts)
        broker = Mosquitto(tmp_path, port=port).start()
        wait_until(client.is_connected, what="the client connected once the broker is up")
        assert backoff.failures == 0
        assert backoff.resets == 1
    finally:
        stop.set()
        client.disconnect()
        thread.join(5)
        if broker is not None:
            broker.stop()
    assert not thread.is_alive(), "stop and disconnect end the loop"


def test_messages_published_from_another_thread_go_out_in_order(tmp_path: Path) -> None:
    """paho writes a publish at once from the caller's thread unless an event loop is said to
    write: beside the thread serving the connection, two threads would take packets off one
    queue and send them in either order. Served here, only the loop's thread writes."""
    broker = Mosquitto(tmp_path).start()
    received: list[int] = []
    sub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="order-sub")
    sub.on_message = lambda c, u, msg: received.append(int(msg.payload))
    sub.connect("127.0.0.1", broker.port)
    sub.subscribe("order/#", qos=1)
    sub.loop_start()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="order-pub")
    client.max_inflight_messages_set(0)
    window = threading.Semaphore(200)  # a publisher's window: the next as an ack comes in
    client.on_publish = lambda c, u, mid, rc, p: window.release()
    client.connect_async("127.0.0.1", broker.port, keepalive=5)
    stop = threading.Event()
    thread = threading.Thread(
        target=serve_connection,
        args=(client, RecordingBackoff(0.1, 0.4), stop),
        kwargs={"unreachable": lambda exc: None},
    )
    thread.start()
    count = 20_000
    try:
        wait_until(client.is_connected, what="the publisher connected")
        time.sleep(0.2)  # the subscription in place
        for i in range(count):
            assert window.acquire(timeout=10)
            client.publish("order/x", str(i).encode(), qos=1)
        wait_until(lambda: len(received) >= count, what=f"{count} messages at the subscriber")
        assert received == list(range(count))
    finally:
        stop.set()
        client.disconnect()
        thread.join(5)
        sub.loop_stop()
        sub.disconnect()
        broker.stop()
