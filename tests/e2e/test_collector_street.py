"""A simulated street through real edge agents into the collector: ``kerbside-sim serial`` on
ptys, ``kerbside-edge run`` per gateway, ``kerbside-collector run``, one private Mosquitto.

Every event the agents publish is stored once, the arrivals match the street's planned drivers,
and the collector's alerts equal ``replay`` of what it stored. (The alerts-versus-true-
contraventions figure needs minutes of street: ``python bench/run.py collector`` prints it.)
"""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from kerbside.collector.replay import replay_lines
from kerbside.core.instants import parse_instant
from kerbside.core.site import load_site
from tests.helpers import Mosquitto, wait_until

pytestmark = pytest.mark.slow

GATEWAYS = ("gw-a", "gw-b")
RUN_S = 45


def _site(path: Path) -> None:
    lines = [
        "site: street",
        "timezone: Europe/London",
        "defaults: {grace_minutes: 1, observation_minutes: 1}",
        "zones:",
        "  - {id: ZS, name: Street, controlled_hours: any}",
        "bays:",
    ]
    for g, gateway in enumerate(GATEWAYS):
        for i in range(1, 6):
            n = g * 5 + i
            lines.append(
                f"  - {{id: SB{n:02d}, zone: ZS, street: High St, kind: paid,"
                f" max_stay_minutes: 4, sensor: SS{n:02d}, gateway: {gateway}}}"
            )
    path.write_text("\n".join(lines) + "\n")


def test_street_through_edge_agents_into_the_collector(
    tmp_path: Path, own_broker: Mosquitto, topic_root: str
) -> None:
    exe = Path(sys.executable).parent
    site = tmp_path / "site.yaml"
    _site(site)
    log = (tmp_path / "street.log").open("ab")
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for k, gateway in enumerate(GATEWAYS):
            procs.append(
                subprocess.Popen(
                    [
                        str(exe / "kerbside-sim"),
                        "serial",
                        "--site",
                        str(site),
                        "--gateway",
                        gateway,
                        "--quick",
                        "--seed",
                        str(7 + k),
                        "--hours",
                        "0.1",
                        "--plan-out",
                        str(tmp_path / f"plan-{gateway}.json"),
                        "--config-out",
                        str(tmp_path / f"edge-{gateway}.yaml"),
                        "--dir",
                        str(tmp_path / f"tty-{gateway}"),
                    ],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
        # each simulator writes its agent's config, then its plan (each file whole at once)
        wait_until(
            lambda: all(
                (tmp_path / f"{kind}-{g}.{ext}").exists()
                for g in GATEWAYS
                for kind, ext in (("edge", "yaml"), ("plan", "json"))
            ),
            30,
            "the simulators' configs and plans",
        )
        visits, rights = [], []
        for gateway in GATEWAYS:
            plan = json.loads((tmp_path / f"plan-{gateway}.json").read_text())
            visits += plan["visits"]
            rights += plan["rights"]
            edge = yaml.safe_load((tmp_path / f"edge-{gateway}.yaml").read_text())
            edge["mqtt"] = {"host": "127.0.0.1", "port": own_broker.port, "topic_root": topic_root}
            edge["outbox"]["path"] = str(tmp_path / f"outbox-{gateway}.db")
            (tmp_path / f"edge-{gateway}.yaml").write_text(yaml.safe_dump(edge))
        (tmp_path / "rights.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rights))
        (tmp_path / "collector.yaml").write_text(
            "site: site.yaml\n"
            f"mqtt: {{host: 127.0.0.1, port: {own_broker.port}, topic_root: {topic_root},"
            " client_id: street-collector}\n"
            "store: {path: collector.db}\nhttp: null\njournal_file: rights.jsonl\n"
            "alert_delay_s: 15\n"
        )
        procs.append(
            subprocess.Popen(
                [
                    str(exe / "kerbside-collector"),
                    "run",
                    "--config",
                    str(tmp_path / "collector.yaml"),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        )
        procs += [
            subprocess.Popen(
                [str(exe / "kerbside-edge"), "run", "--config", str(tmp_path / f"edge-{g}.yaml")],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            for g in GATEWAYS
        ]
        started = time.time()
        time.sleep(RUN_S)  # the street runs for this long on purpose: its drivers come and go
        ended = int(time.time() * 1000)
    finally:
        for proc in reversed(procs):  # agents first (clean stop), then collector, then sims
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        log.close()

    db = sqlite3.connect(tmp_path / "collector.db")
    events = [
        json.loads(r[0])
        for r in db.execute("SELECT body FROM journal WHERE type = 'occupancy' ORDER BY pos")
    ]
    ids = [r[0] for r in db.execute("SELECT event_id FROM events")]
    alerts = [json.loads(r[0]) for r in db.execute("SELECT record FROM alerts")]
    watermark = int(db.execute("SELECT value FROM kv WHERE key = 'watermark'").fetchone()[0])
    db.close()
    # every event each agent published is stored exactly once, in each gateway's seq order
    for gateway in GATEWAYS:
        outbox = sqlite3.connect(tmp_path / f"outbox-{gateway}.db")
        last_seq = int(
            outbox.execute("SELECT value FROM meta WHERE key = 'last_seq'").fetchone()[0]
        )
        outbox.close()
        seqs = [e["seq"] for e in events if e["gateway_id"] == gateway]
        assert seqs == list(range(1, last_seq + 1))
    assert len(ids) == len(set(ids)) == len(events)
    # arrivals the street had (confirmed in time) are the collector's occupied events
    cutoff = ended - 25_000  # arrivals after it may not be confirmed and delivered yet

    def same(event: dict[str, Any], visit: dict[str, Any]) -> bool:
        return event["bay_id"] == visit["bay_id"] and (
            abs(parse_instant(event["ts"]) - parse_instant(visit["arrival"])) <= 5_000
        )

    due = [v for v in visits if parse_instant(v["arrival"]) <= cutoff]
    arrivals = [e for e in events if e["state"] == "occupied" and parse_instant(e["ts"]) <= cutoff]
    matched = sum(any(same(e, v) for e in events if e["state"] == "occupied") for v in due)
    true_arrivals = sum(any(same(e, v) for v in visits) for e in arrivals)
    precision = true_arrivals / len(arrivals) if arrivals else 0.0
    recall = matched / len(due) if due else 0.0
    print(
        f"\nstreet {time.time() - started:.0f}s: {len(events)} events, arrivals "
        f"precision {precision:.2f} recall {recall:.2f} ({len(due)} true arrivals)"
    )
    assert len(due) >= 3
    assert recall == 1.0
    assert precision == 1.0
    # and what the collector raised equals replay of what it stored
    exported = subprocess.run(
        [
            str(exe / "kerbside-collector"),
            "export-journal",
            "--config",
            str(tmp_path / "collector.yaml"),
        ],
        capture_output=True,
        check=True,
        text=True,
    ).stdout.splitlines()
    replayed, errors = replay_lines(exported, load_site(site), watermark)
    assert errors == []
    enforcement = [a for a in alerts if a["kind"] in ("overstay", "unpaid", "expired")]
    assert sorted(a["alert_id"] for a in enforcement) == sorted(a["alert_id"] for a in replayed)
