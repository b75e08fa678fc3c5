"""The status screen from what an agent saved: the cases a live agent rarely shows (a full disk,
an agent that died)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kerbside.edge.status import OnDisk, render

NOW = 1_800_000_000_000


def saved(**over: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "v": 1,
        "gateway_id": "gw-1",
        "version": "1.0",
        "pid": 4242,
        "saved": NOW - 2000,
        "started": NOW - 600_000,
        "every_s": 60,
        "stopped": None,
        "broker": "broker:8883",
        "connected": False,
        "link_since": NOW - 300_000,
        "link_error": "timed out",
        "last_ack": NOW - 300_000,
        "clock_synced": True,
        "clock_required": True,
        "held_events": 0,
        "unwritten_events": 0,
        "disk_error": None,
        "events_dropped": 0,
        "unknown_sensors": 0,
        "ports": [],
        "sensors": [
            {
                "sensor_id": "S-1",
                "bay_id": "B-1",
                "state": "occupied",
                "last_seen": NOW - 30_000,
                "battery_mv": 3300,
                "frames": 9,
                "lost_frames": 1,
            }
        ],
    }
    record.update(over)
    return record


def disk(status: dict[str, Any] | None, waiting: int = 0) -> OnDisk:
    return OnDisk(
        Path("/var/lib/kerbside/outbox.db"),
        "abc123",
        40,
        waiting,
        NOW - 120_000 if waiting else None,
        status,
        {"S-1": "occupied"},
    )


def test_a_running_agent_whose_status_is_late_points_at_the_disk() -> None:
    text = render(disk(saved(saved=NOW - 600_000), waiting=3), NOW, alive=lambda pid: True)
    assert "agent running (pid 4242)" in text
    assert "LATE: the agent saves its status every 60 s and has not: is the disk full? " in text
    assert "(df -h /var/lib/kerbside)" in text
    assert "3 events waiting, oldest" in text
    assert "(2 min ago)" in text


def test_held_events_on_a_full_disk_are_shown() -> None:
    status = saved(unwritten_events=12, disk_error="database or disk is full")
    text = render(disk(status), NOW, alive=lambda pid: True)
    assert "DISK: 12 events held in memory, not yet on disk: database or disk is full" in text
    assert "LATE" not in text


def test_an_agent_that_died_is_told_from_one_that_stopped() -> None:
    died = render(disk(saved()), NOW, alive=lambda pid: False)
    assert "not running; it did not stop cleanly (last saved" in died
    assert "was NOT connected" in died
    stopped = render(disk(saved(stopped=NOW - 1000)), NOW, alive=lambda pid: False)
    assert "stopped cleanly at" in stopped
    assert "LATE" not in died + stopped


def test_nothing_saved_yet() -> None:
    text = render(disk(None), NOW)
    assert "no status saved yet" in text
    assert "0 events waiting" in text
