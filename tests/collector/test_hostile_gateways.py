"""What a hostile (or broken) gateway can send, through the real unit of work: oversize payloads
dead-lettered as their first KiB and their size, JSON nested to exhaust the parser rejected
without blocking the batch, health for sensors that are not the gateway's ignored and counted,
and a rejected event's id never remembered."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from kerbside.collector.config import load_config
from kerbside.collector.records import MAX_PAYLOAD_BYTES
from kerbside.collector.runtime import Collector, assemble
from kerbside.collector.store.sqlite import SqliteStore
from kerbside.core.instants import format_instant
from kerbside.core.site import load_site
from tests.collector.test_cycle import MIN, ROOT, T0, Clock, make, msg
from tests.helpers import FakeLink, present, write_collector_setup
from tests.helpers import occupancy_event as event


def _dead(link: Any) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = link.topics("/deadletter")
    return out


def test_an_oversize_payload_is_dead_lettered_as_its_first_kib_and_its_size(
    tmp_path: Path,
) -> None:
    service, link = make(tmp_path, Clock(T0 + MIN))
    text = ("x" * 1023 + "é") * 200  # UTF-8, 205,000 bytes; the 1024th byte cuts an "é"
    binary = b"\xff" * 300_000
    service.cycle.ingest([msg("events", text.encode()), msg("health", binary)])
    first, second = _dead(link)
    assert (first["reason"], first["size"]) == ("too_large", len(text.encode()))
    assert first["payload"] == "x" * 1023  # the cut character is left out
    assert (second["reason"], second["size"]) == ("too_large", 300_000)
    assert base64.b64decode(second["payload"]) == binary[:1024]
    for _, payload, qos, retain in link.published:
        assert len(payload) < 2000
        assert (qos, retain) == (0, False)
    # a small rejected payload is carried whole, with its size
    service.cycle.ingest([msg("events", b"{not json")])
    assert _dead(link)[-1] | {"topic": None} == {
        "v": 1,
        "topic": None,
        "reason": "not_json",
        "payload": "{not json",
        "size": 9,
    }


def _nested(levels: int) -> Any:
    value: Any = 1
    for _ in range(levels):
        value = [value]
    return value


def test_json_nested_too_deep_is_rejected_and_the_batch_goes_through(tmp_path: Path) -> None:
    clock = Clock(T0 + MIN)
    service, link = make(tmp_path, clock)
    # 60,000 levels within 64 KiB: the parser used to raise RecursionError out of the batch,
    # which then failed, again and again, with everything behind it
    bomb = b"[" * 60_000 + b"]" * 4_000
    assert len(bomb) <= MAX_PAYLOAD_BYTES
    deep_event = event(2, "B002", "occupied", T0, extra=_nested(8))  # 9 levels with the event
    ok_event = event(3, "B003", "occupied", T0, extra=_nested(7))  # 8 levels: allowed
    health = {"v": 1, "gateway_id": "gw-1", "ts": format_instant(T0), "sensors": [_nested(7)]}
    batch = [
        msg("events", event(1, "B001", "occupied", T0)),
        msg("events", bomb),
        msg("events", b'{"v": 1, "x": ' + b"[" * 5_000 + b"]" * 5_000 + b"}"),
        msg("health", health),
        msg("events", deep_event),
        msg("events", ok_event),
    ]
    service.cycle.ingest(batch)
    assert link.acked == [m.mid for m in batch]
    assert [d["reason"] for d in _dead(link)] == ["too_deep"] * 4
    assert service.store.count_events() == 2
    rejected = service.queries.metrics()["rejected"]
    assert rejected == {"too_deep": 4.0}
    assert "internal_error" not in rejected


def _two_gateway_service(tmp_path: Path) -> tuple[Collector, Any]:
    """B001, B002, B004 on gw-1 (sensors S001, S002, S004); B003 on gw-2 (sensor S003)."""
    config = load_config(write_collector_setup(tmp_path, port=1, topic_root=ROOT))
    site = config.site.read_text()
    config.site.write_text(
        site.replace("sensor: S003, gateway: gw-1", "sensor: S003, gateway: gw-2")
    )
    link = FakeLink()
    store = SqliteStore(config.store.path)
    clock = Clock(T0 + MIN)
    return assemble(config, load_site(config.site), store, link, clock=clock), link


def _health(gateway: str, *sensors: tuple[str, int]) -> dict[str, Any]:
    return {
        "v": 1,
        "gateway_id": gateway,
        "ts": format_instant(T0),
        "sensors": [{"sensor_id": s, "battery_mv": mv} for s, mv in sensors],
    }


def test_health_for_sensors_that_are_not_the_gateways_is_ignored_and_counted(
    tmp_path: Path,
) -> None:
    service, link = _two_gateway_service(tmp_path)
    # gw-2's own sensor S003 has a low battery
    service.cycle.ingest([msg("health", _health("gw-2", ("S003", 3000)), "gw-2")])
    raised = link.topics("/alerts/maintenance")
    assert [(a["kind"], a["sensor_id"], a["status"]) for a in raised] == [
        ("low_battery", "S003", "open")
    ]
    # gw-1 reports its own S001 (low), gw-2's S003 as recovered, and a thousand invented sensors
    invented = [(f"X{i:05d}", 2000) for i in range(1000)]
    hostile = _health("gw-1", ("S001", 3000), ("S003", 3600), *invented, ("S001", 3600))
    service.cycle.ingest([msg("health", hostile)])
    alerts = link.topics("/alerts/maintenance")[1:]
    # only S001's alert, raised once (its repeated entry does not clear it); S003's stays open
    assert [(a["kind"], a["sensor_id"], a["status"]) for a in alerts] == [
        ("low_battery", "S001", "open")
    ]
    assert present(service.store.alert(raised[0]["alert_id"]))["status"] == "open"
    store = service.store
    assert isinstance(store, SqliteStore)
    rows = store._db.execute("SELECT sensor_id, gateway_id FROM sensors ORDER BY 1")
    assert rows.fetchall() == [("S001", "gw-1"), ("S003", "gw-2")]
    assert service.queries.metrics()["foreign_sensors"] == 1001
    assert service.store.counters()["foreign_sensor"] == 1001
    assert _dead(link) == []  # the message itself is good: its own sensors are taken


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        ({"ts": "2100-01-01T00:00:00Z"}, "ts_out_of_range"),
        ({"bay_id": "NOPE"}, "unknown_bay"),
        ({"state": "parked"}, "schema"),
        ({"gateway_id": "gw-9"}, "gateway_mismatch"),
    ],
)
def test_a_rejected_events_corrected_retry_is_taken(
    tmp_path: Path, fault: dict[str, Any], reason: str
) -> None:
    service, link = make(tmp_path, Clock(T0 + MIN))
    bad, good = event(1, "B001", "occupied", T0, **fault), event(1, "B001", "occupied", T0)
    service.cycle.ingest([msg("events", bad), msg("events", good)])  # in one batch
    service.cycle.ingest([msg("events", bad)])
    service.cycle.ingest([msg("events", event(2, "B002", "occupied", T0, **fault))])
    service.cycle.ingest([msg("events", event(2, "B002", "occupied", T0))])  # in the next
    assert [d["reason"] for d in _dead(link)] == [reason, reason, reason]
    assert service.store.count_events() == 2
    assert present(service.queries.bay("B002"))["state"] == "occupied"


def test_an_event_whose_handling_failed_is_not_remembered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fault inside the core (a bug, not bad input) rejects the event as internal_error; it
    must not be journaled or remembered, so the gateway's retransmission is taken."""
    service, link = make(tmp_path, Clock(T0 + MIN))
    maintenance = service.cycle.core.maintenance
    real = maintenance.sensor_state
    calls = iter([True])

    def failing_once(*args: Any) -> Any:
        if next(calls, False):
            raise RuntimeError("a bug")
        return real(*args)

    monkeypatch.setattr(maintenance, "sensor_state", failing_once)
    arrival = event(1, "B001", "occupied", T0)
    service.cycle.ingest([msg("events", arrival)])
    assert [d["reason"] for d in _dead(link)] == ["internal_error"]
    assert service.store.count_events() == 0
    service.cycle.ingest([msg("events", arrival)])  # the broker's or the gateway's resend
    assert service.store.count_events() == 1
    assert service.store.counters().get("duplicates", 0) == 0
    assert [json.loads(e.text)["event_id"] for e in service.store.journal()] == ["gw-1:ep:1"]
