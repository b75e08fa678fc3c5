"""PostgreSQL restarted under load beneath two collectors (a server of the test's own): both
stop acknowledging and stop acting for their zones while it is away, connect again by
themselves when it is back, take their zones again, and nothing is lost: every published event
stored once, each alert raised once, and the alerts equal ``replay`` of the exported journal.
"""

from __future__ import annotations

import collections
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster.harness import START, Collectors, Gateways, alert_key, poll, rows, street
from tests.helpers import Mosquitto
from tests.pg import OwnPostgres, own_postgres

pytestmark = pytest.mark.slow

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
    cluster = Collectors(
        tmp_path, own_broker.port, url, topic_root, alert_delay_s=ALERT_DELAY_S, names=("a", "b")
    )
    clock = cluster.clock
    changes = street(17, HORIZON_MS)
    gateways = Gateways(own_broker.port, topic_root, clock, changes)
    try:
        cluster.start_all()
        # each holds leases before the database goes: each has something to stop acting for
        poll(
            lambda: (
                rows(
                    url,
                    "SELECT count(DISTINCT node_id), count(*) FROM zone_leases"
                    " WHERE expires > clock_timestamp()",
                )
                == [(2, 5)]
            ),
            30,
            "the zones shared",
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
            lambda: time.monotonic() - down_at > cluster.lease_s + 1,
            30,
            "the leases ran out",
            cluster.logs,
        )
        database.start()
        gateways.join(timeout=120)
        published = dict(gateways.published)
        cluster.wait_settled(len(published), HORIZON_MS, timeout=90)
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
    _, replayed = cluster.replayed("a", HORIZON_MS + 60_000)
    assert sorted(map(alert_key, live)) == sorted(map(alert_key, replayed))
