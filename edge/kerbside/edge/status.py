"""``kerbside-edge status``: one screen on what the agent is doing, read from its outbox file.

The agent saves a status record in the outbox database's ``state`` table (``save_states``:
every ``health_interval_s``, on a broker connection change at most every few seconds, and at a
clean stop), in the same transaction as the detector's learned levels and without an fsync of
its own, so it costs an SD card almost nothing. This command opens the file read-only (SQLite
lets a reader in beside the running agent) and shows:

- whether the agent runs (its pid is alive), stopped cleanly, or went away without stopping;
- the broker: connected or not since when, the last error, the last acknowledgement;
- the outbox: events waiting and the oldest one's age, read live from the events table;
- per sensor: its bay, the state published, the detector's learned state, last frame, battery,
  frames and lost frames.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kerbside.core.config import ConfigError
from kerbside.core.instants import Instant, format_instant, parse_instant
from kerbside.core.output import print_lines
from kerbside.edge.health import SensorCounters

STATUS_STATE = "status"  # key of the status record in the outbox's state table
DETECTOR_STATE = "detector"


def status_record(
    *,
    gateway_id: str,
    version: str,
    now: Instant,
    started: Instant,
    every_s: float,
    stopped: bool,
    broker: str,
    connected: bool,
    link_since: Instant,
    link_error: str | None,
    last_ack: Instant | None,
    clock_synced: bool,
    clock_required: bool,
    held_events: int,
    unwritten_events: int,
    disk_error: str | None,
    events_dropped: int,
    unknown_sensors: int,
    ports: Iterable[tuple[str, bool, int, int]],
    bay_of_sensor: Mapping[str, str],
    stats: Mapping[str, SensorCounters],
    published: Mapping[str, str],
) -> dict[str, Any]:
    """The record the agent saves (JSON-able; instants as epoch ms)."""
    return {
        "v": 1,
        "gateway_id": gateway_id,
        "version": version,
        "pid": os.getpid(),
        "saved": now,
        "started": started,
        "every_s": every_s,
        "stopped": now if stopped else None,
        "broker": broker,
        "connected": connected,
        "link_since": link_since,
        "link_error": link_error,
        "last_ack": last_ack,
        "clock_synced": clock_synced,
        "clock_required": clock_required,
        "held_events": held_events,
        "unwritten_events": unwritten_events,
        "disk_error": disk_error,
        "events_dropped": events_dropped,
        "unknown_sensors": unknown_sensors,
        "ports": [
            {"src": src, "open": is_open, "bytes": seen, "bad_frames": bad}
            for src, is_open, seen, bad in ports
        ],
        "sensors": [
            {
                "sensor_id": sid,
                "bay_id": bay,
                "state": published.get(sid, "unknown"),
                "last_seen": None if sid not in stats else stats[sid].last_seen,
                "battery_mv": None if sid not in stats else stats[sid].battery_mv,
                "frames": 0 if sid not in stats else stats[sid].frames,
                "lost_frames": 0 if sid not in stats else stats[sid].lost_frames,
            }
            for sid, bay in bay_of_sensor.items()
        ],
    }


@dataclass(frozen=True, slots=True)
class OnDisk:
    """What ``kerbside-edge status`` read from an outbox file."""

    path: Path
    epoch: str | None
    last_seq: int
    waiting: int
    oldest_confirmed: Instant | None
    status: dict[str, Any] | None
    learned: dict[str, str]  # sensor -> the detector's saved belief (vacant / occupied)


def read_on_disk(path: Path) -> OnDisk:
    """Read an outbox file without changing it; ConfigError if there is none or it is unusable."""
    if not path.exists():
        raise ConfigError(f"{path}: no outbox here: the agent has not run with this config yet")
    try:
        db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise ConfigError(f"{path}: cannot open: {exc}") from exc
    try:
        meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
        waiting, first = db.execute("SELECT COUNT(*), MIN(seq) FROM events").fetchone()
        oldest = None
        if first is not None:
            (payload,) = db.execute("SELECT payload FROM events WHERE seq = ?", (first,)).fetchone()
            oldest = _confirmed(payload)
        states = dict(db.execute("SELECT key, value FROM state").fetchall())
    except sqlite3.DatabaseError as exc:
        raise ConfigError(f"{path}: not a readable outbox: {exc}") from exc
    finally:
        db.close()
    return OnDisk(
        path=path,
        epoch=meta.get("epoch"),
        last_seq=int(meta.get("last_seq", 0)),
        waiting=int(waiting),
        oldest_confirmed=oldest,
        status=_json(states.get(STATUS_STATE)),
        learned={
            sid: str(saved.get("mode"))
            for sid, saved in (
                (_json(states.get(DETECTOR_STATE)) or {}).get("sensors") or {}
            ).items()
            if isinstance(saved, dict)
        },
    )


def _json(text: object) -> dict[str, Any] | None:
    if not isinstance(text, str):
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _confirmed(payload: bytes) -> Instant | None:
    body = _json(bytes(payload).decode("utf-8", "replace"))
    try:
        return None if body is None else parse_instant(str(body.get("confirmed_ts")))
    except ValueError:
        return None


def _pid_alive(pid: object) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"kerbside-edge" in cmdline or b"kerbside.edge" in cmdline


def _ago(now: Instant, then: Instant | None) -> str:
    if then is None:
        return "never"
    seconds = max(0, now - then) / 1000
    if seconds < 120:
        text = f"{seconds:.0f} s"
    elif seconds < 7200:
        text = f"{seconds / 60:.0f} min"
    elif seconds < 172_800:
        text = f"{seconds / 3600:.1f} h"
    else:
        text = f"{seconds / 86400:.0f} days"
    return f"{format_instant(then)[:19]}Z ({text} ago)"


def render(disk: OnDisk, now: Instant, alive: Callable[[object], bool] = _pid_alive) -> str:
    """The status screen; ``alive(pid)`` says whether the agent that saved it still runs."""
    st = disk.status or {}
    lines = []
    gateway = st.get("gateway_id", "?")
    if not st:
        state = "no status saved yet (the agent saves one when it starts)"
    elif alive(st.get("pid")) and st.get("stopped") is None:
        state = f"running (pid {st['pid']}), since {_ago(now, st.get('started'))}"
    elif st.get("stopped") is not None:
        state = f"stopped cleanly at {_ago(now, st['stopped'])}"
    else:
        state = f"not running; it did not stop cleanly (last saved {_ago(now, st.get('saved'))})"
    lines.append(f"gateway {gateway}: agent {state}")
    running = state.startswith("running")
    if st:
        lines.append(f"  version {st.get('version')}; status saved {_ago(now, st.get('saved'))}")
        every_ms = float(st.get("every_s") or 60) * 1000
        if running and now - int(st.get("saved") or now) > 3 * every_ms + 10_000:
            lines.append(
                f"  LATE: the agent saves its status every {every_ms / 1000:g} s and has not: "
                f"is the disk full? (df -h {disk.path.parent})"
            )
        link = "connected" if st.get("connected") else "NOT connected"
        link = link if running else f"was {link}"
        lines.append(f"broker {st.get('broker')}: {link} since {_ago(now, st.get('link_since'))}")
        if st.get("link_error") and not st.get("connected"):
            lines.append(f"  last error: {st['link_error']}")
        lines.append(f"  last acknowledgement: {_ago(now, st.get('last_ack'))}")
        clock = "synchronised" if st.get("clock_synced") else "NOT synchronised"
        if not st.get("clock_synced") and not st.get("clock_required", True):
            clock += " (not waited for: clock.require_sync is false)"
        held = f", {st['held_events']} events held until it is" if st.get("held_events") else ""
        lines.append(f"clock: {clock}{held}")
    oldest = "" if disk.oldest_confirmed is None else f", oldest {_ago(now, disk.oldest_confirmed)}"
    lines.append(
        f"outbox {disk.path}: {disk.waiting} events waiting{oldest}; "
        f"epoch {disk.epoch}, last seq {disk.last_seq}"
    )
    if st.get("unwritten_events") or st.get("disk_error"):
        lines.append(
            f"  DISK: {st.get('unwritten_events', 0)} events held in memory, "
            f"not yet on disk: {st.get('disk_error')}"
        )
    if st:
        lines.append(
            f"  events dropped since start: {st.get('events_dropped', 0)}; "
            f"frames from unknown sensors: {st.get('unknown_sensors', 0)}"
        )
        for port in st.get("ports") or []:
            opened = "open" if port.get("open") else "NOT open"
            opened = opened if running else f"was {opened}"
            lines.append(
                f"port {port.get('src')}: {opened}, {port.get('bytes')} bytes, "
                f"{port.get('bad_frames')} bad frames"
            )
        lines.extend(_sensor_table(st.get("sensors") or [], disk.learned, now))
    return "\n".join(lines)


def _sensor_table(
    sensors: list[dict[str, Any]], learned: dict[str, str], now: Instant
) -> list[str]:
    header = ("sensor", "bay", "state", "detector", "last frame", "battery", "frames", "lost")
    rows = [header]
    for s in sensors:
        sid = str(s.get("sensor_id"))
        battery = s.get("battery_mv")
        rows.append(
            (
                sid,
                str(s.get("bay_id")),
                str(s.get("state")),
                learned.get(sid, "learning"),
                _ago(now, s.get("last_seen")).split(" (")[-1].rstrip(")"),
                "-" if battery is None else f"{battery} mV",
                str(s.get("frames", 0)),
                str(s.get("lost_frames", 0)),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    return [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]


def status_main(args: argparse.Namespace) -> int:
    """``kerbside-edge status [--config FILE]``: exit 0 if the agent runs, 3 if it does not."""
    from kerbside.edge.config import load_edge_config  # noqa: PLC0415

    config = load_edge_config(args.config)
    disk = read_on_disk(config.outbox.path)
    now = time.time_ns() // 1_000_000
    print_lines([render(disk, now)])
    st = disk.status or {}
    return 0 if _pid_alive(st.get("pid")) and st.get("stopped") is None else 3
