"""Several real collectors (``kerbside-collector run`` processes) on one PostgreSQL database and
a Mosquitto of the test's own, with gateway stand-ins publishing a street live on the test
clock (``KERBSIDE_COLLECTOR_CLOCK``, shared by every collector), and a watcher of what the
collectors publish.

The street: zones Z1..Z4 of ``BAYS_PER_ZONE`` paid bays each (observation 1 min, max stay 2 min,
controlled all the time); gateway gw-1 has Z1 and Z2, gw-2 Z3 and Z4. Each bay alternates
vacant spells and stays of 30 s to 4 min and is left vacant at the end, so that once the rules'
clocks pass the last departure every alert is cleared and the store's alerts are final.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import psycopg
from paho.mqtt.enums import CallbackAPIVersion

from kerbside.collector.replay import replay_lines
from kerbside.core.instants import format_instant, parse_instant
from kerbside.core.site import load_site
from tests.helpers import free_port, stop_process, wait_for_port

START = parse_instant("2026-11-26T09:00:00Z")
ZONES = ("Z1", "Z2", "Z3", "Z4")
BAYS_PER_ZONE = 10
CONFIRM_MS = 10_000
TOKEN = "cluster-analyst-token"
OFFICER = "cluster-officer-token"
GATEWAY_OF_ZONE = {"Z1": "gw-1", "Z2": "gw-1", "Z3": "gw-2", "Z4": "gw-2"}
SPEED = 4.0  # the test clock against the wall's: five minutes of parking in 75 s
LEASE_S = 3.0


def bays() -> list[tuple[str, str, str]]:
    """(bay, zone, gateway)."""
    return [
        (f"{zone}-B{i:02d}", zone, GATEWAY_OF_ZONE[zone])
        for zone in ZONES
        for i in range(1, BAYS_PER_ZONE + 1)
    ]


def write_site(path: Path) -> None:
    lines = [
        "site: cluster-street",
        "timezone: Europe/London",
        "defaults: {grace_minutes: 0, observation_minutes: 1}",
        "zones:",
        *(f"  - {{id: {z}, name: Zone {z}, controlled_hours: any}}" for z in ZONES),
        "bays:",
    ]
    lines.extend(
        f"  - {{id: {bay}, zone: {zone}, street: {zone} Street, kind: paid,"
        f" max_stay_minutes: 2, location: {{lat: 51.5, lon: -0.14}}, sensor: S-{bay},"
        f" gateway: {gateway}}}"
        for bay, zone, gateway in bays()
    )
    path.write_text("\n".join(lines) + "\n")


def street(seed: int, horizon_ms: int) -> list[tuple[int, str, str, str]]:
    """(instant, bay, gateway, state), in time order: each bay ends vacant before the horizon."""
    rng = random.Random(seed)
    out = []
    for bay, _zone, gateway in bays():
        t = START + rng.randint(2_000, 40_000)
        while True:
            stay = rng.choice(
                [
                    rng.randint(30_000, 55_000),
                    rng.randint(70_000, 110_000),
                    rng.randint(130_000, 200_000),
                ]
            )
            if t + stay >= horizon_ms:
                break
            out += [(t, bay, gateway, "occupied"), (t + stay, bay, gateway, "vacant")]
            t += stay + rng.randint(20_000, 60_000)
    return sorted(out)


@dataclass
class Clock:
    """The test clock the collectors run on: START at ``anchor`` (wall ms), ``speed`` times the
    wall."""

    speed: float
    anchor: int = field(default_factory=lambda: int(time.time() * 1000) + 1500)

    def now(self) -> int:
        return START + int((time.time() * 1000 - self.anchor) * self.speed)

    def wall_of(self, instant: int) -> float:
        """The wall time (s) at which the test clock reads ``instant``."""
        return (self.anchor + (instant - START) / self.speed) / 1000

    @property
    def env(self) -> str:
        return f"{format_instant(START)},{self.speed},{self.anchor}"


class Collectors:
    """Named collector processes of one cluster, started, killed, paused and resumed."""

    def __init__(
        self,
        workdir: Path,
        broker_port: int,
        url: str,
        root: str,
        *,
        alert_delay_s: float,
        names: tuple[str, ...] = ("a", "b", "c"),
        lease_s: float = LEASE_S,
    ) -> None:
        self.workdir = workdir
        self.clock = Clock(SPEED)
        self.url = url
        self.names = names
        self.alert_delay_s = alert_delay_s
        self.lease_s = lease_s
        write_site(workdir / "site.yaml")
        tokens = (("checker", "analyst", TOKEN), ("pc-1", "officer", OFFICER))
        (workdir / "tokens.yaml").write_text(
            "".join(
                f"- {{name: {who}, role: {role}, sha256: {hashlib.sha256(t.encode()).hexdigest()}}}"
                "\n"
                for who, role, t in tokens
            )
        )
        self.http = {name: free_port() for name in names}
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        for name in names:
            (workdir / name).mkdir(exist_ok=True)
            (workdir / f"{name}.yaml").write_text(
                f"site: {workdir / 'site.yaml'}\n"
                f"mqtt: {{host: 127.0.0.1, port: {broker_port}, topic_root: {root},"
                f" client_id: kerbside-{root.replace('/', '-')}, shared_group: kerbside,"
                " keepalive_s: 5}\n"
                f"store: {{url: '{url}'}}\n"
                f"http: {{host: 127.0.0.1, port: {self.http[name]}}}\n"
                f"tokens_file: {workdir / 'tokens.yaml'}\n"
                f"alert_delay_s: {alert_delay_s}\n"
                "maintenance: {gateway_offline_after_s: 100000}\n"
                f"cluster: {{node_id: {name}, lease_s: {lease_s}}}\n"
            )

    def config(self, name: str) -> Path:
        return self.workdir / f"{name}.yaml"

    def log(self, name: str) -> Path:
        return self.workdir / name / "collector.log"

    def start(self, name: str) -> None:
        env = {
            **os.environ,
            "KERBSIDE_COLLECTOR_CLOCK": self.clock.env,
            "STATE_DIRECTORY": str(self.workdir / name),
            "PYTHONFAULTHANDLER": "1",
        }
        with self.log(name).open("ab") as out:
            self.procs[name] = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "kerbside.collector.cli",
                    "run",
                    "--config",
                    str(self.config(name)),
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
            )

    def wait_serving(self, name: str, timeout: float = 60) -> None:
        wait_for_port(self.http[name], timeout=timeout)

    def start_all(self) -> None:
        """Every collector started and serving, each with its session at the broker (so that
        none misses the first event)."""
        for name in self.names:
            self.start(name)
        for name in self.names:
            self.wait_serving(name)
        poll(
            lambda: all("connected to" in self.log(n).read_text() for n in self.names),
            30,
            "connected",
            self.logs,
        )

    def wait_settled(self, events: int, horizon_ms: int, timeout: float) -> None:
        """Until ``events`` events are stored and, once the test clock is past ``horizon_ms``
        and the alert delay (every departure followed by the zones' owners), every alert is
        cleared."""
        poll(
            lambda: rows(self.url, "SELECT count(*) FROM events") == [(events,)],
            timeout,
            "every event stored",
            self.logs,
        )
        poll(
            lambda: (
                self.clock.now() > horizon_ms + int(self.alert_delay_s * 1000)
                and rows(
                    self.url,
                    "SELECT count(*) FROM alerts WHERE status IN ('open', 'acknowledged')",
                )
                == [(0,)]
            ),
            90,
            "every alert cleared",
            self.logs,
        )

    def replayed(self, name: str, until: int) -> tuple[list[str], list[dict[str, Any]]]:
        """The journal as ``export-journal`` gives it (with ``name``'s config), and the alerts
        ``replay`` of it raises up to ``until``."""
        exported = subprocess.run(
            [
                sys.executable,
                "-m",
                "kerbside.collector.cli",
                "export-journal",
                "--config",
                str(self.config(name)),
            ],
            capture_output=True,
            check=True,
            text=True,
        ).stdout.splitlines()
        replayed, errors = replay_lines(exported, load_site(self.workdir / "site.yaml"), until)
        assert errors == []
        return exported, replayed

    def kill(self, name: str) -> None:
        proc = self.procs[name]
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)

    def pause(self, name: str) -> None:
        self.procs[name].send_signal(signal.SIGSTOP)

    def resume(self, name: str) -> None:
        self.procs[name].send_signal(signal.SIGCONT)

    def stop_all(self) -> dict[str, int | None]:
        """SIGTERM to every collector still running; their exit statuses."""
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGCONT)
                proc.send_signal(signal.SIGTERM)
        codes = {}
        for name, proc in self.procs.items():
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGABRT)  # its threads' stacks into its log
                stop_process(proc, signal.SIGKILL, timeout=10)
            codes[name] = proc.returncode
        return codes

    def get(self, name: str, path: str) -> Any:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.http[name]}{path}",
            headers={"Authorization": f"Bearer {TOKEN}"},
        )
        with urllib.request.urlopen(request, timeout=10) as resp:
            return json.loads(resp.read())

    def logs(self) -> str:
        return "\n".join(
            f"=== {name}\n{self.log(name).read_text(errors='replace')[-6000:]}"
            for name in self.names
            if self.log(name).exists()
        )


class Gateways:
    """gw-1 and gw-2, each a paho client publishing its bays' changes live: an event when the
    test clock reaches its confirmation (QoS 1, waited for), as an edge agent does."""

    def __init__(
        self, port: int, root: str, clock: Clock, changes: list[tuple[int, str, str, str]]
    ):
        self.root = root
        self.clock = clock
        self.changes = changes
        self.published: dict[str, str] = {}
        self.clients: dict[str, mqtt.Client] = {}
        for gateway in ("gw-1", "gw-2"):
            client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"{root}-{gateway}")
            client.connect("127.0.0.1", port)
            client.loop_start()
            status = {
                "v": 1,
                "gateway_id": gateway,
                "online": True,
                "ts": format_instant(clock.now()),
                "version": "test",
                "clock_synced": True,
            }
            client.publish(f"{root}/gw/{gateway}/status", json.dumps(status), qos=1, retain=True)
            self.clients[gateway] = client
        self._lock = threading.Lock()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self.thread.start()

    def _run(self) -> None:
        seqs = {"gw-1": 0, "gw-2": 0}
        for at, bay, gateway, state in self.changes:
            confirmed = at + CONFIRM_MS
            while self.clock.now() < confirmed:
                time.sleep(0.01)
            seqs[gateway] += 1
            seq = seqs[gateway]
            event_id = f"{gateway}:c1u5t3r:{seq}"
            body: dict[str, object] = {
                "v": 1,
                "event_id": event_id,
                "gateway_id": gateway,
                "seq": seq,
                "bay_id": bay,
                "sensor_id": f"S-{bay}",
                "state": state,
                "ts": format_instant(at),
                "confirmed_ts": format_instant(confirmed),
                "reason": None,
            }
            text = json.dumps(body)
            with self._lock:
                self.published[event_id] = text
            info = self.clients[gateway].publish(f"{self.root}/gw/{gateway}/events", text, qos=1)
            info.wait_for_publish(30)

    def join(self, timeout: float) -> None:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the gateways did not finish publishing"

    def close(self) -> None:
        for client in self.clients.values():
            client.loop_stop()
            client.disconnect()


class Watcher:
    """Everything the collectors publish on the alerts topics, with the wall time it arrived."""

    def __init__(self, port: int, root: str) -> None:
        self.seen: list[tuple[float, dict[str, Any]]] = []
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"{root}-watcher")

        def on_message(_c: object, _u: object, m: mqtt.MQTTMessage) -> None:
            self.seen.append((time.time(), json.loads(m.payload)))

        self.client.on_message = on_message
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *_: subscribed.set()
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self.client.subscribe(f"{root}/alerts/#", qos=1)
        assert subscribed.wait(10)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


class AlertStream:
    """An officer's alert stream (SSE) read from the collectors in turn: whenever the connection
    ends (its collector killed, or quiet for a few seconds) it resumes on the next collector
    with ``Last-Event-ID``, as a browser's EventSource behind a load balancer would."""

    def __init__(self, cluster: Collectors) -> None:
        self.cluster = cluster
        self.changes: list[tuple[int, dict[str, Any]]] = []
        self.connections: list[str] = []
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        last = 0
        turn = 0
        while not self._stop.is_set():
            name = self.cluster.names[turn % len(self.cluster.names)]
            turn += 1
            request = urllib.request.Request(
                f"http://127.0.0.1:{self.cluster.http[name]}/api/v1/alerts/stream",
                headers={"Authorization": f"Bearer {OFFICER}", "Last-Event-ID": str(last)},
            )
            try:
                with urllib.request.urlopen(request, timeout=3) as resp:
                    self.connections.append(name)
                    change: int | None = None
                    for raw in resp:
                        line = raw.decode().rstrip("\n")
                        if line.startswith("id: "):
                            change = int(line[4:])
                        elif line.startswith("data: ") and change is not None:
                            self.changes.append((change, json.loads(line[6:])))
                            last = change
                        elif not line:
                            change = None
                        if self._stop.is_set():
                            return
            except (OSError, http.client.HTTPException):
                time.sleep(0.2)

    def close(self) -> None:
        self._stop.set()
        self.thread.join(10)


def alert_key(alert: dict[str, Any]) -> tuple[Any, ...]:
    """What live alerts and replayed ones must agree on."""
    fields = ("alert_id", "kind", "bay_id", "status", "raised_at", "cleared_at", "clear_reason")
    return tuple(alert[k] for k in fields)


def rows(url: str, sql: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as db:
        return db.execute(sql.encode()).fetchall()


def poll(
    condition: Callable[[], object], timeout: float, what: str, logs: Callable[[], str]
) -> None:
    """Until ``condition``; on timeout fail with the collectors' logs."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not after {timeout}s\n{logs()}")
        time.sleep(0.2)
