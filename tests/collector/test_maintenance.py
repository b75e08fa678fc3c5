"""Maintenance alerts of sensors: a report older than the alert says nothing of recovery."""

from __future__ import annotations

from kerbside.collector.maintenance import Maintenance
from tests.collector.rules_builders import at


def test_an_event_older_than_a_silent_alert_does_not_clear_it() -> None:
    maintenance = Maintenance(300_000, 3300)
    raised = maintenance.sensor_state(
        "S1", None, "unknown", "sensor_silent", at("2026-11-26 10:00")
    )
    assert [r["status"] for r in raised] == ["open"]
    # confirmed after the silence, sent after it: the sensor was heard before it went silent
    assert maintenance.sensor_state("S1", None, "vacant", None, at("2026-11-26 09:59")) == []
    cleared = maintenance.sensor_state("S1", None, "vacant", None, at("2026-11-26 10:01"))
    assert [(r["status"], r["clear_reason"]) for r in cleared] == [("cleared", "recovered")]


def test_a_health_report_older_than_a_low_battery_alert_does_not_clear_it() -> None:
    maintenance = Maintenance(300_000, 3300)
    assert maintenance.battery("S1", None, 3100, at("2026-11-26 10:00"))
    assert maintenance.battery("S1", None, 3600, at("2026-11-26 09:00")) == []
    assert [
        r["cleared_at"] for r in maintenance.battery("S1", None, 3600, at("2026-11-26 11:00"))
    ] == ["2026-11-26T11:00:00.000Z"]
