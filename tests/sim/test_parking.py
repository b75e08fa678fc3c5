"""Drivers on a site's bays: the simulator's true contraventions against the rules engine."""

from __future__ import annotations

import itertools
import json
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from kerbside.collector.replay import replay_lines
from kerbside.core.instants import format_instant
from kerbside.core.site import Site, load_site
from kerbside.sim.cli import main
from kerbside.sim.parking import QUICK, controlled, plan_parking
from kerbside.sim.street import DEFAULT_START
from kerbside.sim.truth import load_truth

pytestmark = pytest.mark.slow  # starts processes (brokers, programs, servers)

SITE = """\
site: sim-street
timezone: Europe/London
defaults: {grace_minutes: 10, observation_minutes: 5}
zones:
  - id: SIM-Z1
    name: Sim Street
    controlled_hours:
      - {days: [mon, tue, wed, thu, fri, sat], start: "08:30", end: "18:30"}
bays:
  - {id: B-PAID-1, zone: SIM-Z1, kind: paid, max_stay_minutes: 120, sensor: S-000001,
     gateway: gw-a}
  - {id: B-PAID-2, zone: SIM-Z1, kind: paid, sensor: S-000002, gateway: gw-a}
  - {id: B-RES-1, zone: SIM-Z1, kind: resident, sensor: S-000003, gateway: gw-a}
  - {id: B-LOAD-1, zone: SIM-Z1, kind: loading, max_stay_minutes: 20, sensor: S-000004,
     gateway: gw-b}
  - {id: B-DIS-1, zone: SIM-Z1, kind: disabled, max_stay_minutes: 180, sensor: S-000005,
     gateway: gw-b}
  - {id: B-FREE-1, zone: SIM-Z1, kind: free, sensor: S-000006, gateway: gw-b}
  - {id: B-PAID-ANY, zone: SIM-Z1, kind: paid, max_stay_minutes: 60, controlled_hours: any,
     sensor: S-000007, gateway: gw-b}
"""


@pytest.fixture(scope="module")
def site_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("site") / "site.yaml"
    path.write_text(SITE)
    return path


@pytest.fixture(scope="module")
def site(site_file: Path) -> Site:
    return load_site(site_file)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_true_contraventions_equal_the_rules_engine_on_an_ideal_journal(
    site: Site, seed: int
) -> None:
    plan = plan_parking(site, seed=seed, start=DEFAULT_START, hours=12)
    behaviours = Counter(v.behaviour for v in plan.visits)
    assert {"pays", "permit", "forgets", "short_payment", "overstays", "legal"} <= set(behaviours)
    alerts, errors = replay_lines([json.dumps(r) for r in plan.journal()], site)
    assert errors == []
    got = {(a["bay_id"], a["kind"], a["session_start"], a["raised_at"]) for a in alerts}
    want = {
        (c.bay_id, c.kind, format_instant(c.session_start), format_instant(c.due_at))
        for c in plan.contraventions
    }
    assert {k for _, k, _, _ in want} == {"unpaid", "expired", "overstay"}
    assert got == want


def test_visits_are_unambiguous(site: Site) -> None:
    plan = plan_parking(site, seed=4, start=DEFAULT_START, hours=12)
    by_bay: dict[str, list] = {}  # type: ignore[type-arg]
    for v in plan.visits:
        by_bay.setdefault(v.bay_id, []).append(v)
        assert v.departure - v.arrival >= 60_000
        bay = site.bays[v.bay_id]
        states = {controlled(site, bay, t) for t in range(v.arrival, v.departure, 60_000)}
        assert states == {v.controlled}
        for c in v.contraventions:
            assert v.arrival <= c.due_at <= v.departure - 120_000
    for visits in by_bay.values():
        for a, b in itertools.pairwise(visits):
            assert b.arrival - a.departure >= 60_000
            assert all(r.end < b.arrival for r in a.rights)  # no right carries over


def test_street_command_writes_plan_journals_and_captures(site_file: Path, tmp_path: Path) -> None:
    assert main(["street", "--site", str(site_file), "--hours", "2", "--quiet", str(tmp_path)]) == 0
    plan = json.loads((tmp_path / "plan.json").read_text())
    rights = [json.loads(x) for x in (tmp_path / "rights.jsonl").read_text().splitlines()]
    assert rights == plan["rights"]
    assert all(r["type"] == "right" for r in rights)
    for gateway, sensors in (("gw-a", 3), ("gw-b", 4)):
        truth = load_truth(tmp_path / gateway / "truth.json")
        assert len(truth.sensors) == sensors
        assert truth.silent == []
        assert truth.faults == []
        ids = {s.bay_id for s in truth.sensors}
        planned = {(v["bay_id"], v["arrival"]) for v in plan["visits"] if v["bay_id"] in ids}
        assert {(s.bay_id, format_instant(s.arrival)) for s in truth.sessions} == planned


def test_serial_serves_a_sites_gateway(site_file: Path, tmp_path: Path) -> None:
    plan_out = tmp_path / "plan.json"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "kerbside.sim.cli",
            "serial",
            "--site",
            str(site_file),
            "--gateway",
            "gw-b",
            "--hours",
            "1",
            "--dir",
            str(tmp_path),
            "--plan-out",
            str(plan_out),
            "--config-out",
            str(tmp_path / "edge.yaml"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == str(tmp_path / "tty0").encode()
        plan = json.loads(plan_out.read_text())
        assert {v["bay_id"] for v in plan["visits"]} <= {
            "B-LOAD-1",
            "B-DIS-1",
            "B-FREE-1",
            "B-PAID-ANY",
        }
        config = (tmp_path / "edge.yaml").read_text()
        assert "gateway_id: gw-b" in config
        assert "S-000007" in config
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=10)
    assert proc.returncode == 0


DEMO_SITE = """\
site: demo
timezone: Europe/London
defaults: {grace_minutes: 1, observation_minutes: 1}
zones:
  - {id: D1, name: Demo, controlled_hours: any}
bays:
  - {id: D-PAID-1, zone: D1, kind: paid, max_stay_minutes: 3, sensor: S-000001, gateway: gw-1}
  - {id: D-PAID-2, zone: D1, kind: paid, max_stay_minutes: 4, sensor: S-000002, gateway: gw-1}
  - {id: D-RES-1, zone: D1, kind: resident, sensor: S-000003, gateway: gw-1}
  - {id: D-LOAD-1, zone: D1, kind: loading, max_stay_minutes: 2, sensor: S-000004, gateway: gw-1}
  - {id: D-DIS-1, zone: D1, kind: disabled, max_stay_minutes: 3, sensor: S-000005, gateway: gw-1}
"""


def test_quick_drivers_on_demo_length_rules(tmp_path: Path) -> None:
    path = tmp_path / "demo.yaml"
    path.write_text(DEMO_SITE)
    demo = load_site(path)
    firsts = []
    for seed in range(1, 6):
        plan = plan_parking(demo, seed=seed, start=DEFAULT_START, hours=0.25, mix=QUICK)
        assert min(v.arrival for v in plan.visits) < DEFAULT_START + 60_000
        alerts, errors = replay_lines([json.dumps(r) for r in plan.journal()], demo)
        assert errors == []
        got = {(a["bay_id"], a["kind"], a["session_start"], a["raised_at"]) for a in alerts}
        want = {
            (c.bay_id, c.kind, format_instant(c.session_start), format_instant(c.due_at))
            for c in plan.contraventions
        }
        assert got == want
        firsts.append(min(c.due_at for c in plan.contraventions) - DEFAULT_START)
    assert sorted(firsts)[2] <= 120_000  # most demos show an alert within two minutes
