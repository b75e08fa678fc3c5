"""The broker role's limits, in the mosquitto.conf the role renders, loaded by a real Mosquitto.

The rendered file runs as written, with only its system paths (/etc/mosquitto/kerbside, the pid
file, conf.d) moved into the test's directory. One gateway's oversized publishes must not get in,
and so cannot make the broker drop another gateway's event queued for the collector while it is
away; and the queues must hold one gateway's whole outbox with room to spare.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from kerbside.collector.records import MAX_PAYLOAD_BYTES
from kerbside.edge.config import OutboxConfig
from kerbside.edge.health import MAX_HEALTH_BYTES
from kerbside.edge.model import OccupancyChange, event_payload
from kerbside.edge.outbox import ROW_OVERHEAD
from tests.ansible.conftest import make_tls, render_role_templates
from tests.helpers import MqttRecorder, free_port, stop_process, wait_for_port

pytestmark = pytest.mark.slow  # starts processes (brokers, programs, servers)

ROOT = "kerbside/v1"
MIB = 1024 * 1024
PASSWORDS = {"collector": "collector-pw-test", "gw-a": "a-pw-test", "gw-b": "b-pw-test"}


@dataclass
class RenderedBroker:
    conf: Path
    settings: dict[str, str]
    port: int  # the loopback listener (the TLS one is up too, on its own port)


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> RenderedBroker:
    work = tmp_path_factory.mktemp("broker")
    tls = make_tls(work / "tls")
    tls_port, local_port = free_port(), free_port()
    raw = work / "mosquitto.rendered.conf"
    render_role_templates(
        work,
        "kerbside_broker",
        {"mosquitto.conf.j2": raw, "acl.j2": work / "kerbside" / "acl"},
        {
            "kerbside_broker_tls_port": tls_port,
            "kerbside_broker_tls_address": "127.0.0.1",
            "kerbside_broker_local_port": local_port,
            "kerbside_broker_persistence_dir": f"{work}/data/",
            "kerbside_broker_log_dest": f"file {work}/mosquitto.log",
            "kerbside_broker_gateway_passwords": {"gw-a": "x", "gw-b": "x"},
        },
    )
    etc = work / "kerbside"
    for name, text in (("ca.crt", tls["ca.crt"]), ("server.crt", tls["server.crt"])):
        (etc / name).write_text(text)
    (etc / "server.key").write_text(tls["server.key"])
    passwd = etc / "passwd"
    for user, password in PASSWORDS.items():
        create = ["-c"] if not passwd.exists() else []
        subprocess.run(
            ["mosquitto_passwd", *create, "-b", str(passwd), user, password],
            check=True,
            capture_output=True,
        )
    (work / "data").mkdir()
    conf_d = work / "conf.d"
    conf_d.mkdir()
    # Started as root here, Mosquitto would switch to its own user and lose the test's files; a
    # local addition (what conf.d is for) keeps it root. Nothing else is added.
    (conf_d / "test-user.conf").write_text("user root\n")
    text = raw.read_text()
    text = text.replace("/etc/mosquitto/kerbside/", f"{etc}/")
    text = text.replace("/run/mosquitto/mosquitto.pid", f"{work}/mosquitto.pid")
    text = text.replace("/etc/mosquitto/conf.d", str(conf_d))
    conf = work / "mosquitto.conf"
    conf.write_text(text)
    settings = dict(
        line.split(" ", 1) for line in text.splitlines() if line and not line.startswith("#")
    )
    return RenderedBroker(conf, settings, local_port)


@pytest.fixture
def broker(rendered: RenderedBroker, tmp_path: Path) -> Iterator[RenderedBroker]:
    # A fresh store each time: no session or queue left over from another test.
    data = Path(rendered.settings["persistence_location"])
    for stale in data.glob("*"):
        stale.unlink()
    with (tmp_path / "stderr").open("wb") as stderr:
        proc = subprocess.Popen(["mosquitto", "-c", str(rendered.conf)], stderr=stderr)
    try:
        wait_for_port(rendered.port)
    except TimeoutError:
        stop_process(proc, signal.SIGKILL, timeout=10)
        raise AssertionError((tmp_path / "stderr").read_text()) from None
    yield rendered
    stop_process(proc, signal.SIGTERM, timeout=10)


def client(broker: RenderedBroker, user: str, *, persistent: bool = False) -> MqttRecorder:
    return MqttRecorder(
        broker.port, user, username=user, password=PASSWORDS[user], persistent=persistent
    )


def test_one_gateways_huge_publishes_cannot_push_another_gateways_event_out_of_the_queue(
    broker: RenderedBroker,
) -> None:
    """The collector is away; gateway A sends seven 40 MiB messages (more than the whole queue
    holds), then one of exactly 64 KiB and one a byte over; gateway B then sends an event, which
    B deletes from its outbox once the broker has acknowledged it. When the collector comes back
    it must get A's 64 KiB message and B's event, and nothing larger than 64 KiB."""
    collector = client(broker, "collector", persistent=True)
    collector.subscribe(f"{ROOT}/gw/+/events")
    collector.close()

    gw_a = client(broker, "gw-a")
    huge = b"x" * (40 * MIB)
    accepted = [gw_a.publish(f"{ROOT}/gw/gw-a/events", huge, timeout=120) for _ in range(7)]
    gw_a.close()
    gw_a = client(broker, "gw-a")
    largest = b"L" * MAX_PAYLOAD_BYTES
    assert gw_a.publish(f"{ROOT}/gw/gw-a/events", largest)
    # Over the limit but under the packet size: acknowledged (A's outbox moves on), not queued.
    assert gw_a.publish(f"{ROOT}/gw/gw-a/events", b"O" * (MAX_PAYLOAD_BYTES + 1))
    assert not gw_a.dropped.is_set()
    gw_a.close()

    gw_b = client(broker, "gw-b")
    assert gw_b.publish(f"{ROOT}/gw/gw-b/events", b'{"seq": 42}')
    gw_b.close()

    collector = client(broker, "collector", persistent=True)
    got = collector.received()
    collector.close()
    assert [(topic, len(payload)) for topic, payload in got] == [
        (f"{ROOT}/gw/gw-a/events", MAX_PAYLOAD_BYTES),
        (f"{ROOT}/gw/gw-b/events", 11),
    ]
    # And the broker never held A's 40 MiB: the first one closed A's connection unread.
    assert accepted[0] is False


def smallest_event_bytes() -> int:
    """The shortest event the agent can queue: one-character ids, seq 1, ``vacant``."""
    change = OccupancyChange("b", "s", "vacant", 0, 0, None)
    body = event_payload(change, "g", "abcdef", 1)
    return len(json.dumps(body, separators=(",", ":")).encode())


def test_the_queue_holds_one_gateways_whole_outbox_and_the_fleets_events(
    rendered: RenderedBroker,
) -> None:
    """Mosquitto counts the collector's queue per subscriber, not per publisher: the most one
    gateway can hand over at once (its whole outbox, replayed while the collector is away) must
    still leave the room sized for every other gateway."""
    settings = rendered.settings
    size_limit = int(settings["message_size_limit"])
    assert size_limit == MAX_PAYLOAD_BYTES  # the collector's own limit
    assert size_limit > MAX_HEALTH_BYTES  # the agent's largest message still gets through
    # Topic (up to a 64-character gateway id) and headers fit above the payload limit.
    assert int(settings["max_packet_size"]) >= size_limit + 1024
    outbox_bytes = int(OutboxConfig().max_mb * MIB)
    events_in_full_outbox = outbox_bytes // (smallest_event_bytes() + ROW_OVERHEAD)
    payload_in_full_outbox = events_in_full_outbox * smallest_event_bytes()
    assert payload_in_full_outbox < outbox_bytes  # larger events are fewer
    messages, queued_bytes = (
        int(settings["max_queued_messages"]),
        int(settings["max_queued_bytes"]),
    )
    # Left for the rest of the fleet: 6 hours of 5,000 bays at 12 events an hour (~350 bytes).
    fleet_events, fleet_bytes = 5_000 * 12 * 6, 5_000 * 12 * 6 * 350
    assert messages >= events_in_full_outbox + fleet_events
    assert queued_bytes >= outbox_bytes + fleet_bytes


def test_rendered_limits_are_global_options(rendered: RenderedBroker) -> None:
    """Mosquitto 2.0 takes these four only as global options: before the first listener."""
    text = rendered.conf.read_text()
    first_listener = text.index("\nlistener ")
    for option in (
        "message_size_limit",
        "max_packet_size",
        "max_queued_messages",
        "max_queued_bytes",
    ):
        match = re.search(rf"^{option} \d+$", text, re.MULTILINE)
        assert match is not None, option
        assert match.start() < first_listener, option
