"""Three collectors on one PostgreSQL store and one Mosquitto, two gateways publishing a street
live, the collectors SIGKILLed and restarted in turn every 15-20 s: every published event stored
once, each alert raised once with one id and published within ``lease_s`` + 10 s of falling due,
the alerts equal ``replay`` of ``export-journal``, no zone ever had two acting owners, and every
collector's ``/api/v1/bays`` says the same.

The collectors run on a test clock four times the wall's (``KERBSIDE_COLLECTOR_CLOCK``): five
minutes of parking in 75 s. A killed collector is restarted at once, or after its leases have
run out (its zones then taken over by the others first); the events the broker queued for it
meanwhile reach it when it is back, later than the others' by its downtime, which
``alert_delay_s`` (60 s of the test clock: 15 s of the wall) covers.
"""

from __future__ import annotations

import collections
import json
import random
import time
from pathlib import Path

import pytest

from kerbside.core.instants import parse_instant
from tests.cluster.harness import (
    LEASE_S,
    START,
    AlertStream,
    Collectors,
    Gateways,
    Watcher,
    alert_key,
    poll,
    rows,
    street,
)
from tests.helpers import Mosquitto

pytestmark = pytest.mark.slow

ALERT_DELAY_S = 60.0
HORIZON_MS = START + 300_000


def test_collectors_killed_in_turn_lose_nothing_and_raise_each_alert_once(
    tmp_path: Path, own_broker: Mosquitto, topic_root: str, url: str
) -> None:
    cluster = Collectors(tmp_path, own_broker.port, url, topic_root, alert_delay_s=ALERT_DELAY_S)
    clock = cluster.clock
    watcher = Watcher(own_broker.port, topic_root)
    changes = street(11, HORIZON_MS)
    gateways = Gateways(own_broker.port, topic_root, clock, changes)
    rng = random.Random(5)
    kills: list[tuple[str, float]] = []
    try:
        cluster.start_all()
        stream = AlertStream(cluster)
        gateways.start()
        victims = ["a", "b", "c", "a"]
        while gateways.thread.is_alive() and victims:
            time.sleep(rng.uniform(15.0, 20.0))
            if not gateways.thread.is_alive():
                break
            name = victims.pop(0)
            cluster.kill(name)
            wait = 0.0 if len(kills) % 2 == 0 else LEASE_S + 0.5
            kills.append((name, wait))
            time.sleep(wait)  # after a wait, its zones are the others' before it is back
            cluster.start(name)
        gateways.join(timeout=120)
        published = dict(gateways.published)
        cluster.wait_settled(len(published), HORIZON_MS, timeout=60)
        views = {
            name: cluster.get(name, "/api/v1/bays?limit=1000")["items"] for name in cluster.names
        }
        last_change = rows(url, "SELECT max(id) FROM alert_changes")[0][0]
        poll(
            lambda: stream.changes and stream.changes[-1][0] == last_change,
            30,
            "the stream caught up",
            cluster.logs,
        )
        stream.close()
    finally:
        gateways.close()
        codes = cluster.stop_all()
        watcher.close()
    assert len(kills) >= 3, kills
    assert codes == dict.fromkeys(cluster.names, 0), cluster.logs()

    # every published event stored once, and nothing else
    events = [r[0] for r in rows(url, "SELECT event_id FROM events")]
    assert sorted(events) == sorted(published)
    assert rows(url, "SELECT count(*) FROM journal WHERE type = 'occupancy'") == [(len(published),)]

    # each alert raised once, one id: the store's changes and the broker's publications
    history = [
        (int(i), json.loads(r), str(n), int(e))
        for i, r, n, e in rows(url, "SELECT id, record, node, epoch FROM alert_changes ORDER BY id")
    ]
    raises = collections.Counter(r["alert_id"] for _, r, _, _ in history if r["status"] == "open")
    assert raises
    assert max(raises.values()) == 1
    enforcement = {
        a["alert_id"]: a
        for (text,) in rows(url, "SELECT record FROM alerts")
        if (a := json.loads(text))["kind"] in ("overstay", "unpaid", "expired", "suspended")
    }
    assert set(enforcement) == set(raises)

    # no zone ever had two acting owners: in commit order a zone's changes never go back to an
    # older lease epoch, and each epoch is one collector's
    for zone in ("Z1", "Z2", "Z3", "Z4"):
        writes = [(e, n) for _, r, n, e in history if r.get("zone_id") == zone]
        assert [e for e, _ in writes] == sorted(e for e, _ in writes), zone
        assert len(dict(writes)) == len(set(writes)), zone

    # live alerts equal replay of the exported journal (from any collector's config)
    exported, replayed = cluster.replayed("b", HORIZON_MS + 60_000)
    assert len(exported) == len(published)
    assert sorted(map(alert_key, enforcement.values())) == sorted(map(alert_key, replayed))
    kinds = collections.Counter(a["kind"] for a in replayed)
    assert kinds["unpaid"] >= 5
    assert kinds["overstay"] >= 3

    # every alert published within lease_s + 10 s of falling due (its instant + alert_delay_s)
    first_open: dict[str, float] = {}
    for at, record in watcher.seen:
        if record["status"] == "open":
            first_open.setdefault(record["alert_id"], at)
    late = {
        alert_id: round(first_open[alert_id] - clock.wall_of(due), 1)
        for alert_id, a in enforcement.items()
        if (due := parse_instant(a["raised_at"]) + int(ALERT_DELAY_S * 1000))
        and first_open.get(alert_id, float("inf")) - clock.wall_of(due) > LEASE_S + 10
    }
    assert late == {}, late

    # every change on the stream, once, in order, across collectors killed under it
    assert [(i, r["alert_id"], r["status"]) for i, r in stream.changes] == [
        (i, r["alert_id"], r["status"]) for i, r, _, _ in history
    ]
    assert len(set(stream.connections)) == 3

    # every collector answers the same bays, from the store
    reference = views["a"]
    assert len(reference) == 40
    assert all(bay["state"] == "vacant" for bay in reference)
    assert all(views[name] == reference for name in cluster.names)
    print(
        f"\nkills {kills}; {len(published)} events; alerts {dict(kinds)};"
        f" stream connections {len(stream.connections)}"
    )
