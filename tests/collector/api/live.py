"""A real ``kerbside-collector run`` (subprocess) with its HTTP API, a private Mosquitto, a
tokens file, and a gateway stand-in that publishes occupancy events; restartable."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any, Self

import httpx
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from kerbside.collector.tokens import TokenHolder, hash_token, save_tokens
from kerbside.core.instants import format_instant
from tests.helpers import Mosquitto, free_port, wait_for_port, wait_until, write_collector_setup

ROLES = ("officer", "analyst", "admin", "provider")


def live_token(role: str) -> str:
    return f"live-token-{role}"


class LiveCollector:
    """``start()``/``stop()``/``restart()`` keep the same store, port and tokens."""

    def __init__(
        self,
        workdir: Path,
        broker: Mosquitto,
        topic_root: str,
        bays: int = 4,
        site: str | None = None,
    ) -> None:
        """``site``: a site file's text to use instead of the helpers' one (sensor of bay X:
        ``S`` + X without its first character, gateway ``gw-1``)."""
        self.workdir = workdir
        self.broker = broker
        self.topic_root = topic_root
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config = write_collector_setup(
            workdir, port=broker.port, topic_root=topic_root, bays=bays, alert_delay_s=3.0
        )
        # Observation 0: an unpaid alert is due on arrival, raised alert_delay_s later (a
        # minute's observation would make every test wait a minute; records arriving later
        # than alert_delay_s may only clear alerts, so events cannot be backdated instead).
        site_file = workdir / "site.yaml"
        site_file.write_text(
            site
            or site_file.read_text().replace("observation_minutes: 1", "observation_minutes: 0")
        )
        text = self.config.read_text().replace(
            "http: null\n",
            f"http: {{host: 127.0.0.1, port: {self.port}}}\ntokens_file: tokens.yaml\n",
        )
        self.config.write_text(text)
        save_tokens(
            workdir / "tokens.yaml",
            [TokenHolder(f"{r}-1", r, hash_token(live_token(r))) for r in ROLES],
        )
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = workdir / "collector.log"
        self._seq = itertools.count(1)

    def start(self) -> Self:
        subscribed = self._subscriptions()
        self._spawn()
        try:
            wait_for_port(self.port, timeout=30)
        except TimeoutError:
            raise RuntimeError(self.log.read_text()[-3000:]) from None
        # Ready when the broker link is up and the broker granted its subscription.
        self.wait_for(None, "/healthz", lambda h: h.get("broker") == "ok", timeout=20)
        wait_until(lambda: self._subscriptions() > subscribed, 20, "the collector's SUBACK")
        return self

    def _spawn(self) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "kerbside.collector.cli", "run", "--config",
                 str(self.config)],
                stdout=log, stderr=subprocess.STDOUT, env=env, cwd=self.workdir,
            )  # fmt: skip

    def _subscriptions(self) -> int:
        """SUBACKs the collector has logged so far (its log is kept across restarts)."""
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return text.count("link.v5: subscribed to") + text.count("link.child: subscribed to")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def client(self, role: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {live_token(role)}"} if role else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=10)

    def publish_event(self, bay: str, state: str, ts: int, gateway: str = "gw-1") -> None:
        """What a gateway sends, QoS 1, waiting for the broker's ack."""
        self.publish_events([(bay, state, ts)], gateway)

    def publish_events(self, events: list[tuple[str, str, int]], gateway: str = "gw-1") -> None:
        """Several (bay, state, ts) events over one connection, in order."""
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"gw-test-{os.getpid()}-{next(self._seq)}"
        )
        client.connect("127.0.0.1", self.broker.port)
        client.loop_start()
        try:
            for bay, state, ts in events:
                seq = next(self._seq)
                body = {
                    "v": 1, "event_id": f"{gateway}:apitest:{seq}", "gateway_id": gateway,
                    "seq": seq, "bay_id": bay, "sensor_id": "S" + bay[1:], "state": state,
                    "ts": format_instant(ts), "confirmed_ts": format_instant(ts + 100),
                    "reason": None,
                }  # fmt: skip
                topic = f"{self.topic_root}/gw/{gateway}/events"
                client.publish(topic, json.dumps(body), qos=1).wait_for_publish(timeout=10)
        finally:
            client.disconnect()  # before loop_stop: the loop then ends at once
            client.loop_stop()

    def wait_for(
        self, role: str | None, path: str, pred: Any, timeout: float = 15.0, **params: Any
    ) -> Any:
        """Poll ``GET path`` (as ``role``, or with no token) until ``pred(json)`` is truthy;
        return that json."""
        answers: list[Any] = []

        def answered() -> bool:
            r = c.get(path, params=params)
            if r.status_code in (200, 503):
                answers.append(r.json())
                return bool(pred(answers[-1]))
            return False

        with self.client(role) as c:
            try:
                wait_until(answered, timeout, every=0.1)
            except AssertionError:
                last = answers[-1] if answers else None
                raise AssertionError(
                    f"waited on {path}: last {last}\n{self.log.read_text()[-2000:]}"
                ) from None
        return answers[-1]
