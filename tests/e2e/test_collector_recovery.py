"""The collector SIGKILLed mid-stream, again and again: every event stored exactly once, no alert
raised twice, and the alerts equal ``replay`` of the stored journal.

The collector runs as a real process (``kerbside-collector run``) on a test clock ten times faster
than the wall (``KERBSIDE_COLLECTOR_CLOCK``), so minutes of parking fit in seconds; a gateway
stand-in publishes backdated events on the same clock, as the edge detector does.
"""

from __future__ import annotations

import collections
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from kerbside.collector.replay import replay_lines
from kerbside.collector.rules.alerts import KINDS as ALERT_KINDS
from kerbside.core.instants import format_instant, parse_instant
from kerbside.core.site import load_site
from tests.helpers import Mosquitto, wait_for_log, wait_until, write_collector_setup

pytestmark = [pytest.mark.slow, pytest.mark.reliability]

START = parse_instant("2026-11-26T09:00:00Z")
SPEED = 12.0
BAYS = 8
CONFIRM_MS = 10_000
ENFORCEMENT = set(ALERT_KINDS)


def street(seed: int, horizon_ms: int) -> list[tuple[int, str, str]]:
    """(instant, bay, state) changes: each bay alternates vacant and occupied spells."""
    rng = random.Random(seed)
    changes = []
    for b in range(1, BAYS + 1):
        t = START + rng.randint(5_000, 40_000)
        while t < horizon_ms:
            stay = rng.choice(
                [
                    rng.randint(30_000, 55_000),
                    rng.randint(70_000, 110_000),
                    rng.randint(130_000, 240_000),
                ]
            )
            changes.append((t, f"B{b:03d}", "occupied"))
            t += stay
            if t >= horizon_ms:
                break
            changes.append((t, f"B{b:03d}", "vacant"))
            t += rng.randint(20_000, 60_000)
    return sorted(changes)


def test_sigkill_mid_stream_loses_nothing_and_alerts_equal_replay(
    tmp_path: Path, own_broker: Mosquitto, topic_root: str
) -> None:
    anchor = int(time.time() * 1000) + 500

    def fake_now() -> int:
        return START + int((time.time() * 1000 - anchor) * SPEED)

    journal = tmp_path / "rights.jsonl"
    journal.write_text(
        json.dumps(
            {
                "type": "right",
                "right_id": "p1",
                "kind": "payment",
                "bay_id": "B001",
                "start": format_instant(START),
                "end": format_instant(START + 150_000),
            }
        )
        + "\n"
    )
    config = write_collector_setup(
        tmp_path,
        port=own_broker.port,
        topic_root=topic_root,
        bays=BAYS,
        alert_delay_s=30,
        extra=f"journal_file: {journal}\n",
    )
    env = {**os.environ, "KERBSIDE_COLLECTOR_CLOCK": f"{format_instant(START)},{SPEED},{anchor}"}
    log = (tmp_path / "collector.log").open("ab")

    def start_collector() -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [sys.executable, "-m", "kerbside.collector.cli", "run", "--config", str(config)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )

    horizon = START + 330_000
    changes = street(7, horizon - 60_000)
    alerts_seen: list[dict[str, Any]] = []
    watcher = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2)
    watcher.on_message = lambda c, u, m: alerts_seen.append(json.loads(m.payload))
    watcher.connect("127.0.0.1", own_broker.port)
    watcher.subscribe(f"{topic_root}/alerts/#", 1)
    watcher.loop_start()
    gateway = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2)
    gateway.connect("127.0.0.1", own_broker.port)
    gateway.loop_start()

    published: dict[str, str] = {}

    def publish_all() -> None:
        rng = random.Random(3)
        for seq, (at, bay, state) in enumerate(changes, 1):
            confirmed = at + CONFIRM_MS
            while fake_now() < confirmed:  # the gateway sends each event when it is confirmed
                time.sleep(0.02)
            body = {
                "v": 1,
                "event_id": f"gw-1:ab12cd:{seq}",
                "gateway_id": "gw-1",
                "seq": seq,
                "bay_id": bay,
                "sensor_id": "S" + bay[1:],
                "state": state,
                "ts": format_instant(at),
                "confirmed_ts": format_instant(confirmed),
                "reason": None,
            }
            text = json.dumps(body)
            published[str(body["event_id"])] = text
            gateway.publish(f"{topic_root}/gw/gw-1/events", text, qos=1).wait_for_publish(10)
            if rng.random() < 0.1:  # a retransmission, as after a gateway reconnect
                gateway.publish(f"{topic_root}/gw/gw-1/events", text, qos=1)

    proc = start_collector()
    # Its first run makes its session at the broker: an event published before that has no
    # subscriber to be kept for, and a busy machine can take a second to start the link.
    wait_for_log(tmp_path / "collector.log", "connected to", proc)
    publisher = threading.Thread(target=publish_all, daemon=True)
    publisher.start()
    kills = 0
    try:
        # five kills at least, mid-stream while the gateway publishes (the street lasts about
        # 22 s of wall time), and any still to come while its deadlines fall due
        while publisher.is_alive() or kills < 5:
            time.sleep(random.Random(kills).uniform(2.0, 3.5))  # a kill at a random instant
            if not publisher.is_alive() and kills >= 5:
                break
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            kills += 1
            time.sleep(0.8)  # events queue at the broker meanwhile
            proc = start_collector()
        publisher.join()
        # let the clock pass every deadline the street set up, then stop cleanly
        wait_until(
            lambda: fake_now() >= horizon + 35_000, 120, "the street's last deadline", every=0.1
        )
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        gateway.loop_stop()
        watcher.loop_stop()
        log.close()
    assert kills >= 5

    db = sqlite3.connect(tmp_path / "collector.db")
    stored = [row[0] for row in db.execute("SELECT event_id FROM events")]
    assert sorted(stored) == sorted(published)  # every event, exactly once
    bodies = [
        json.loads(r[0])
        for r in db.execute("SELECT body FROM journal WHERE type = 'occupancy' ORDER BY pos")
    ]
    assert len(bodies) == len(published)
    raises = collections.Counter(
        json.loads(r[0])["alert_id"]
        for r in db.execute("SELECT record FROM alert_changes")
        if json.loads(r[0])["status"] == "open"
    )
    assert raises
    assert max(raises.values()) == 1  # none raised twice
    live = {
        a["alert_id"]: a
        for a in (json.loads(r[0]) for r in db.execute("SELECT record FROM alerts"))
        if a["kind"] in ENFORCEMENT
    }
    watermark = int(db.execute("SELECT value FROM kv WHERE key = 'watermark'").fetchone()[0])
    db.close()

    exported = subprocess.run(
        [sys.executable, "-m", "kerbside.collector.cli", "export-journal", "--config", str(config)],
        capture_output=True,
        check=True,
        text=True,
    ).stdout.splitlines()
    assert len(exported) == len(published) + 1  # and the right
    replayed, errors = replay_lines(exported, load_site(tmp_path / "site.yaml"), watermark)
    assert errors == []

    def key(a: dict[str, Any]) -> tuple[Any, ...]:
        return (
            a["alert_id"],
            a["kind"],
            a["bay_id"],
            a["status"],
            a["raised_at"],
            a["cleared_at"],
            a["clear_reason"],
        )

    assert sorted(map(key, live.values())) == sorted(map(key, replayed))
    kinds = collections.Counter(a["kind"] for a in replayed)
    assert kinds["unpaid"] > 3
    assert kinds["overstay"] > 3
    # nothing lost on the wire either: every raise reached the alerts topic
    open_on_mqtt = {a["alert_id"] for a in alerts_seen if a["status"] == "open"}
    assert set(live) <= open_on_mqtt
    print(f"\n{kills} SIGKILLs, {len(published)} events, alerts {dict(kinds)}")
