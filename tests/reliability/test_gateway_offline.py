"""A gateway offline for an hour, on a simulated clock (the collector's runs 360 times the wall's,
so the hour takes ten seconds).

What the hour must prove: the gateway's outbox (the real ``kerbside-edge`` agent's, on disk) holds
an hour of confirmed events while it cannot reach the broker, and delivers every one, in seq
order, when it can; the collector stores each once, with the events' own (backdated) times; and
its alerts are what the rules make of the records in the order they arrived, as ``replay`` of the
journal in arrival order says. That is not ``replay`` in event time: a record more than
``alert_delay_s`` late can only clear what was already raised (an unpaid alert an hour after the
car left helps no one), so the stays inside the hour raise nothing, a departure inside it clears
the alert raised before it at its true time, and the stays of the last minutes (on time again)
raise theirs. The gateway's last will raises gateway_offline, its return clears it.

The agent's detector is tested on its own (tests/edge, tests/e2e/test_edge_runtime.py); here the
hour's events go into the agent's outbox through the outbox's own ``append`` while the agent is
down, as its detector would have put them there, so that their times can be on the simulated
clock.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from kerbside.collector.records import from_journal_dict
from kerbside.collector.replay import replay_lines
from kerbside.collector.rules import RulesEngine
from kerbside.collector.rules.alerts import KINDS as ALERT_KINDS
from kerbside.core.instants import format_instant, parse_instant
from kerbside.core.site import load_site
from kerbside.edge.model import OccupancyChange
from kerbside.edge.outbox import Outbox
from tests.helpers import Mosquitto, wait_for_log, wait_until, write_collector_setup

pytestmark = [pytest.mark.slow, pytest.mark.reliability]

SPEED = 360.0  # an hour in ten seconds
MIN = 60_000
DELAY_S = 600  # alert_delay_s: ten simulated minutes, 1.7 s of wall time
BIN = Path(sys.executable).parent
ENFORCEMENT = set(ALERT_KINDS)


class Clock:
    """The collector's test clock, read the same way here."""

    def __init__(self) -> None:
        self.start = (int(time.time() * 1000) // 1000) * 1000
        self.anchor = int(time.time() * 1000) + 300

    def env(self) -> str:
        return f"{format_instant(self.start)},{SPEED},{self.anchor}"

    def now(self) -> int:
        return self.start + int((time.time() * 1000 - self.anchor) * SPEED)

    def wait(self, instant: int) -> None:
        """Until the simulated clock reaches ``instant`` (time passing is the test's subject)."""
        while self.now() < instant:
            time.sleep(0.02)


def _edge_config(tmp_path: Path, port: int, root: str, outbox: Path) -> Path:
    config = tmp_path / "edge.yaml"
    sensors = "".join(f"  - {{id: S{i:03d}, bay: B{i:03d}}}\n" for i in range(1, 5))
    config.write_text(
        "gateway_id: gw-1\n"
        f"mqtt: {{host: 127.0.0.1, port: {port}, topic_root: {root}}}\n"
        f"outbox: {{path: {outbox}, max_mb: 16}}\n"
        "health_interval_s: 3600\n"
        "clock: {require_sync: false}\n"
        f"sensors:\n{sensors}"
    )
    return config


def _hour(begin: int, end: int, seed: int) -> list[OccupancyChange]:
    """Stays of 3 to 12 minutes at B002-B004 from ``begin`` to ``end``, confirmed 10 s later."""
    rng = random.Random(seed)
    changes = []
    for bay in ("B002", "B003", "B004"):
        t = begin + rng.randint(0, 5 * MIN)
        occupied = True
        while t < end:
            state = "occupied" if occupied else "vacant"
            changes.append(OccupancyChange(bay, "S" + bay[1:], state, t, t + 10_000))  # type: ignore[arg-type]
            t += rng.randint(3 * MIN, 12 * MIN)
            occupied = not occupied
    return sorted(changes, key=lambda c: c.confirmed_ts)


def _append(outbox: Path, changes: list[OccupancyChange]) -> None:
    box = Outbox(outbox, "gw-1", max_mb=16)
    try:
        box.append(changes)
    finally:
        box.close()


def _count(db_path: Path, sql: str) -> int:
    db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        return int(db.execute(sql).fetchone()[0])
    except sqlite3.OperationalError:
        return 0  # not created yet
    finally:
        db.close()


def _replay_as_received(db: sqlite3.Connection, site_path: Path) -> list[dict[str, Any]]:
    """The rules over the journal in the order records arrived, each under the clock it met."""
    engine = RulesEngine(load_site(site_path))
    latest: dict[str, dict[str, Any]] = {}
    for _pos, watermark, body in db.execute(
        "SELECT pos, watermark, body FROM journal ORDER BY pos"
    ):
        for change in engine.advance(watermark) + engine.apply(from_journal_dict(json.loads(body))):
            latest[change.alert.alert_id] = change.alert.to_record()
    final = int(db.execute("SELECT value FROM kv WHERE key = 'watermark'").fetchone()[0])
    for change in engine.advance(final):
        latest[change.alert.alert_id] = change.alert.to_record()
    return list(latest.values())


def _key(alert: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(
        alert[k]
        for k in ("alert_id", "kind", "bay_id", "status", "raised_at", "cleared_at", "clear_reason")
    )


def test_a_gateway_offline_for_an_hour_loses_nothing_and_its_alerts_are_as_received(
    tmp_path: Path, own_broker: Mosquitto, topic_root: str
) -> None:
    clock = Clock()
    config = write_collector_setup(
        tmp_path / "collector",
        port=own_broker.port,
        topic_root=topic_root,
        alert_delay_s=DELAY_S,
        # the agent sends no health in this test: only its last will may say it is offline
        extra="maintenance: {gateway_offline_after_s: 86400}\n",
    )
    store = tmp_path / "collector" / "collector.db"
    log = tmp_path / "collector" / "collector.log"
    env = {**os.environ, "KERBSIDE_COLLECTOR_CLOCK": clock.env()}
    with log.open("wb") as out:
        collector = subprocess.Popen(
            [sys.executable, "-m", "kerbside.collector.cli", "run", "--config", str(config)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
    outbox = tmp_path / "edge" / "outbox.db"
    edge_config = _edge_config(tmp_path, own_broker.port, topic_root, outbox)
    agents: list[subprocess.Popen[bytes]] = []

    def start_agent() -> None:
        with (tmp_path / "edge.log").open("ab") as out:
            agents.append(
                subprocess.Popen(
                    [str(BIN / "kerbside-edge"), "run", "--config", str(edge_config)],
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            )

    try:
        wait_for_log(log, "connected to", collector)
        # Online: a car at B001, published live; no payment, so unpaid after a minute's
        # observation (raised once alert_delay_s has passed).
        arrival = clock.now()
        _append(outbox, [OccupancyChange("B001", "S001", "occupied", arrival - 10_000, arrival)])
        start_agent()
        wait_until(lambda: _count(store, "SELECT COUNT(*) FROM events") == 1, 20)
        clock.wait(arrival + MIN + DELAY_S * 1000 + 30_000)
        unpaid = "SELECT COUNT(*) FROM alerts WHERE kind = 'unpaid' AND bay_id = 'B001'"
        wait_until(lambda: _count(store, unpaid) == 1, 10)

        # Offline: the agent dies (its last will says so) and, cut off, its outbox fills with
        # an hour of what it confirms: B001's car leaves, B002-B004 come and go.
        agents[-1].send_signal(signal.SIGKILL)
        agents[-1].wait()
        cut = clock.now()
        left = cut + 5 * MIN
        hour = [OccupancyChange("B001", "S001", "vacant", left, left + 10_000)]
        hour += _hour(cut + 2 * MIN, cut + 62 * MIN, seed=11)
        hour.sort(key=lambda c: c.confirmed_ts)
        _append(outbox, hour)
        back = cut + 64 * MIN
        clock.wait(back)

        # Back: everything flows, late and backdated.
        start_agent()
        total = 1 + len(hour)
        wait_until(lambda: _count(store, "SELECT COUNT(*) FROM events") == total, 30)
        clock.wait(clock.now() + MIN + DELAY_S * 1000 + 60_000)  # what is due falls due
        agents[-1].send_signal(signal.SIGTERM)
        assert agents[-1].wait(20) == 0
        collector.send_signal(signal.SIGTERM)
        assert collector.wait(30) == 0
    finally:
        for proc in (*agents, collector):
            if proc.poll() is None:
                proc.kill()
                proc.wait()

    db = sqlite3.connect(store)
    # Nothing lost, nothing twice, in seq order; the outbox is empty.
    bodies = [json.loads(b) for (b,) in db.execute("SELECT body FROM journal ORDER BY pos")]
    assert [b["seq"] for b in bodies] == list(range(1, total + 1))
    assert [b["ts"] for b in bodies[1:]] == [format_instant(c.ts) for c in hour]
    assert _count(outbox, "SELECT COUNT(*) FROM events") == 0
    # Backdated: the sessions carry the events' own times.
    sessions = db.execute(
        "SELECT (SELECT COUNT(*) FROM sessions WHERE end IS NOT NULL)"
        " + (SELECT COUNT(*) FROM sessions_recent WHERE end IS NOT NULL)"
    ).fetchone()[0]
    assert sessions == sum(1 for c in hour if c.state == "vacant")
    alerts = [json.loads(r) for (r,) in db.execute("SELECT record FROM alerts")]
    enforcement = [a for a in alerts if a["kind"] in ENFORCEMENT]
    # B001's alerts, raised while online, were cleared at the car's true departure.
    b001 = sorted((a["kind"], a["status"], a["clear_reason"], a["cleared_at"])
                  for a in enforcement if a["bay_id"] == "B001")  # fmt: skip
    assert b001 == [
        ("overstay", "cleared", "vehicle_left", format_instant(left)),
        ("unpaid", "cleared", "vehicle_left", format_instant(left)),
    ]
    # The gateway's last will raised gateway_offline; its return cleared it (the agent's clean
    # stop at the end raised another).
    (offline,) = [
        a for a in alerts if a["kind"] == "gateway_offline" and _ms(a["raised_at"]) < back
    ]
    assert offline["status"] == "cleared"
    assert cut - 2 * MIN <= _ms(offline["raised_at"]) <= cut + 2 * MIN
    assert _ms(offline["cleared_at"]) >= back
    # The alerts are the rules' verdict on the records as they arrived ...
    expected = _replay_as_received(db, config.parent / "site.yaml")
    assert sorted(map(_key, enforcement)) == sorted(map(_key, expected))
    # ... which raised nothing for the stays that were over long before they arrived, but did
    # for those still inside alert_delay_s when they came; replay in event time would have
    # raised the others too, an hour late.
    late_ok = back - DELAY_S * 1000
    raised = {a["alert_id"] for a in enforcement}
    assert all(_ms(a["raised_at"]) < cut or _ms(a["raised_at"]) >= late_ok for a in enforcement)
    assert any(_ms(a["raised_at"]) >= late_ok for a in enforcement)
    exported = [json.dumps(body) for body in bodies]
    in_event_time, errors = replay_lines(exported, load_site(config.parent / "site.yaml"))
    assert errors == []
    stale = [a for a in in_event_time if a["alert_id"] not in raised]
    assert stale
    assert all(cut <= _ms(a["raised_at"]) < late_ok for a in stale)
    db.close()


def _ms(text: str) -> int:
    return parse_instant(text)
