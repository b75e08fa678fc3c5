"""The collector's MQTT side against a real Mosquitto: hostile input, the broker's backlog."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from kerbside.collector.config import load_config
from kerbside.collector.runtime import Collector, serve
from kerbside.core.site import load_site
from tests.helpers import Mosquitto, present, wait_until_async, write_collector_setup
from tests.helpers import occupancy_event as event

pytestmark = pytest.mark.slow  # starts processes (brokers, programs, servers)


class Client:
    """A test's own MQTT client: publishes as a gateway, records what the collector says."""

    def __init__(self, port: int, subscribe: str | None = None) -> None:
        self.received: list[tuple[str, bytes]] = []
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self.client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2)
        self.client.on_message = self._on_message
        self._subscribe = subscribe
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *_: self._ready.set()
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert self._ready.wait(10), "no CONNACK, or no SUBACK for " + str(subscribe)

    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any
    ) -> None:
        if self._subscribe:
            client.subscribe(self._subscribe, 1)  # ready once its SUBACK is back
        else:
            self._ready.set()

    def _on_message(self, client: Any, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.received.append((msg.topic, bytes(msg.payload)))

    def publish(self, topic: str, payload: bytes | str | dict[str, Any]) -> None:
        data = json.dumps(payload) if isinstance(payload, dict) else payload
        self.client.publish(topic, data, qos=1).wait_for_publish(10)

    def messages(self, suffix: str) -> list[dict[str, Any]]:
        with self._lock:
            return [json.loads(p) for t, p in self.received if t.endswith(suffix)]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def run_collector(config_path: Path, body: Callable[[Collector], Awaitable[None]]) -> None:
    async def main() -> None:
        config = load_config(config_path)
        started, stop = asyncio.Event(), asyncio.Event()
        out: list[Collector] = []
        task = asyncio.create_task(
            serve(config, load_site(config.site), started=started, stop=stop, collector_out=out)
        )
        await asyncio.wait_for(started.wait(), 10)
        service = out[0]
        try:
            await wait_until_async(lambda: service.link.connected)
            await body(service)
        finally:
            stop.set()
            await task

    asyncio.run(main())


def test_hostile_input_is_dead_lettered_and_good_messages_beside_it_are_processed(
    tmp_path: Path, broker: Mosquitto, topic_root: str
) -> None:
    config = write_collector_setup(tmp_path, port=broker.port, topic_root=topic_root)
    watcher = Client(broker.port, f"{topic_root}/#")
    gateway = Client(broker.port)
    events = f"{topic_root}/gw/gw-1/events"
    now = int(time.time() * 1000)
    hostile: list[tuple[str, bytes | dict[str, Any], str]] = [
        (events, b"{not json", "not_json"),
        (events, b"\xc3\x28\xa0\xa1 invalid utf-8", "not_utf8"),
        (events, event(3, "B003", "occupied", now, seq="3"), "schema"),
        (events, event(4, "B003", "occupied", now, ts=12), "schema"),
        # over 64 KiB (at 1 MiB and more the broker would not even hand it to the collector)
        (events, b"x" * (200 * 1024), "too_large"),
        (events, event(5, "NOPE", "occupied", now), "unknown_bay"),
        (events, event(6, "B003", "occupied", now, gateway_id="gw-evil"), "gateway_mismatch"),
        (
            f"{topic_root}/gw/gw-2/events",
            event(7, "B003", "occupied", now, gateway_id="gw-2"),
            "unknown_gateway",  # gw-2 has no bay in the site
        ),
        (events, event(1, "B001", "vacant", now), "duplicate_conflict"),
        (events, event(8, "B003", "occupied", now, v=9), "unknown_version"),
        (f"{topic_root}/gw/gw-1/status", b'{"v":1,"gateway_id":"gw-1","online":1}', "schema"),
    ]

    async def body(service: Collector) -> None:
        gateway.publish(events, event(1, "B001", "occupied", now - 12_000))
        for topic, payload, _ in hostile:
            gateway.publish(topic, payload)
            gateway.publish(
                events, event(1, "B001", "occupied", now - 12_000)
            )  # same body: ignored
        gateway.publish(events, event(2, "B002", "occupied", now - 11_000))
        await wait_until_async(lambda: len(watcher.messages("/deadletter")) >= len(hostile))
        await wait_until_async(lambda: present(service.queries.bay("B002"))["state"] == "occupied")
        assert present(service.queries.bay("B001"))["state"] == "occupied"
        assert present(service.queries.bay("B003"))["state"] == "unknown"
        assert service.store.count_events() == 2
        assert service.store.counters()["duplicates"] == len(hostile)
        dead = watcher.messages("/deadletter")
        assert [d["reason"] for d in dead] == [reason for _, _, reason in hostile]
        assert dead[0] == {
            "v": 1,
            "topic": events,
            "reason": "not_json",
            "payload": "{not json",
            "size": 9,
        }
        assert (dead[4]["size"], dead[4]["payload"]) == (200 * 1024, "x" * 1024)
        assert sum(service.queries.metrics()["rejected"].values()) == len(hostile)
        await wait_until_async(lambda: len(watcher.messages("/bays/B002")) > 0)
        retained = watcher.messages("/bays/B002")
        assert retained[-1]["state"] == "occupied"
        assert retained[-1]["zone_id"] == "Z1"

    try:
        run_collector(config, body)
    finally:
        watcher.close()
        gateway.close()


def test_events_queued_while_the_collector_was_down_are_processed_in_order(
    tmp_path: Path, broker: Mosquitto, topic_root: str
) -> None:
    config = write_collector_setup(tmp_path, port=broker.port, topic_root=topic_root, bays=8)

    async def nothing(service: Collector) -> None:
        return

    run_collector(config, nothing)  # creates the persistent session at the broker
    gateway = Client(broker.port)
    now = int(time.time() * 1000) - 3_600_000
    states = ["occupied", "vacant"]
    total = 400
    for n in range(1, total + 1):
        bay = f"B{(n % 8) + 1:03d}"
        gateway.publish(
            f"{topic_root}/gw/gw-1/events",
            event(n, bay, states[(n // 8) % 2], now + n * 1000),
        )
    gateway.close()

    async def drained(service: Collector) -> None:
        await wait_until_async(lambda: service.store.count_events() == total)
        seqs = [e.body["seq"] for e in service.store.journal(types=["occupancy"])]
        assert seqs == list(range(1, total + 1))
        assert "rejected.internal_error" not in service.store.counters()

    run_collector(config, drained)
