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
