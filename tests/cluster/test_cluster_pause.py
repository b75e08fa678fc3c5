"""A zone's owner paused (SIGSTOP) past its lease while an alert of its zone falls due, then
resumed (SIGCONT): the other collector takes the zone over and raises the alert; the one that
was paused finds on its own clock that its lease ran out and stops acting for the zone before
it does anything: no zone ever has two acting owners, and the alert is raised once.

The pause stands for a collector cut off from PostgreSQL (it cannot renew), the worst case of
which is a process that cannot even look at its clock until it resumes.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from kerbside.core.instants import format_instant
from tests.cluster.harness import LEASE_S, Collectors, Watcher, poll, rows
from tests.helpers import Mosquitto

pytestmark = pytest.mark.slow

ALERT_DELAY_S = 20.0


def owners(url: str) -> dict[str, tuple[str, int]]:
    return {
        z: (n, int(e))
        for z, n, e in rows(
            url, "SELECT zone_id, node_id, epoch FROM zone_leases WHERE expires > now()"
        )
    }


def test_a_paused_owner_stops_acting_before_its_lease_ends_and_the_alert_is_raised_once(
    tmp_path: Path, own_broker: Mosquitto, topic_root: str, url: str
) -> None:
    cluster = Collectors(
        tmp_path, own_broker.port, url, topic_root, alert_delay_s=ALERT_DELAY_S, names=("a", "b")
    )
    clock = cluster.clock
    watcher = Watcher(own_broker.port, topic_root)
    gateway = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"{topic_root}-gw")
    gateway.connect("127.0.0.1", own_broker.port)
    gateway.loop_start()
    try:
        cluster.start_all()
        poll(
            lambda: len({n for n, _ in owners(url).values()}) == 2 and len(owners(url)) == 5,
            30,
            "the zones shared",
            cluster.logs,
        )
        zone, (owner, epoch) = next(
            (z, held) for z, held in sorted(owners(url).items()) if held[0] == "a"
        )
        bay = f"{zone}-B01"
        gw = "gw-1" if zone in ("Z1", "Z2") else "gw-2"
        arrived = clock.now() - 10_000  # confirmed now: its unpaid alert is due a minute on
        body = {
            "v": 1,
            "event_id": f"{gw}:p4u53:1",
            "gateway_id": gw,
            "seq": 1,
            "bay_id": bay,
            "sensor_id": f"S-{bay}",
            "state": "occupied",
            "ts": format_instant(arrived),
            "confirmed_ts": format_instant(arrived + 10_000),
            "reason": None,
        }
        gateway.publish(f"{topic_root}/gw/{gw}/events", json.dumps(body), qos=1).wait_for_publish(
            10
        )
        poll(
            lambda: rows(url, f"SELECT state FROM bays WHERE bay_id = '{bay}'") == [("occupied",)],
            20,
            "the owner followed the arrival",
            cluster.logs,
        )
        # a is paused before the alert falls due, and stays paused past its lease
        due_wall = clock.wall_of(arrived + 60_000 + int(ALERT_DELAY_S * 1000))
        assert due_wall - time.time() > 2, "the arrival took too long to be followed"
        cluster.pause("a")
        paused_at = time.time()
        poll(lambda: owners(url).get(zone, ("a", 0))[0] == "b", 30, "b took the zone", cluster.logs)
        poll(
            lambda: rows(url, "SELECT count(*) FROM alerts WHERE status = 'open'") == [(1,)],
            60,
            "b raised the alert",
            cluster.logs,
        )
        assert time.time() > due_wall  # b raised it when due, while a was still paused
        assert time.time() - paused_at > LEASE_S
        cluster.resume("a")
        poll(
            lambda: "ran out before it was renewed: stopped acting" in cluster.log("a").read_text(),
            20,
            "a stopped acting by itself",
            cluster.logs,
        )
        # a is back among the living (its keeper ran again): from its first step on it had
        # given the zone up, so what it did since was not for the zone
        poll(
            lambda: rows(url, "SELECT count(*) FROM cluster_nodes WHERE expires > now()") == [(2,)],
            20,
            "a alive again",
            cluster.logs,
        )
        history = [
            (json.loads(r), n, int(e))
            for r, n, e in rows(url, "SELECT record, node, epoch FROM alert_changes ORDER BY id")
        ]
        published = [r for _, r in watcher.seen if r["bay_id"] == bay]
    finally:
        gateway.loop_stop()
        codes = cluster.stop_all()
        watcher.close()
    assert codes == {"a": 0, "b": 0}, cluster.logs()
    assert owner == "a"
    assert [(r["kind"], r["status"], n) for r, n, _ in history] == [("unpaid", "open", "b")]
    assert history[0][2] > epoch  # under b's lease, newer than a's
    assert [(r["kind"], r["status"]) for r in published] == [("unpaid", "open")]
