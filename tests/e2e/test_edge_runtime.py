"""End to end: ``kerbside-sim serial`` -> pseudo-terminals -> the real agent -> a real Mosquitto.

Every process is real (the simulator, ``kerbside-edge run``, ``kerbside-edge replay``,
Mosquitto); the simulator runs faster than real time (``--speed``) and the detector confirms in
a second or two of wall time, so a street's worth of events happens in seconds.
"""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
import yaml
from paho.mqtt.enums import CallbackAPIVersion

from kerbside.core.instants import parse_instant
from kerbside.edge.outbox import read_epoch
from tests.helpers import Mosquitto, wait_until

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent


@dataclass
class Street:
    proc: subprocess.Popen[str]
    ports: list[Path]
    config: Path

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def start_street(workdir: Path, sensors: int, per_port: int, speed: float, seed: int) -> Street:
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "sim-edge.yaml"
    n_ports = -(-sensors // per_port)
    proc = subprocess.Popen(
        [
            str(BIN / "kerbside-sim"),
            "serial",
            "--sensors",
            str(sensors),
            "--sensors-per-port",
            str(per_port),
            "--speed",
            str(speed),
            "--seed",
            str(seed),
            "--scenario",
            "clean",
            "--dir",
            str(workdir / "ttys"),
            "--config-out",
            str(config),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    ports: list[Path] = []
    while len(ports) < n_ports:
        line = proc.stdout.readline()
        if not line:
            raise AssertionError(f"kerbside-sim serial exited early ({proc.wait()})")
        ports.append(Path(line.strip()))
    return Street(proc, ports, config)


def agent_config(
    street: Street, broker: Mosquitto, topic_root: str, outbox: Path, path: Path
) -> Path:
    """The simulator's edge config, pointed at our broker and outbox, confirming quickly."""
    config = yaml.safe_load(street.config.read_text())
    config["mqtt"] = {"host": "127.0.0.1", "port": broker.port, "topic_root": topic_root}
    config["outbox"] = {"path": str(outbox), "max_mb": 16}
    config["detector"] = {"confirm_occupied_s": 1.5, "confirm_vacant_s": 1.5, "silence_s": 120}
    config["health_interval_s"] = 1
    config["clock"] = {"require_sync": False}
    path.write_text(yaml.safe_dump(config))
    return path


@dataclass
class Agent:
    proc: subprocess.Popen[bytes]
    log: Path

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


def start_agent(config: Path, capture: Path, log: Path) -> Agent:
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [str(BIN / "kerbside-edge"), "run", "--config", str(config), "--capture", str(capture)],
            stdout=out,
            stderr=out,
        )
    return Agent(proc, log)


def stop_agent(agent: Agent) -> int:
    agent.proc.send_signal(signal.SIGTERM)
    return agent.proc.wait(timeout=20)


@dataclass
class Subscriber:
    """A persistent-session QoS 1 subscriber: it misses nothing across a broker restart."""

    broker: Mosquitto
    topic_root: str
    messages: list[tuple[str, bytes, bool]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"test-sub-{uuid.uuid4().hex[:8]}",
            clean_session=False,
        )
        self.client.reconnect_delay_set(min_delay=1, max_delay=2)
        subscribed = threading.Event()
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(f"{self.topic_root}/#", qos=1)
        self.client.on_subscribe = lambda c, u, mid, rc, p: subscribed.set()
        self.client.on_message = self._message
        self.client.connect("127.0.0.1", self.broker.port)
        self.client.loop_start()
        assert subscribed.wait(10), "subscription not acknowledged"

    def _message(self, client: Any, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        with self.lock:
            self.messages.append((msg.topic, bytes(msg.payload), msg.retain))

    def payloads(self, leaf: str) -> list[dict[str, Any]]:
        with self.lock:
            return [json.loads(p) for t, p, _ in self.messages if t.endswith("/" + leaf)]

    def events(self) -> list[dict[str, Any]]:
        return self.payloads("events")

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def subscriber_factory() -> Iterator[Callable[[Mosquitto, str], Subscriber]]:
    made: list[Subscriber] = []

    def make(broker: Mosquitto, topic_root: str) -> Subscriber:
        sub = Subscriber(broker, topic_root)
        made.append(sub)
        return sub

    yield make
    for sub in made:
        sub.close()


@pytest.fixture
def street_factory() -> Iterator[Callable[..., Street]]:
    made: list[Street] = []

    def make(workdir: Path, sensors: int = 20, per_port: int = 10, speed: float = 60) -> Street:
        street = start_street(workdir, sensors, per_port, speed, seed=7)
        made.append(street)
        return street

    yield make
    for street in made:
        street.stop()


@pytest.fixture
def agents() -> Iterator[list[Agent]]:
    made: list[Agent] = []
    yield made
    for agent in made:
        if agent.proc.poll() is None:
            agent.proc.kill()
            agent.proc.wait()


def first_by_id(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each event_id once (QoS 1 may redeliver), in order of first arrival."""
    seen: set[str] = set()
    out = []
    for event in events:
        if event["event_id"] not in seen:
            seen.add(event["event_id"])
            out.append(event)
    return out


def replay(capture: Path, config: Path) -> list[dict[str, Any]]:
    done = subprocess.run(
        [str(BIN / "kerbside-edge"), "replay", str(capture), "--config", str(config)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return [json.loads(line) for line in done.stdout.splitlines() if line.strip()]


def capture_records(capture: Path) -> list[dict[str, Any]]:
    """The records written so far (complete lines only: the agent may be mid-write)."""
    if not capture.exists():
        return []
    text = capture.read_text()
    return [json.loads(line) for line in text[: text.rfind("\n") + 1].splitlines() if line]


def outbox_state(path: Path) -> tuple[int, int]:
    """(last_seq, events still stored), read-only."""
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        last = int(conn.execute("SELECT value FROM meta WHERE key = 'last_seq'").fetchone()[0])
        depth = int(conn.execute("SELECT COUNT(*) FROM events").fetchone()[0])
    finally:
        conn.close()
    return last, depth


def test_broker_events_equal_replay_of_the_agents_capture(
    tmp_path: Path,
    own_broker: Mosquitto,
    topic_root: str,
    subscriber_factory: Callable[[Mosquitto, str], Subscriber],
    street_factory: Callable[..., Street],
    agents: list[Agent],
) -> None:
    street = street_factory(tmp_path / "street")
    sub = subscriber_factory(own_broker, topic_root)
    outbox = tmp_path / "outbox.db"
    config = agent_config(street, own_broker, topic_root, outbox, tmp_path / "edge.yaml")
    capture = tmp_path / "capture.jsonl"
    agent = start_agent(config, capture, tmp_path / "agent.log")
    agents.append(agent)

    wait_until(lambda: len(first_by_id(sub.events())) >= 12, 40, "a dozen events")
    assert stop_agent(agent) == 0, agent.log_text()
    wait_until(
        lambda: any(not s["online"] for s in sub.payloads("status")), 5, "online:false on stop"
    )

    live = sorted(first_by_id(sub.events()), key=lambda e: e["seq"])
    replayed = replay(capture, config)
    epoch = read_epoch(outbox)
    assert epoch is not None
    assert all(e["event_id"].split(":")[1] == epoch for e in live + replayed)
    # Replay fires the detector's deadlines up to the capture's last record; the agent also fired
    # those that fell due between the last chunk and the stop. Everything else must be identical.
    last_t = max(parse_instant(r["t"]) for r in capture_records(capture))
    assert live[: len(replayed)] == replayed
    assert all(parse_instant(e["confirmed_ts"]) > last_t for e in live[len(replayed) :])
    assert [e["seq"] for e in live] == list(range(1, len(live) + 1))

    statuses = sub.payloads("status")
    assert statuses[0]["online"] is True
    assert statuses[0]["gateway_id"] == "sim-gw-01"
    assert statuses[0]["clock_synced"] in (True, False)
    health = sub.payloads("health")[-1]
    assert set(health) == {
        "v", "gateway_id", "ts", "uptime_s", "outbox_depth", "events_dropped",
        "unknown_sensors", "ports", "sensors",
    }  # fmt: skip
    assert health["events_dropped"] == 0
    assert 0 <= health["outbox_depth"] <= len(live)
    assert {p["src"] for p in health["ports"]} == {f"serial:{p}" for p in street.ports}
    assert all(p["bytes"] > 0 for p in health["ports"])
    assert len(health["sensors"]) == 20
    assert sum(s["frames"] for s in health["sensors"]) > 0


@pytest.mark.reliability
def test_broker_outage_and_agent_sigkill_lose_nothing_and_keep_order(
    tmp_path: Path,
    own_broker: Mosquitto,
    topic_root: str,
    subscriber_factory: Callable[[Mosquitto, str], Subscriber],
    street_factory: Callable[..., Street],
    agents: list[Agent],
) -> None:
    street = street_factory(tmp_path / "street", sensors=30)
    sub = subscriber_factory(own_broker, topic_root)
    outbox = tmp_path / "outbox.db"
    config = agent_config(street, own_broker, topic_root, outbox, tmp_path / "edge.yaml")
    log = tmp_path / "agent.log"
    first = start_agent(config, tmp_path / "capture-1.jsonl", log)
    agents.append(first)
    wait_until(lambda: len(sub.events()) >= 3, 40, "first events")

    own_broker.stop()  # the broker goes away; the agent keeps detecting into its outbox
    seen_before_outage = max(e["seq"] for e in sub.events())
    wait_until(lambda: outbox_state(outbox)[0] >= seen_before_outage + 5, 30, "outage backlog")
    first.proc.kill()  # power cut, mid-stream, with the broker still down
    first.proc.wait()
    killed_at_seq = outbox_state(outbox)[0]

    unreachable = first.log_text().count("unreachable")
    second = start_agent(config, tmp_path / "capture-2.jsonl", log)
    agents.append(second)
    # the second agent is up and finds the broker still down
    wait_until(lambda: second.log_text().count("unreachable") > unreachable, 30, "agent up")
    own_broker.start()  # same port, persistent sessions restored
    wait_until(lambda: outbox_state(outbox)[0] >= killed_at_seq + 3, 30, "events after restart")
    wait_until(lambda: outbox_state(outbox)[1] == 0, 60, "backlog drained")
    assert stop_agent(second) == 0, second.log_text()
    # The stop flushes for a bounded time: under load a few of the newest events may still be
    # in the outbox (durable, sent at the next start). Everything older was delivered.
    last_seq, depth = outbox_state(outbox)
    acked = last_seq - depth
    wait_until(lambda: len(first_by_id(sub.events())) >= acked, 10, "every event delivered")

    events = first_by_id(sub.events())
    seqs = [e["seq"] for e in events]
    assert seqs == list(range(1, len(seqs) + 1)), "every seq once, in seq order"
    assert acked <= len(seqs) <= last_seq
    epoch = read_epoch(outbox)
    assert {e["event_id"] for e in events} == {f"sim-gw-01:{epoch}:{s}" for s in seqs}
    assert max(seqs) > killed_at_seq > seen_before_outage


def test_a_port_that_vanishes_is_reopened_and_a_wiped_outbox_never_reuses_ids(
    tmp_path: Path,
    own_broker: Mosquitto,
    topic_root: str,
    subscriber_factory: Callable[[Mosquitto, str], Subscriber],
    street_factory: Callable[..., Street],
    agents: list[Agent],
) -> None:
    street = street_factory(tmp_path / "street", sensors=20, per_port=10)
    assert len(street.ports) == 2
    sub = subscriber_factory(own_broker, topic_root)
    outbox = tmp_path / "outbox.db"
    config = agent_config(street, own_broker, topic_root, outbox, tmp_path / "edge.yaml")
    capture = tmp_path / "capture.jsonl"
    agent = start_agent(config, capture, tmp_path / "agent.log")
    agents.append(agent)
    vanishing, steady = (f"serial:{p}" for p in street.ports)

    def records_from(src: str) -> list[int]:
        return [parse_instant(r["t"]) for r in capture_records(capture) if r["src"] == src]

    wait_until(lambda: bool(records_from(vanishing)), 20, "port 0 read")
    street.proc.send_signal(signal.SIGUSR1)  # tty0 closes, its symlink goes, back in 2 s
    wait_until(lambda: "lost" in agent.log_text(), 10, "the agent to notice")
    vanished_at = max(records_from(vanishing))
    wait_until(lambda: max(records_from(vanishing)) > vanished_at + 1500, 20, "port 0 read again")
    assert agent.proc.poll() is None, "the agent kept running"
    # The other port carried on while port 0 was away.
    assert any(vanished_at < t < vanished_at + 1500 for t in records_from(steady))
    wait_until(lambda: len(sub.events()) >= 2, 30, "events")
    assert stop_agent(agent) == 0, agent.log_text()
    old_epoch = read_epoch(outbox)
    old_ids = {e["event_id"] for e in sub.events()}

    for leftover in tmp_path.glob("outbox.db*"):
        leftover.unlink()  # a wiped outbox: new epoch, seq from 1 again
    again = start_agent(config, tmp_path / "capture-2.jsonl", tmp_path / "agent-2.log")
    agents.append(again)
    wait_until(lambda: len(sub.events()) >= len(old_ids) + 2, 30, "events after the wipe")
    assert stop_agent(again) == 0, again.log_text()
    new_epoch = read_epoch(outbox)
    new_ids = {e["event_id"] for e in sub.events()} - old_ids
    assert new_epoch is not None
    assert new_epoch != old_epoch
    assert all(i.split(":")[1] == new_epoch for i in new_ids)
    assert {e["seq"] for e in sub.events() if e["event_id"] in new_ids} & {1}
    assert not new_ids & old_ids
