"""The stack the reliability cases attack: a private Mosquitto, ``kerbside-collector run`` as a
process with its HTTP API (tests/collector/api/live.py), a site of two gateways, tokens for two
providers, and an MQTT client that acts as a gateway (or as anyone else) and records what the
collector publishes."""

from __future__ import annotations

import json
import os
import queue
import resource
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from kerbside.collector.tokens import TokenHolder, hash_token, load_tokens, save_tokens
from kerbside.core.instants import format_instant
from tests.collector.api.live import LiveCollector
from tests.helpers import Mosquitto


def site_text(bays: int = 4) -> str:
    """Zone Z1, controlled all the time; paid bays B001.. (sensor S001..) on gw-1 but B004 on
    gw-2; observation 0 (an unpaid alert is due on arrival), max stay 2 minutes, grace 0."""
    lines = [
        "site: test",
        "timezone: Europe/London",
        "defaults: {grace_minutes: 0, observation_minutes: 0}",
        "zones:",
        "  - {id: Z1, name: Test, controlled_hours: any}",
        "bays:",
    ]
    lines += [
        f"  - {{id: B{i:03d}, zone: Z1, street: Test St, kind: paid, max_stay_minutes: 2,"
        f" location: {{lat: 51.5, lon: -0.14}}, sensor: S{i:03d},"
        f" gateway: gw-{2 if i == 4 else 1}}}"
        for i in range(1, bays + 1)
    ]
    return "\n".join(lines) + "\n"


EXTRA_TOKENS = {"provider-2": "provider", "officer-2": "officer", "officer-3": "officer"}


def token(name: str) -> str:
    return f"live-token-{name}"


def now_ms() -> int:
    return int(time.time() * 1000)


class Stack(LiveCollector):
    """The collector of tests/collector/api/live.py on the two-gateway site, with more tokens
    (``provider-2``, ``officer-2``, ``officer-3``: their token is ``token(name)``) and extra
    config lines."""

    def __init__(
        self,
        workdir: Path,
        broker: Mosquitto,
        topic_root: str,
        *,
        bays: int = 4,
        extra_config: str = "",
        files_limit: int | None = None,
    ) -> None:
        super().__init__(workdir, broker, topic_root, site=site_text(bays))
        self.files_limit = files_limit
        holders = load_tokens(workdir / "tokens.yaml")
        holders += [TokenHolder(n, r, hash_token(token(n))) for n, r in EXTRA_TOKENS.items()]
        save_tokens(workdir / "tokens.yaml", holders)
        if extra_config:
            self.config.write_text(self.config.read_text() + extra_config)

    def _spawn(self) -> None:
        """As live.py's, under ``files_limit`` open files (RLIMIT_NOFILE) if given."""
        super()._spawn()
        if self.files_limit is not None:  # before it gets far: it reads the limit at start
            assert self.proc is not None
            limit = (self.files_limit, self.files_limit)
            resource.prlimit(self.proc.pid, resource.RLIMIT_NOFILE, limit)

    def as_token(self, name: str) -> Any:
        import httpx  # noqa: PLC0415 (as in live.py)

        return httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {token(name)}"}, timeout=10
        )

    def metric(self, name: str, labels: str = "") -> float:
        with self.client() as client:
            text = client.get("/metrics").text
        for line in text.splitlines():
            if line.startswith((f"{name}{labels} ", f"{name}{{{labels}}} ")):
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    def rss_kib(self) -> int:
        """Resident memory of the collector and its MQTT link process, in KiB."""
        assert self.proc is not None
        pids = [self.proc.pid]
        children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
        if children.exists():
            pids += [int(p) for p in children.read_text().split()]
        total = 0
        for pid in pids:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        return total


class Wire:
    """An MQTT client on the stack's broker: publishes as a gateway (QoS 1, waiting for the
    broker's ack) and records every message under the topic root."""

    def __init__(self, port: int, root: str, client_id: str) -> None:
        self.root = root
        self.received: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self.seen: list[tuple[str, bytes]] = []
        self._lock = threading.Lock()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"{client_id}-{os.getpid()}"
        )
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        done = threading.Event()
        self.client.on_subscribe = lambda *_: done.set()
        self.client.subscribe(f"{root}/#", 1)
        self.client.loop_start()
        assert done.wait(10), "no SUBACK"

    def _on_message(self, _c: object, _u: object, message: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.seen.append((message.topic, bytes(message.payload)))

    def publish(self, topic: str, payload: bytes | str, qos: int = 1) -> None:
        info = self.client.publish(f"{self.root}/{topic}", payload, qos=qos)
        info.wait_for_publish(timeout=30)

    def on(self, suffix: str) -> list[dict[str, Any]]:
        with self._lock:
            return [json.loads(p) for t, p in self.seen if t.endswith(suffix)]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def event(gateway: str, n: int, bay: str, state: str, at: int, **over: Any) -> dict[str, Any]:
    """Gateway ``gateway``'s event number ``n`` (the wire shape); ``over`` replaces fields."""
    body: dict[str, Any] = {
        "v": 1,
        "event_id": f"{gateway}:rel:{n}",
        "gateway_id": gateway,
        "seq": n,
        "bay_id": bay,
        "sensor_id": "S" + bay[1:],
        "state": state,
        "ts": format_instant(at),
        "confirmed_ts": format_instant(at + 100),
        "reason": None,
    }
    body.update(over)
    return body


def health(gateway: str, sensors: list[tuple[str, int]]) -> dict[str, Any]:
    return {
        "v": 1,
        "gateway_id": gateway,
        "ts": format_instant(now_ms()),
        "uptime_s": 60,
        "outbox_depth": 0,
        "events_dropped": 0,
        "unknown_sensors": 0,
        "ports": [],
        "sensors": [{"sensor_id": s, "battery_mv": mv} for s, mv in sensors],
    }
