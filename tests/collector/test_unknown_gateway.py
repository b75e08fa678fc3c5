"""A gateway the site does not know: whatever it says is dead-lettered (``unknown_gateway``) and
raises or clears no alert; a gateway whose bays a site reload removed is no longer watched. The
collector wired without a broker, on a clock in the test's hand."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from kerbside.collector.config import load_config
from kerbside.collector.runtime import reload_site
from kerbside.core.instants import format_instant, parse_instant
from tests.collector.test_cycle import Clock, make, msg
from tests.helpers import FakeLink, present
from tests.helpers import occupancy_event as event
from tests.pg import Stores

T0 = parse_instant("2026-11-26T08:00:00Z")
OFFLINE_AFTER_MS = 300_000  # the config's default gateway_offline_after_s


def status(gateway: str, online: bool, at: int) -> dict[str, Any]:
    return {
        "v": 1,
        "gateway_id": gateway,
        "online": online,
        "ts": format_instant(at),
        "version": "1",
        "clock_synced": True,
    }


def health(gateway: str, at: int, battery_mv: int = 3000) -> dict[str, Any]:
    return {
        "v": 1,
        "gateway_id": gateway,
        "ts": format_instant(at),
        "uptime_s": 1,
        "outbox_depth": 0,
        "events_dropped": 0,
        "unknown_sensors": 0,
        "ports": [],
        "sensors": [{"sensor_id": "S001", "bay_id": "B001", "battery_mv": battery_mv}],
    }


def maintenance_alerts(link: FakeLink) -> list[dict[str, Any]]:
    return link.topics("/alerts/maintenance")


def test_an_unknown_gateways_status_health_and_events_are_dead_lettered(stores: Stores) -> None:
    clock = Clock(T0)
    service, link = make(stores, clock)
    stranger = [
        msg("status", status("gw-9", False, T0 - 3_600_000), "gw-9"),  # a retained last will
        msg("status", status("gw-9", True, T0), "gw-9"),
        msg("health", health("gw-9", T0), "gw-9"),
        msg("events", event(1, "B001", "occupied", T0 - 20_000, gateway_id="gw-9"), "gw-9"),
    ]
    service.cycle.ingest(stranger)
    assert link.acked == [m.mid for m in stranger]  # taken off the broker, not redelivered
    dead = link.topics("/deadletter")
    assert [d["reason"] for d in dead] == ["unknown_gateway"] * 4
    assert [d["topic"] for d in dead] == [m.topic for m in stranger]
    assert json.loads(dead[0]["payload"])["online"] is False
    assert service.queries.metrics()["rejected"] == {"unknown_gateway": 4.0}
    assert maintenance_alerts(link) == []
    assert service.store.count_events() == 0
    assert present(service.queries.bay("B001"))["state"] == "unknown"
    # its "online" was not believed either: its silence raises nothing
    assert service.cycle.core.maintenance.next_deadline() is None
    clock.now = T0 + 2 * OFFLINE_AFTER_MS
    service.cycle.tick()
    assert maintenance_alerts(link) == []
    assert service.store.count_alerts("open") == 0


def test_a_known_gateways_last_will_still_raises_gateway_offline(stores: Stores) -> None:
    clock = Clock(T0)
    service, link = make(stores, clock)
    service.cycle.ingest([msg("status", status("gw-1", False, T0))])
    alerts = maintenance_alerts(link)
    assert [(a["kind"], a["gateway_id"], a["status"]) for a in alerts] == [
        ("gateway_offline", "gw-1", "open")
    ]
    assert alerts[0]["raised_at"] == format_instant(T0)
    assert link.topics("/deadletter") == []


def two_gateway_site(tmp_path: Path) -> Path:
    """B001, B002 on gw-1; B003, B004 on gw-2. Returns the site file."""
    site_file = tmp_path / "site.yaml"
    text = site_file.read_text()
    for bay in ("B003", "B004"):
        text = re.sub(rf"(id: {bay},.*gateway: )gw-1", r"\1gw-2", text)
    site_file.write_text(text)
    return site_file


def test_a_gateway_removed_by_a_site_reload_is_no_longer_watched(
    tmp_path: Path, stores: Stores
) -> None:
    clock = Clock(T0)
    service, link = make(stores, clock)
    site_file = two_gateway_site(tmp_path)
    config = load_config(tmp_path / "collector.yaml")
    assert reload_site(config, service.cycle) is True
    assert service.cycle.site.bays["B003"].gateway == "gw-2"
    # gw-2 goes quiet and is reported offline; gw-1 keeps talking
    service.cycle.ingest(
        [msg("status", status("gw-1", True, T0)), msg("status", status("gw-2", True, T0), "gw-2")]
    )
    clock.now = T0 + OFFLINE_AFTER_MS - 1000
    service.cycle.ingest([msg("health", health("gw-1", clock.now, 3600))])
    clock.now = T0 + OFFLINE_AFTER_MS
    service.cycle.tick()
    offline = [a for a in maintenance_alerts(link) if a["kind"] == "gateway_offline"]
    assert [(a["gateway_id"], a["status"]) for a in offline] == [("gw-2", "open")]
    # gw-1 is watched again from its last message; then the site drops gw-2's bays
    service.cycle.ingest([msg("status", status("gw-1", True, clock.now))])
    site_file.write_text(
        "\n".join(line for line in site_file.read_text().splitlines() if "gw-2" not in line) + "\n"
    )
    assert reload_site(config, service.cycle) is True
    assert "B003" not in service.cycle.site.bays
    # its open alert stays as it is (an officer resolves it): the reload says nothing of whether
    # the gateway recovered, and nothing it says now can clear it
    service.cycle.ingest([msg("status", status("gw-2", True, clock.now), "gw-2")])
    assert link.topics("/deadletter")[-1]["reason"] == "unknown_gateway"
    still = service.store.alert(offline[0]["alert_id"])
    assert still is not None
    assert still["status"] == "open"
    # gw-1's deadline is the only one left: its silence is reported, gw-2's is not
    assert service.cycle.core.maintenance.next_deadline() == clock.now + OFFLINE_AFTER_MS
    clock.now += 3 * OFFLINE_AFTER_MS
    before = len(maintenance_alerts(link))
    service.cycle.tick()
    raised = maintenance_alerts(link)[before:]
    assert [(a["kind"], a["gateway_id"], a["status"]) for a in raised] == [
        ("gateway_offline", "gw-1", "open")
    ]
    assert service.store.count_alerts("open") == 2


def test_a_restart_does_not_watch_a_gateway_the_site_dropped(
    tmp_path: Path, stores: Stores
) -> None:
    clock = Clock(T0)
    service, link = make(stores, clock)
    two_gateway_site(tmp_path)
    config = load_config(tmp_path / "collector.yaml")
    assert reload_site(config, service.cycle) is True
    service.cycle.ingest([msg("status", status("gw-2", True, T0), "gw-2")])
    service.store.close()
    clock.now = T0 + 10 * OFFLINE_AFTER_MS
    # the same store, which remembers gw-2 as online, and the one-gateway site again
    again, link = make(stores, clock)
    assert "gw-2" not in {b.gateway for b in again.cycle.site.bays.values()}
    assert again.cycle.core.maintenance.next_deadline() is None
    again.cycle.tick()
    assert maintenance_alerts(link) == []
