"""Collectors of a cluster in the test's own process, without a broker: each a real
``ClusterCycle`` and ``ClusterNode`` on its own connection to one PostgreSQL database, the link's
seam recording what it is asked to publish and acknowledge, the clocks (the rules' and the
leases' monotonic one) in the test's hand. The keeper's rounds and the beat's steps are called
by the test, one at a time, so every interleaving is the test's choice."""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kerbside.collector.cluster.intake import ClusterCycle
from kerbside.collector.cluster.node import ClusterNode, join_cluster
from kerbside.collector.config import CollectorConfig, load_config
from kerbside.collector.core import CoreSettings
from kerbside.collector.cycle import Wiring
from kerbside.collector.feed import AlertFeed
from kerbside.collector.link import Message
from kerbside.collector.outbox import Outbox
from kerbside.collector.store.postgres import PostgresStore
from kerbside.collector.telemetry import Telemetry
from kerbside.core.site import Site, load_site
from tests.helpers import FakeLink

ROOT = "t/cluster"
_mids = itertools.count(1)


class Clock:
    """A clock the test sets (epoch ms for the rules, seconds for the leases)."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> Any:
        return self.now


def msg(kind: str, payload: dict[str, Any], gateway: str = "gw-1") -> Message:
    body = json.dumps(payload).encode()
    return Message(f"{ROOT}/gw/{gateway}/{kind}", body, 1, next(_mids), 1, 0)


def write_site(workdir: Path) -> Path:
    """Zones Z1 (B001-B004) and Z2 (B005-B008), controlled all the time; paid bays on gw-1,
    grace 0, observation 1 min, max stay 2 min."""
    lines = [
        "site: cluster",
        "timezone: Europe/London",
        "defaults: {grace_minutes: 0, observation_minutes: 1}",
        "zones:",
        "  - {id: Z1, name: One, controlled_hours: any}",
        "  - {id: Z2, name: Two, controlled_hours: any}",
        "bays:",
    ]
    lines.extend(
        f"  - {{id: B{i:03d}, zone: Z{1 if i <= 4 else 2}, street: Test St, kind: paid,"
        f" max_stay_minutes: 2, location: {{lat: 51.5, lon: -0.14}}, sensor: S{i:03d},"
        f" gateway: gw-1}}"
        for i in range(1, 9)
    )
    path = workdir / "site.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def write_config(workdir: Path, url: str, name: str, lease_s: float) -> CollectorConfig:
    workdir.mkdir(parents=True, exist_ok=True)
    site = write_site(workdir)
    path = workdir / f"{name}.yaml"
    path.write_text(
        f"site: {site}\n"
        f"mqtt: {{host: 127.0.0.1, port: 1, topic_root: {ROOT}, shared_group: g}}\n"
        f"store: {{url: '{url}'}}\n"
        "http: null\n"
        "alert_delay_s: 15\n"
        f"cluster: {{node_id: {name}, lease_s: {lease_s}}}\n"
    )
    return load_config(path)


@dataclass
class Node:
    name: str
    store: PostgresStore
    cycle: ClusterCycle
    node: ClusterNode
    link: FakeLink
    feed: AlertFeed
    monotonic: Clock
    site: Site

    @property
    def zones(self) -> list[str]:
        return self.node.beat.zones

    def follow(self) -> None:
        """The beat's steps until it has followed everything (and stored what it decided)."""
        while self.node.beat.step():
            pass

    def close(self) -> None:
        self.store.close()


def make_node(workdir: Path, url: str, name: str, clock: Clock, lease_s: float = 10) -> Node:
    config = write_config(workdir, url, name, lease_s)
    assert config.cluster is not None
    site = load_site(config.site)
    store = PostgresStore(url, node=name)
    link = FakeLink()
    telemetry = Telemetry(store.counters())
    outbox = Outbox(store.outbox(), link)
    feed = AlertFeed(store)
    monotonic = Clock(1000.0)
    wiring = Wiring(link, outbox, feed, telemetry, clock)
    settings = CoreSettings.of(config)
    cycle, node = join_cluster(config.cluster, site, store, settings, wiring, monotonic=monotonic)
    return Node(name, store, cycle, node, link, feed, monotonic, site)
