"""The Mosquitto configuration the broker role wrote, loaded by the target's real Mosquitto.

The broker runs inside the server root exactly as its systemd unit would start it
(``mosquitto -c /etc/mosquitto/mosquitto.conf``), on the TLS and loopback ports the test gave the
role. Clients connect over TLS with the test CA, as gateways do.
"""

from __future__ import annotations

import queue
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from tests.ansible.conftest import GATEWAY, OTHER_GATEWAY, Broker, Deployment

ROOT = "kerbside/v1"
QUIET_S = 1.5  # how long "nothing arrives" is watched for


# The first test waits for the session's deployment (debootstrap on a fresh machine, two
# ansible-playbook runs); the suite-wide 300 s is for single tests.
pytestmark = [pytest.mark.timeout(900), pytest.mark.slow]


@dataclass
class Client:
    """A paho client that records what happens to it."""

    client: mqtt.Client
    messages: queue.Queue[mqtt.MQTTMessage] = field(default_factory=queue.Queue)
    connack: queue.Queue[ReasonCode] = field(default_factory=queue.Queue)
    subacks: queue.Queue[list[ReasonCode]] = field(default_factory=queue.Queue)
    disconnects: list[ReasonCode] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def subscribe(self, topic: str) -> list[ReasonCode]:
        self.client.subscribe(topic, qos=1)
        return self.subacks.get(timeout=5)

    def publish(self, topic: str, payload: str) -> None:
        info = self.client.publish(topic, payload, qos=1)
        info.wait_for_publish(timeout=5)

    def received(self, timeout: float = QUIET_S) -> list[tuple[str, str]]:
        deadline = time.monotonic() + timeout
        out = []
        while (left := deadline - time.monotonic()) > 0:
            try:
                msg = self.messages.get(timeout=left)
            except queue.Empty:
                break
            out.append((msg.topic, msg.payload.decode()))
        return out

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def connect(
    deployment: Deployment,
    username: str,
    password: str,
    client_id: str = "",
    *,
    tls: bool = True,
    clean_session: bool = True,
) -> tuple[Client, ReasonCode]:
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id or f"t-{uuid.uuid4().hex[:8]}",
        clean_session=clean_session,
    )
    rec = Client(client)

    def on_connect(
        _c: mqtt.Client, _u: object, _f: object, rc: ReasonCode, _p: Properties | None
    ) -> None:
        rec.connack.put(rc)

    def on_subscribe(
        _c: mqtt.Client, _u: object, _mid: int, rcs: list[ReasonCode], _p: Properties | None
    ) -> None:
        rec.subacks.put(rcs)

    def on_disconnect(
        _c: mqtt.Client, _u: object, _f: object, rc: ReasonCode, _p: Properties | None
    ) -> None:
        with rec.lock:
            rec.disconnects.append(rc)

    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_disconnect = on_disconnect
    client.on_message = lambda _c, _u, msg: rec.messages.put(msg)
    client.username_pw_set(username, password)
    if tls:
        client.tls_set(ca_certs=str(deployment.tls_dir / "ca.crt"))
    port = deployment.ports["tls"] if tls else deployment.ports["local"]
    client.connect("127.0.0.1", port, keepalive=30)
    client.loop_start()
    try:
        rc = rec.connack.get(timeout=10)
    except queue.Empty:
        client.loop_stop()
        raise
    if rc.is_failure:
        client.loop_stop()
    return rec, rc


def pw(deployment: Deployment, gateway: str) -> str:
    passwords = deployment.secrets["vault_kerbside_gateway_passwords"]
    assert isinstance(passwords, dict)
    return str(passwords[gateway])


def collector_pw(deployment: Deployment) -> str:
    return str(deployment.secrets["vault_kerbside_collector_mqtt_password"])


@pytest.fixture
def collector(deployment: Deployment, deployed_broker: object) -> Iterator[Client]:
    client, rc = connect(deployment, "collector", collector_pw(deployment))
    assert not rc.is_failure, rc
    yield client
    client.close()


def test_gateway_publishes_under_its_own_prefix_only(
    deployment: Deployment, collector: Client
) -> None:
    assert not collector.subscribe(f"{ROOT}/gw/#")[0].is_failure
    gw_a, rc = connect(deployment, GATEWAY, pw(deployment, GATEWAY))
    assert not rc.is_failure, rc
    try:
        gw_a.publish(f"{ROOT}/gw/{GATEWAY}/events", "mine")
        gw_a.publish(f"{ROOT}/gw/{OTHER_GATEWAY}/events", "forged")
        gw_a.publish(f"{ROOT}/bays/T-900", "forged-bay")
        gw_a.publish(f"{ROOT}/gw/{GATEWAY}/health", "mine-too")
        got = collector.received()
    finally:
        gw_a.close()
    assert got == [
        (f"{ROOT}/gw/{GATEWAY}/events", "mine"),
        (f"{ROOT}/gw/{GATEWAY}/health", "mine-too"),
    ]


def test_gateway_cannot_read_another_gateway(
    deployment: Deployment, deployed_broker: object
) -> None:
    gw_a, rc = connect(deployment, GATEWAY, pw(deployment, GATEWAY))
    assert not rc.is_failure
    gw_b, rc = connect(deployment, OTHER_GATEWAY, pw(deployment, OTHER_GATEWAY))
    assert not rc.is_failure
    try:
        gw_a.subscribe(f"{ROOT}/gw/{OTHER_GATEWAY}/#")
        gw_a.subscribe(f"{ROOT}/gw/#")
        gw_b.publish(f"{ROOT}/gw/{OTHER_GATEWAY}/events", "b-event")
        gw_b.publish(f"{ROOT}/gw/{OTHER_GATEWAY}/status", "b-status")
        assert gw_a.received() == []
    finally:
        gw_a.close()
        gw_b.close()


@pytest.mark.parametrize(
    ("username", "password"),
    [("intruder", "whatever"), (GATEWAY, "wrong-password"), ("", "")],
)
def test_unknown_users_and_wrong_passwords_cannot_connect(
    deployment: Deployment, deployed_broker: object, username: str, password: str
) -> None:
    _client, rc = connect(deployment, username, password)
    assert rc.is_failure, f"{username!r} connected: {rc}"


def test_second_connection_with_a_gateways_client_id_cannot_take_over(
    deployment: Deployment, collector: Client
) -> None:
    assert not collector.subscribe(f"{ROOT}/gw/#")[0].is_failure
    gw_a, rc = connect(deployment, GATEWAY, pw(deployment, GATEWAY), client_id=GATEWAY)
    assert not rc.is_failure
    # Gateway B presents A's client id; the broker replaces it with B's username.
    impostor, rc = connect(
        deployment, OTHER_GATEWAY, pw(deployment, OTHER_GATEWAY), client_id=GATEWAY
    )
    assert not rc.is_failure
    try:
        # a takeover would have closed A's connection before the impostor's CONNACK: A's
        # next publication is acknowledged on the connection it had
        gw_a.publish(f"{ROOT}/gw/{GATEWAY}/events", "still-here")
        with gw_a.lock:
            assert gw_a.disconnects == [], "A's session was taken over"
        impostor.publish(f"{ROOT}/gw/{GATEWAY}/events", "impostor")
        assert collector.received() == [(f"{ROOT}/gw/{GATEWAY}/events", "still-here")]
    finally:
        gw_a.close()
        impostor.close()


def test_collector_reads_every_gateway_and_writes_collector_topics(
    deployment: Deployment, collector: Client
) -> None:
    for topic in (f"{ROOT}/gw/#", f"{ROOT}/bays/#", f"{ROOT}/alerts/#", f"{ROOT}/deadletter"):
        assert not collector.subscribe(topic)[0].is_failure, topic
    gw_a, _ = connect(deployment, GATEWAY, pw(deployment, GATEWAY))
    gw_b, _ = connect(deployment, OTHER_GATEWAY, pw(deployment, OTHER_GATEWAY))
    try:
        gw_a.publish(f"{ROOT}/gw/{GATEWAY}/events", "a")
        gw_b.publish(f"{ROOT}/gw/{OTHER_GATEWAY}/events", "b")
        assert sorted(collector.received()) == [
            (f"{ROOT}/gw/{GATEWAY}/events", "a"),
            (f"{ROOT}/gw/{OTHER_GATEWAY}/events", "b"),
        ]
    finally:
        gw_a.close()
        gw_b.close()
    for topic in (
        f"{ROOT}/bays/T-001",
        f"{ROOT}/alerts/T-Z",
        f"{ROOT}/alerts/maintenance",
        f"{ROOT}/deadletter",
    ):
        collector.publish(topic, "x")
    # What the collector wrote comes back to its own subscription (MQTT 3.1.1 echoes it).
    assert sorted(t for t, _ in collector.received()) == sorted(
        [
            f"{ROOT}/alerts/T-Z",
            f"{ROOT}/alerts/maintenance",
            f"{ROOT}/bays/T-001",
            f"{ROOT}/deadletter",
        ]
    )


def test_collector_loopback_listener_and_queued_backlog_survive_a_broker_restart(
    deployment: Deployment, deployed_broker: Broker
) -> None:
    """The collector's persistent session: what gateways send while it is away is queued and
    kept across a broker restart (persistence on), then delivered when it reconnects."""
    first, rc = connect(
        deployment, "collector", collector_pw(deployment), tls=False, clean_session=False
    )
    assert not rc.is_failure
    assert not first.subscribe(f"{ROOT}/gw/+/events")[0].is_failure
    first.close()
    gw_a, _ = connect(deployment, GATEWAY, pw(deployment, GATEWAY))
    sent = [f"e{i}" for i in range(200)]
    for payload in sent:
        gw_a.publish(f"{ROOT}/gw/{GATEWAY}/events", payload)
    gw_a.close()
    deployed_broker.stop()
    deployed_broker.start()
    again, rc = connect(
        deployment, "collector", collector_pw(deployment), tls=False, clean_session=False
    )
    assert not rc.is_failure
    got = again.received(timeout=5)
    again.close()
    assert [p for _, p in got] == sent
