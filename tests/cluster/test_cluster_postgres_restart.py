"""PostgreSQL restarted under load beneath two collectors (a server of the test's own): both
stop acknowledging and stop acting for their zones while it is away, connect again by
themselves when it is back, take their zones again, and nothing is lost: every published event
stored once, each alert raised once, and the alerts equal ``replay`` of the exported journal.
"""

from __future__ import annotations

import collections
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kerbside.collector.replay import replay_lines
from kerbside.core.site import load_site
from tests.cluster.harness import START, Clock, Collectors, Gateways, poll, rows, street
from tests.helpers import Mosquitto
from tests.pg import OwnPostgres, own_postgres

pytestmark = pytest.mark.slow

SPEED = 4.0
LEASE_S = 3.0
ALERT_DELAY_S = 60.0
HORIZON_MS = START + 200_000


@pytest.fixture
def database() -> Iterator[OwnPostgres]:
    with own_postgres() as server:
        yield server


def test_postgres_restarted_under_load_loses_nothing_and_the_collectors_carry_on(
    tmp_path: Path, own_broker: Mosquitto, topic_root: str, database: OwnPostgres
) -> None:
    url = database.url
    clock = Clock(SPEED)
    cluster = Collectors(
        tmp_path,
        broker_port=own_broker.port,
        url=url,
        root=topic_root,
        clock=clock,
        lease_s=LEASE_S,
        alert_delay_s=ALERT_DELAY_S,
        names=("a", "b"),
    )
    changes = street(17, HORIZON_MS)
    gateways = Gateways(own_broker.port, topic_root, clock, changes)
    try:
        for name in cluster.names:
            cluster.start(name)
        for name in cluster.names:
            cluster.wait_serving(name)
        poll(
            lambda: all("connected to" in cluster.log(n).read_text() for n in cluster.names),
            30,
            "connected",
            cluster.logs,
        )
        gateways.start()
        poll(lambda: len(gateways.published) >= 15, 60, "events flowing", cluster.logs)
        database.stop()  # under load: the gateways go on publishing
        down_at = time.monotonic()
        poll(
            lambda: all("connection lost" in cluster.log(n).read_text() for n in cluster.names),
            30,
            "both lost the database",
            cluster.logs,
        )
        poll(
            lambda: time.monotonic() - down_at > LEASE_S + 1,
            30,
            "the leases ran out",
            cluster.logs,
        )
        database.start()
        gateways.join(timeout=120)
        published = dict(gateways.published)

        def stored() -> int:
            return int(rows(url, "SELECT count(*) FROM events")[0][0])

        poll(lambda: stored() == len(published), 90, "every event stored", cluster.logs)
        poll(
            lambda: (
                clock.now() > HORIZON_MS + int(ALERT_DELAY_S * 1000)
                and rows(
                    url, "SELECT count(*) FROM alerts WHERE status IN ('open', 'acknowledged')"
                )
                == [(0,)]
            ),
            90,
            "every alert cleared",
            cluster.logs,
        )
    finally:
        gateways.close()
        codes = cluster.stop_all()
    assert codes == {"a": 0, "b": 0}, cluster.logs()
    for name in cluster.names:
        text = cluster.log(name).read_text()
        assert "connected again" in text
        assert "ran out before it was renewed: stopped acting" in text  # nothing acted blind

    events = [r[0] for r in rows(url, "SELECT event_id FROM events")]
    assert sorted(events) == sorted(published)
    positions = [r[0] for r in rows(url, "SELECT pos FROM journal ORDER BY pos")]
    assert positions == list(range(1, len(positions) + 1))
    history = [json.loads(r) for (r,) in rows(url, "SELECT record FROM alert_changes")]
    raises = collections.Counter(r["alert_id"] for r in history if r["status"] == "open")
    assert raises
    assert max(raises.values()) == 1
    live = [json.loads(r) for (r,) in rows(url, "SELECT record FROM alerts")]
    exported = subprocess.run(
        [
            sys.executable,
            "-m",
            "kerbside.collector.cli",
            "export-journal",
            "--config",
            str(cluster.config("a")),
        ],
        capture_output=True,
        check=True,
        text=True,
    ).stdout.splitlines()
    replayed, errors = replay_lines(
        exported, load_site(tmp_path / "site.yaml"), HORIZON_MS + 60_000
    )
    assert errors == []

    def key(a: dict[str, Any]) -> tuple[Any, ...]:
        fields = ("alert_id", "kind", "bay_id", "status", "raised_at", "cleared_at", "clear_reason")
        return tuple(a[k] for k in fields)

    assert sorted(map(key, live)) == sorted(map(key, replayed))
