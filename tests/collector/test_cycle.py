"""The collector wired without a broker: real-shaped messages through the unit of work, a
clock in the test's hand."""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from kerbside.collector.config import load_config
from kerbside.collector.errors import AlertClosed, NotFound, RecordRejected, StoreError
from kerbside.collector.link import Message
from kerbside.collector.queries import export_journal
from kerbside.collector.runtime import Collector, assemble, reload_site
from kerbside.collector.store import Committed, Store, Work
from kerbside.core.instants import format_instant, parse_instant
from kerbside.core.site import load_site
from tests.helpers import FakeLink, present, write_collector_setup
from tests.helpers import occupancy_event as event
from tests.pg import Stores

ROOT = "t/svc"
T0 = parse_instant("2026-11-26T08:00:00Z")
MIN = 60_000


class Clock:
    def __init__(self, now: int) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


_mids = itertools.count(1)


def msg(kind: str, payload: bytes | dict[str, Any], gateway: str = "gw-1") -> Message:
    data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return Message(f"{ROOT}/gw/{gateway}/{kind}", data, 1, next(_mids), 1, 0)


def make(stores: Stores | Path, clock: Clock) -> tuple[Collector, FakeLink]:
    """A collector on the test's store (opened again: a restart), without a broker; given a
    directory, on a SQLite file in it."""
    if isinstance(stores, Path):
        stores = Stores("sqlite", stores / "collector.db")
    workdir = stores.path.parent
    config = load_config(
        write_collector_setup(workdir, port=1, topic_root=ROOT, store=stores.config)
    )
    link = FakeLink()
    return assemble(config, load_site(config.site), stores.open(), link, clock=clock), link


def test_events_are_stored_once_and_raise_alerts_after_the_delay(stores: Stores) -> None:
    clock = Clock(T0 + 20_000)
    service, link = make(stores, clock)
    arrive = event(1, "B001", "occupied", T0)
    batch = [msg("events", arrive), msg("events", arrive)]  # a retransmission
    service.cycle.ingest(batch)
    assert link.acked == [m.mid for m in batch]
    assert service.store.count_events() == 1
    assert service.store.counters()["duplicates"] == 1
    assert present(service.queries.bay("B001"))["state"] == "occupied"
    assert link.topics("/bays/B001")[-1]["since"] == "2026-11-26T08:00:00.000Z"
    # unpaid falls due at T0 + 1 min, raised once alert_delay_s (1 s) has passed
    assert service.cycle.next_wakeup() == T0 + MIN + 1000
    clock.now = T0 + MIN + 999
    service.cycle.tick()
    assert link.topics("/alerts/Z1") == []
    clock.now = T0 + MIN + 1000
    service.cycle.tick()
    alerts = link.topics("/alerts/Z1")
    assert [(a["kind"], a["status"]) for a in alerts] == [("unpaid", "open")]
    assert alerts[0]["raised_at"] == "2026-11-26T08:01:00.000Z"
    # the departure clears it and closes the session
    clock.now = T0 + 5 * MIN
    service.cycle.ingest([msg("events", event(2, "B001", "vacant", T0 + 4 * MIN))])
    latest = service.queries.alert(alerts[0]["alert_id"])
    assert latest is not None
    assert (latest["status"], latest["clear_reason"]) == ("cleared", "vehicle_left")
    sessions, _ = service.queries.sessions("B001")
    assert sessions == [
        {
            "bay_id": "B001",
            "zone_id": "Z1",
            "start": "2026-11-26T08:00:00.000Z",
            "end": "2026-11-26T08:04:00.000Z",
            "alerts": 2,
        }
    ]


def test_hostile_messages_are_dead_lettered_and_good_ones_beside_them_processed(
    stores: Stores,
) -> None:
    clock = Clock(T0 + MIN)
    service, link = make(stores, clock)
    good1 = event(1, "B001", "occupied", T0)
    good2 = event(2, "B002", "occupied", T0)
    hostile = [
        (msg("events", b"{not json"), "not_json"),
        (msg("events", b"\xff\xfe\x00garbage"), "not_utf8"),
        (msg("events", b"x" * (1024 * 1024)), "too_large"),
        (msg("events", event(3, "B003", "occupied", T0, seq="three")), "schema"),
        (msg("events", event(4, "B003", "parked", T0)), "schema"),
        (msg("events", event(5, "NOPE", "occupied", T0)), "unknown_bay"),
        (msg("events", event(6, "B003", "occupied", T0, v=2)), "unknown_version"),
        (msg("events", event(7, "B003", "occupied", T0, gateway_id="gw-2")), "gateway_mismatch"),
        (
            msg("events", event(8, "B003", "occupied", T0, gateway_id="gw-2"), "gw-2"),
            "unknown_gateway",  # gw-2 has no bay in the site
        ),
        (msg("events", event(1, "B001", "vacant", T0)), "duplicate_conflict"),
        (msg("status", {"v": 1, "gateway_id": "gw-1", "online": "yes", "ts": "x"}), "schema"),
        (msg("health", b"[]"), "schema"),
    ]
    batch = [msg("events", good1)] + [m for m, _ in hostile] + [msg("events", good2)]
    service.cycle.ingest(batch)
    assert link.acked == [m.mid for m in batch]
    assert present(service.queries.bay("B001"))["state"] == "occupied"
    assert present(service.queries.bay("B002"))["state"] == "occupied"
    assert present(service.queries.bay("B003"))["state"] == "unknown"
    assert service.store.count_events() == 2
    dead = link.topics("/deadletter")
    assert [d["reason"] for d in dead] == [r for _, r in hostile]
    assert dead[0]["payload"] == "{not json"
    assert base64.b64decode(dead[1]["payload"]) == b"\xff\xfe\x00garbage"
    assert dead[2]["topic"] == f"{ROOT}/gw/gw-1/events"
    rejected = service.queries.metrics()["rejected"]
    assert rejected["schema"] == 4
    assert rejected["duplicate_conflict"] == 1
    # the counters are durable
    assert service.store.counters()["rejected.schema"] == 4


def test_restart_rebuilds_the_engine_without_raising_twice(stores: Stores) -> None:
    clock = Clock(T0 + 30_000)
    service, link = make(stores, clock)
    service.cycle.ingest([msg("events", event(1, "B001", "occupied", T0))])
    clock.now = T0 + MIN + 2000
    service.cycle.tick()  # unpaid raised
    service.cycle.ingest([msg("events", event(2, "B002", "occupied", T0 + MIN))])
    raised = [a["alert_id"] for a in link.topics("/alerts/Z1")]
    assert len(raised) == 1
    for mid in range(1, len(link.published) + 1):  # the broker acknowledged everything
        service.outbox.published(mid)
    service.cycle.ingest([])  # (the next commit drops them from the outbox)
    # "SIGKILL": the store is simply abandoned (no save_state); a new service opens it
    service.store.close()
    clock.now = T0 + 10 * MIN
    again, link2 = make(stores, clock)
    again.cycle.tick()
    after = link2.topics("/alerts/Z1")
    # nothing raised twice: the restored engine knows B001's unpaid; new ones are new
    assert raised[0] not in {a["alert_id"] for a in after if a["status"] == "open"}
    kinds = sorted((a["bay_id"], a["kind"]) for a in after if a["status"] == "open")
    assert kinds == [("B001", "overstay"), ("B002", "overstay"), ("B002", "unpaid")]
    assert again.cycle.core.rules.alert(raised[0]) is not None
    assert present(again.queries.bay("B002"))["state"] == "occupied"


def test_publications_not_acknowledged_by_the_broker_are_sent_again(stores: Stores) -> None:
    clock = Clock(T0 + 30_000)
    service, link = make(stores, clock)
    service.cycle.ingest([msg("events", event(1, "B001", "occupied", T0))])
    assert len(link.topics("/bays/B001")) == 1
    service.store.close()
    again, link2 = make(stores, clock)
    again.cycle.tick()
    assert link2.topics("/bays/B001") == link.topics("/bays/B001")


def test_officer_workflow_and_rights(stores: Stores) -> None:
    clock = Clock(T0 + 30_000)
    service, link = make(stores, clock)
    service.cycle.ingest([msg("events", event(1, "B001", "occupied", T0))])
    clock.now = T0 + MIN + 1000
    service.cycle.tick()
    (alert,) = link.topics("/alerts/Z1")
    acked = asyncio.run(service.commands.ack_alert(alert["alert_id"], "pc-1", None, "on my way"))
    assert acked["status"] == "acknowledged"
    assert acked["history"][0]["officer"] == "pc-1"
    resolved = asyncio.run(
        service.commands.resolve_alert(alert["alert_id"], "pc-1", "pcn_issued", None)
    )
    assert (resolved["status"], resolved["clear_reason"]) == ("resolved", "resolved")
    with pytest.raises(AlertClosed):
        asyncio.run(service.commands.resolve_alert(alert["alert_id"], "pc-1", "pcn_issued", None))
    with pytest.raises(NotFound):
        asyncio.run(service.commands.ack_alert("nope", "pc-1"))
    with pytest.raises(RecordRejected) as err:
        asyncio.run(
            service.commands.post_right(
                {
                    "right_id": "r1",
                    "kind": "payment",
                    "bay_id": "ZZZ",
                    "start": "2026-11-26T08:00:00Z",
                    "end": "2026-11-26T09:00:00Z",
                },
                "prov-1",
            )
        )
    assert err.value.field == "bay_id"
    right = {
        "type": "right",
        "right_id": "r1",
        "kind": "payment",
        "bay_id": "B002",
        "start": "2026-11-26T08:00:00Z",
        "end": "2026-11-26T09:00:00Z",
    }
    asyncio.run(service.commands.post_right(right, "prov-1"))
    asyncio.run(service.commands.delete_right("r1", "prov-1"))
    with pytest.raises(NotFound):
        asyncio.run(service.commands.delete_right("r1", "prov-1"))
    exported = list(export_journal(service.store))
    assert [r["type"] for r in exported] == ["occupancy", "right"]
    assert exported[1]["end"] == format_instant(clock.now)  # cut short where it was cancelled


def test_maintenance_alerts_raise_and_recover(stores: Stores) -> None:
    clock = Clock(T0)
    service, link = make(stores, clock)
    ts = format_instant(T0)
    service.cycle.ingest(
        [
            msg(
                "status",
                {
                    "v": 1,
                    "gateway_id": "gw-1",
                    "online": True,
                    "ts": ts,
                    "version": "1",
                    "clock_synced": True,
                },
            )
        ]
    )
    health: dict[str, Any] = {
        "v": 1,
        "gateway_id": "gw-1",
        "ts": ts,
        "uptime_s": 1,
        "outbox_depth": 0,
        "events_dropped": 0,
        "unknown_sensors": 0,
        "ports": [],
        "sensors": [
            {
                "sensor_id": "S001",
                "bay_id": "B001",
                "last_seen": ts,
                "battery_mv": 3000,
                "temp_c": 5.5,
                "frames": 1,
                "lost_frames": 0,
                "duplicates": 0,
                "rssi": None,
            }
        ],
    }
    service.cycle.ingest([msg("health", health)])
    service.cycle.ingest([msg("events", event(1, "B002", "unknown", T0, reason="sensor_fault"))])
    # nothing heard for gateway_offline_after_s (300 s): offline at exactly that instant
    assert service.cycle.core.maintenance.next_deadline() == T0 + 300_000
    clock.now = T0 + 300_000
    service.cycle.tick()
    got = {(a["kind"], a["status"]) for a in link.topics("/alerts/maintenance")}
    assert got == {("low_battery", "open"), ("sensor_fault", "open"), ("gateway_offline", "open")}
    clock.now += 1000
    health["sensors"][0]["battery_mv"] = 3400
    service.cycle.ingest(
        [msg("health", health), msg("events", event(2, "B002", "vacant", T0 + 60_000))]
    )
    cleared = [a for a in link.topics("/alerts/maintenance") if a["status"] == "cleared"]
    assert {a["kind"] for a in cleared} == {"low_battery", "sensor_fault", "gateway_offline"}
    assert {a["clear_reason"] for a in cleared} == {"recovered"}
    # a last will raises it at once
    service.cycle.ingest(
        [
            msg(
                "status",
                {
                    "v": 1,
                    "gateway_id": "gw-1",
                    "online": False,
                    "ts": ts,
                    "version": "1",
                    "clock_synced": True,
                },
            )
        ]
    )
    assert link.topics("/alerts/maintenance")[-1]["kind"] == "gateway_offline"


def test_site_reload_keeps_the_old_site_when_invalid(tmp_path: Path, stores: Stores) -> None:
    clock = Clock(T0)
    service, _ = make(stores, clock)
    config = load_config(tmp_path / "collector.yaml")
    site_file = tmp_path / "site.yaml"
    good = site_file.read_text()
    site_file.write_text(good.replace("controlled_hours: any", "controlled_hours: sometimes"))
    assert reload_site(config, service.cycle) is False
    assert "B001" in service.cycle.site.bays
    site_file.write_text(good.replace("B004", "B009"))
    assert reload_site(config, service.cycle) is True
    assert "B009" in service.cycle.site.bays
    assert "B004" not in service.cycle.site.bays


class ReplyLost:
    """A store whose next commit is written, and then reported failed: a database that
    committed and lost the connection before its reply."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self.lose_next = False

    def commit(self, work: Work) -> Committed:
        return self.begin(work)()

    def begin(self, work: Work) -> Callable[[], Committed]:
        finish = self._store.begin(work)

        def reply_lost() -> Committed:
            committed = finish()
            if self.lose_next:
                self.lose_next = False
                raise StoreError("commit failed: server closed the connection unexpectedly")
            return committed

        return reply_lost

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


def test_a_commit_whose_reply_was_lost_publishes_what_it_committed_once(stores: Stores) -> None:
    clock = Clock(T0 + 20_000)
    workdir = stores.path.parent
    config = load_config(
        write_collector_setup(workdir, port=1, topic_root=ROOT, store=stores.config)
    )
    store = ReplyLost(stores.open())
    link = FakeLink()
    service = assemble(config, load_site(config.site), store, link, clock=clock)
    batch = [msg("events", event(1, "B001", "occupied", T0))]
    store.lose_next = True
    with pytest.raises(StoreError):
        service.cycle.ingest(batch)
    assert link.acked == []  # not acknowledged: the broker sends it again
    service.cycle.ingest(batch)  # again: it was stored after all
    assert link.acked == [batch[0].mid]
    assert service.store.count_events() == 1
    assert [p["state"] for p in link.topics("/bays/B001")] == ["occupied"]  # from the store
    clock.now = T0 + MIN + 1000
    store.lose_next = True
    with pytest.raises(StoreError):
        service.cycle.tick()  # the unpaid alert raised and committed; the reply lost
    service.cycle.tick()
    alerts = link.topics("/alerts/Z1")
    assert [(a["kind"], a["status"]) for a in alerts] == [("unpaid", "open")]
    changes = service.feed.changes_since(0)  # the officers' stream has it, with its id
    assert [r["alert_id"] for _, r in changes] == [alerts[0]["alert_id"]]
    assert [i for i, _ in changes] == [service.store.last_alert_change()]
