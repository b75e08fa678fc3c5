"""The agent against a real Mosquitto: clock hold, ordered drain across a broker restart, last will
and clean stop, credentials and TLS, bad config, health payloads."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from kerbside.core.config import ConfigError
from kerbside.core.instants import format_instant
from kerbside.edge.agent import Agent, AgentError, build_sources
from kerbside.edge.clock import now_ms
from kerbside.edge.config import EdgeConfig
from kerbside.edge.health import MAX_HEALTH_BYTES, health_payloads
from kerbside.edge.kbs1 import encode_frame
from kerbside.edge.model import Frame, OccupancyChange
from kerbside.edge.outbox import Outbox
from kerbside.edge.publisher import MqttLink
from kerbside.edge.sources import Emit, SerialChunk, Source
from kerbside.edge.sources.serial import Kbs1Decoder
from tests.helpers import Mosquitto, describe, wait_until_async

pytestmark = pytest.mark.slow  # starts processes (brokers, programs, servers)

BIN = Path(sys.executable).parent


class ScriptedSource(Source):
    """Real KBS1 bytes, delivered as a serial port would, stamped with the real clock."""

    def __init__(self, chunks: list[bytes], gap_s: float) -> None:
        self.src = "serial:/dev/ttyTEST"
        self.chunks = chunks
        self.gap_s = gap_s
        self.done = asyncio.Event()

    @property
    def connected(self) -> bool:
        return True

    def decoder(self) -> Kbs1Decoder:
        return Kbs1Decoder()

    async def run(self, emit: Emit) -> None:
        for data in self.chunks:
            emit(SerialChunk(self.src, now_ms(), data))
            await asyncio.sleep(self.gap_s)  # a serial port's bytes come apart in time
        self.done.set()
        await asyncio.Event().wait()


def arrivals_and_departures(sensor: str = "S-1", cycles: int = 2) -> list[bytes]:
    """Frames of a bay that goes vacant, occupied, vacant... (a 400 mG shift while parked)."""
    out = []
    seq = 0
    for _ in range(cycles):
        for mz, flags in ((300, 0), (700, 1)):
            for _ in range(12):
                out.append(encode_frame(Frame(sensor, seq, flags, 100, 200, mz, 3600, 12.5)))
                seq += 1
    out.extend(
        encode_frame(Frame(sensor, seq + i, 0, 100, 200, 300, 3600, 12.5)) for i in range(12)
    )
    return out


class Subscriber:
    def __init__(self, broker: Mosquitto, topic_root: str, username: str | None = None) -> None:
        self.messages: list[tuple[str, bytes, bool]] = []
        self.lock = threading.Lock()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"test-sub-{uuid.uuid4().hex[:8]}",
            clean_session=False,
        )
        if username is not None:
            self.client.username_pw_set(username, "sub-secret")
        self.client.reconnect_delay_set(min_delay=1, max_delay=2)
        subscribed = threading.Event()
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(f"{topic_root}/#", qos=1)
        self.client.on_subscribe = lambda c, u, mid, rc, p: subscribed.set()
        self.client.on_message = self._message
        self.client.connect("127.0.0.1", broker.port)
        self.client.loop_start()
        assert subscribed.wait(10)

    def _message(self, client: Any, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        with self.lock:
            self.messages.append((msg.topic, bytes(msg.payload), msg.retain))

    def payloads(self, leaf: str) -> list[dict[str, Any]]:
        with self.lock:
            return [json.loads(p) for t, p, _ in self.messages if t.endswith("/" + leaf)]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def subscribers() -> Iterator[list[Subscriber]]:
    made: list[Subscriber] = []
    yield made
    for sub in made:
        sub.close()


def make_config(tmp_path: Path, broker: Mosquitto, topic_root: str, **overrides: Any) -> EdgeConfig:
    data: dict[str, Any] = {
        "gateway_id": "gw-test",
        "mqtt": {"host": "127.0.0.1", "port": broker.port, "topic_root": topic_root},
        "outbox": {"path": str(tmp_path / "outbox.db"), "max_mb": 8},
        "detector": {"confirm_occupied_s": 0.3, "confirm_vacant_s": 0.3, "silence_s": 60},
        "health_interval_s": 0.5,
        "clock": {"require_sync": False},
        "sensors": [{"id": "S-1", "bay": "BAY-1"}],
    }
    data.update(overrides)
    return EdgeConfig.model_validate(data)


async def run_until(
    agent: Agent, done: Callable[[], bool], limit_s: float, steps: Callable[[], None] | None = None
) -> None:
    """Run ``agent`` until ``done()``, then stop it as SIGTERM would."""
    stop = asyncio.Event()
    task = asyncio.create_task(agent.run(stop))

    def stepped() -> bool:
        if steps is not None:
            steps()
        return done()

    await wait_until_async(stepped, limit_s, describe(done), every=0.02)
    stop.set()
    await task


def test_events_are_held_until_the_clock_is_synchronised(
    tmp_path: Path, broker: Mosquitto, topic_root: str, subscribers: list[Subscriber]
) -> None:
    sub = Subscriber(broker, topic_root)
    subscribers.append(sub)
    config = make_config(tmp_path, broker, topic_root, clock={"require_sync": True})
    synced = False
    source = ScriptedSource(arrivals_and_departures(), gap_s=0.05)
    agent = Agent(config, [source], clock_synced=lambda: synced, clock_check_s=0.05)
    observed: dict[str, Any] = {}

    def steps() -> None:
        nonlocal synced
        if source.done.is_set() and not synced and agent.held:
            observed["held"] = len(agent.held)
            observed["outbox_depth"] = agent.outbox.depth
            observed["events_on_broker"] = len(sub.payloads("events"))
            observed["status"] = sub.payloads("status")[-1] if sub.payloads("status") else None
            synced = True

    asyncio.run(
        run_until(agent, lambda: len(sub.payloads("events")) >= observed.get("held", 99), 20, steps)
    )
    assert observed["held"] >= 2
    assert observed["outbox_depth"] == 0
    assert observed["events_on_broker"] == 0
    assert observed["status"]["clock_synced"] is False
    events = sub.payloads("events")
    assert [e["seq"] for e in events] == list(range(1, observed["held"] + 1))
    assert [e["state"] for e in events[:2]] == ["vacant", "occupied"]
    assert any(s["clock_synced"] for s in sub.payloads("status"))


def test_a_backlog_drains_in_seq_order_across_a_broker_restart(
    tmp_path: Path, own_broker: Mosquitto, topic_root: str, subscribers: list[Subscriber]
) -> None:
    config = make_config(tmp_path, own_broker, topic_root)
    backlog = Outbox(config.outbox.path, config.gateway_id)
    total = 2000
    changes = [
        OccupancyChange("BAY-1", "S-1", "occupied" if i % 2 else "vacant", i * 1000, i * 1000 + 10)
        for i in range(total)
    ]
    backlog.append(changes)
    backlog.close()
    sub = Subscriber(own_broker, topic_root)
    subscribers.append(sub)
    agent = Agent(config, [], window=200)
    restarted = False
    fresh: list[int] = []

    def steps() -> None:
        nonlocal restarted
        if not restarted and len(sub.payloads("events")) >= 400:
            own_broker.stop()
            own_broker.start()
            restarted = True
            # A fresh event confirmed mid-drain queues behind the backlog.
            agent.commit([OccupancyChange("BAY-1", "S-1", "vacant", 10**12, 10**12 + 10)])
            fresh.append(agent.outbox.last_seq)

    def all_seen() -> bool:
        return len({e["seq"] for e in sub.payloads("events")}) >= total + 1

    asyncio.run(run_until(agent, all_seen, 60, steps))
    assert restarted
    assert fresh == [total + 1]
    first_seen: list[int] = []
    for event in sub.payloads("events"):
        if event["seq"] not in first_seen:
            first_seen.append(event["seq"])
    assert first_seen == list(range(1, total + 2))
    assert Outbox(config.outbox.path, config.gateway_id).depth == 0


def run_agent_process(config_path: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [str(BIN / "kerbside-edge"), "run", "--config", str(config_path)],
            stdout=out,
            stderr=out,
        )


def write_config(tmp_path: Path, config: EdgeConfig) -> Path:
    path = tmp_path / "edge.yaml"
    path.write_text(json.dumps(config.model_dump(mode="json", exclude_none=True)))
    return path


def test_sigkill_leaves_the_last_will_and_sigterm_says_offline_itself(
    tmp_path: Path, broker: Mosquitto, topic_root: str, subscribers: list[Subscriber]
) -> None:
    sub = Subscriber(broker, topic_root)
    subscribers.append(sub)
    config_path = write_config(tmp_path, make_config(tmp_path, broker, topic_root))
    log = tmp_path / "agent.log"

    def wait_status(count: int) -> dict[str, Any]:
        for _ in range(200):
            if len(sub.payloads("status")) >= count:
                return sub.payloads("status")[count - 1]
            threading.Event().wait(0.05)
        raise AssertionError(log.read_text())

    proc = run_agent_process(config_path, log)
    online = wait_status(1)
    assert online["online"] is True
    assert online["gateway_id"] == "gw-test"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    will = wait_status(2)
    assert will["online"] is False  # the broker's last will

    proc = run_agent_process(config_path, log)
    assert wait_status(3)["online"] is True
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=20) == 0
    assert wait_status(4)["online"] is False
    assert set(will) == {"v", "gateway_id", "online", "ts", "version", "clock_synced"}


def test_bad_config_is_one_line_naming_the_key_and_exit_2(tmp_path: Path) -> None:
    path = tmp_path / "edge.yaml"
    path.write_text("gateway_id: gw-1\nmqtt: {port: 99999}\n")
    done = subprocess.run(
        [str(BIN / "kerbside-edge"), "run", "--config", str(path)],
        check=False,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "mqtt.port" in lines[0]


def make_certs(workdir: Path) -> dict[str, Path]:
    workdir.mkdir(parents=True, exist_ok=True)
    paths = {n: workdir / f"{n}.pem" for n in ("ca", "ca-key", "server", "server-key")}
    csr = workdir / "server.csr"

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=test-ca",
            "-keyout", str(paths["ca-key"]), "-out", str(paths["ca"]))  # fmt: skip
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost",
            "-keyout", str(paths["server-key"]), "-out", str(csr))  # fmt: skip
    ext = workdir / "ext.cnf"
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    openssl("x509", "-req", "-in", str(csr), "-CA", str(paths["ca"]), "-CAkey",
            str(paths["ca-key"]), "-CAcreateserial", "-days", "2", "-extfile", str(ext),
            "-out", str(paths["server"]))  # fmt: skip
    return paths


def test_tls_and_a_password_file_with_the_gateway_id_as_username(
    tmp_path: Path, topic_root: str, subscribers: list[Subscriber]
) -> None:
    certs = make_certs(tmp_path / "certs")
    passwords = tmp_path / "passwd"
    passwords.write_text("")
    subprocess.run(["mosquitto_passwd", "-b", str(passwords), "gw-test", "s3cret"], check=True)
    subprocess.run(["mosquitto_passwd", "-b", str(passwords), "sub", "sub-secret"], check=True)
    acl = tmp_path / "acl"
    acl.write_text(f"user sub\ntopic read {topic_root}/#\n\npattern write {topic_root}/gw/%u/#\n")
    broker = Mosquitto(tmp_path / "mosquitto")
    tls_port = broker.port
    plain = Mosquitto(tmp_path / "unused")  # only for a second free port
    broker.conf.write_text(
        broker.conf.read_text().replace(f"listener {tls_port} 127.0.0.1\n", "")
        .replace("allow_anonymous true\n", "allow_anonymous false\n")
        + f"per_listener_settings false\npassword_file {passwords}\nacl_file {acl}\n"
        f"listener {plain.port} 127.0.0.1\n"
        f"listener {tls_port} 127.0.0.1\ncafile {certs['ca']}\ncertfile {certs['server']}\n"
        f"keyfile {certs['server-key']}\n"
    )  # fmt: skip
    broker.port = plain.port  # the subscriber uses the plain listener
    broker.start()
    try:
        sub = Subscriber(broker, topic_root, username="sub")
        subscribers.append(sub)
        secret = tmp_path / "mqtt.pass"
        secret.write_text("s3cret\n")
        config = make_config(
            tmp_path,
            broker,
            topic_root,
            mqtt={
                "host": "localhost",
                "port": tls_port,
                "topic_root": topic_root,
                "password_file": str(secret),
                "tls": {"ca": str(certs["ca"])},
            },
        )
        agent = Agent(config, [])
        asyncio.run(run_until(agent, lambda: bool(sub.payloads("status")), 20))
    finally:
        broker.stop()
    assert sub.payloads("status")[0]["online"] is True


def test_health_is_split_to_stay_under_the_collectors_size_limit() -> None:
    bays = {f"S-{i:06d}": f"BAY-{i:06d}" for i in range(1000)}
    payloads = health_payloads(
        "gw-1",
        ts=0,
        uptime_s=5,
        outbox_depth=3,
        events_dropped=1,
        unknown_sensors=2,
        ports=[],
        bay_of_sensor=bays,
        stats={},
    )
    assert len(payloads) > 1
    assert all(len(p) <= MAX_HEALTH_BYTES for p in payloads)
    bodies = [json.loads(p) for p in payloads]
    assert [s["sensor_id"] for b in bodies for s in b["sensors"]] == list(bays)
    assert all(b["outbox_depth"] == 3 and b["unknown_sensors"] == 2 for b in bodies)
    first = bodies[0]["sensors"][0]
    assert first == {
        "sensor_id": "S-000000", "bay_id": "BAY-000000", "last_seen": None, "battery_mv": None,
        "temp_c": None, "frames": 0, "lost_frames": 0, "duplicates": 0, "rssi": None,
    }  # fmt: skip


def test_a_port_listed_twice_is_a_config_error(tmp_path: Path, broker: Mosquitto) -> None:
    config = make_config(
        tmp_path,
        broker,
        "t",
        serial=[{"port": "/dev/ttyUSB0"}, {"port": "/dev/ttyUSB1"}, {"port": "/dev/ttyUSB0"}],
    )
    with pytest.raises(ConfigError, match=r"^serial\[2\]\.port: /dev/ttyUSB0 is listed twice$"):
        build_sources(config, now_ms)


def test_the_agent_gives_up_rather_than_idle_if_the_mqtt_thread_dies(
    tmp_path: Path, broker: Mosquitto, topic_root: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(MqttLink, "_network", lambda self: None)  # the thread ends at once
    agent = Agent(make_config(tmp_path, broker, topic_root), [])

    async def main() -> None:
        await agent.run(asyncio.Event())

    with pytest.raises(ExceptionGroup) as err:
        asyncio.run(main())
    assert err.value.subgroup(AgentError) is not None


def test_held_events_move_with_the_clock_step_when_ntp_sets_it(
    tmp_path: Path, broker: Mosquitto, topic_root: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Pi boots hours slow; NTP steps the wall clock forward. Events detected before the step
    are released with the step added, so they land at their real time."""
    wall = 1_000_000_000_000
    mono = 5_000
    monkeypatch.setattr("kerbside.edge.agent._monotonic_ms", lambda: mono)
    config = make_config(tmp_path, broker, topic_root, clock={"require_sync": True})
    agent = Agent(config, [], clock=lambda: wall)
    agent.commit([OccupancyChange("BAY-1", "S-1", "occupied", wall - 12_000, wall - 2_000)])
    assert agent.outbox.depth == 0

    step = 3 * 3600 * 1000
    mono += 1_000  # one second later, by the monotonic clock
    wall += 1_000 + step  # ... and NTP has moved the wall clock 3 hours forward
    detector = agent.detector
    agent.release_held()
    assert agent.held is None
    assert agent.detector is not detector, "detection restarted on the new clock"
    [(_, payload)] = agent.outbox.read_after(0, 10)
    event = json.loads(payload)
    assert event["ts"] == format_instant(1_000_000_000_000 - 12_000 + step)
    assert event["confirmed_ts"] == format_instant(1_000_000_000_000 - 2_000 + step)
    agent.commit([OccupancyChange("BAY-1", "S-1", "vacant", wall, wall + 10)])  # now straight out
    assert agent.outbox.depth == 2


def test_sigterm_with_the_broker_unreachable_still_stops_cleanly(tmp_path: Path) -> None:
    nowhere = Mosquitto(tmp_path / "never-started")  # a free port nobody listens on
    config_path = write_config(tmp_path, make_config(tmp_path, nowhere, "t"))
    log = tmp_path / "agent.log"
    proc = run_agent_process(config_path, log)
    for _ in range(200):
        if "connecting to mqtt" in log.read_text():
            break
        threading.Event().wait(0.05)
    threading.Event().wait(1.5)  # at least one failed connection attempt
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=20) == 0, log.read_text()
    assert "stopped;" in log.read_text()
