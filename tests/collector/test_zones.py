"""The rules run one engine per zone (``zones.ZoneRules``) and behave exactly as one engine over
the whole site (what ``replay`` runs): the same alert changes, for any records in any order,
rights and suspensions replaced by id under other zones, suspensions spanning zones,
cancellations, officers' actions, snapshots saved and restored per zone, and a site reload that
moves a bay to another zone."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kerbside.collector.records import OccupancyEvent, Right, Suspension
from kerbside.collector.replay import read_journal, replay_records
from kerbside.collector.rules import AlertChange, RulesEngine
from kerbside.collector.store import EVERY_ZONE
from kerbside.collector.zones import ZoneRules
from kerbside.core.instants import Instant
from kerbside.core.site import Site, parse_site
from tests.collector.rules_builders import Journal, at

MIN = 60_000
BASE = at("2026-11-26 07:00")
HOURS = [{"days": ["mon", "tue", "wed", "thu", "fri", "sat"], "start": "08:30", "end": "18:30"}]


def three_zones(moved: bool = False) -> Site:
    """Z1: A1, A2; Z2: B1, B2; Z3: C1. ``moved``: A2 belongs to Z2 and B2 to the new zone Z4."""
    zone_of = {"A1": "Z1", "A2": "Z1", "B1": "Z2", "B2": "Z2", "C1": "Z3"}
    if moved:
        zone_of.update(A2="Z2", B2="Z4")
    zones = [
        {"id": "Z1", "controlled_hours": HOURS},
        {"id": "Z2", "controlled_hours": "any"},
        {"id": "Z3", "controlled_hours": HOURS, "observation_minutes": 2},
    ]
    if moved:
        zones.append({"id": "Z4", "controlled_hours": "any"})
    bays = [
        {
            "id": bay,
            "zone": zone,
            "kind": "paid" if bay != "C1" else "limited",
            "max_stay_minutes": 45,
            "sensor": f"S{bay}",
            "gateway": "gw2" if bay.startswith("C") else "gw1",  # as rules_builders.Journal
        }
        for bay, zone in zone_of.items()
    ]
    return parse_site(
        {
            "site": "zones",
            "timezone": "Europe/London",
            "defaults": {"grace_minutes": 5, "observation_minutes": 5},
            "zones": zones,
            "bays": bays,
        }
    )


BAYS = ["A1", "A2", "B1", "B2", "C1"]
TARGETS = [("bay", b) for b in BAYS] + [("zone", z) for z in ("Z1", "Z2", "Z3")]


@st.composite
def operations(draw: st.DrawFn) -> list[tuple[Any, ...]]:
    """A live collector's calls: records (often late), the clock advancing, cancellations,
    officers, saves and restores, and a site reload."""
    ops: list[tuple[Any, ...]] = []
    clock = BASE
    seq = 0
    alert_pool = st.integers(0, 30)
    for _ in range(draw(st.integers(5, 40))):
        choice = draw(st.integers(0, 19))
        t = clock + draw(st.integers(-30, 90)) * MIN
        if choice < 7:
            seq += 1
            bay = draw(st.sampled_from(BAYS))
            state = draw(st.sampled_from(["occupied", "occupied", "vacant", "unknown"]))
            event = OccupancyEvent(f"gw1:e:{seq}", "gw1", seq, bay, f"S{bay}", state, t, t)
            ops.append(("apply", event))
        elif choice < 10:
            kind, target = draw(st.sampled_from(TARGETS))
            end = t + draw(st.integers(1, 180)) * MIN
            right_id = draw(st.sampled_from(["p1", "p2", "p3"]))
            on_bay, on_zone = (target, None) if kind == "bay" else (None, target)
            ops.append(("apply", Right(right_id, "payment", on_bay, on_zone, t, end)))
        elif choice < 12:
            bays = tuple(draw(st.lists(st.sampled_from(BAYS), min_size=1, max_size=3, unique=True)))
            end = t + draw(st.integers(1, 180)) * MIN
            ops.append(("apply", Suspension(draw(st.sampled_from(["s1", "s2"])), bays, t, end)))
        elif choice < 16:
            clock += draw(st.integers(1, 120)) * MIN
            ops.append(("advance", clock))
        elif choice == 16:
            ops.append(("cancel", draw(st.sampled_from(["p1", "p2", "p3"])), clock + 1))
        elif choice == 17:
            ops.append((draw(st.sampled_from(["ack", "resolve"])), draw(alert_pool), clock + 1))
        elif choice == 18:
            ops.append(("restore",))
        else:
            ops.append(("reload",))
    ops.append(("advance", clock + 24 * 60 * MIN))
    return ops


def _run(ops: list[tuple[Any, ...]], zoned: bool) -> list[AlertChange]:
    site = three_zones()
    rules: Any = ZoneRules.restore(site, {}) if zoned else RulesEngine(site)
    out: list[AlertChange] = []
    reloaded = False
    for op in ops:
        kind = op[0]
        if kind == "apply":
            out += rules.apply(op[1])
        elif kind == "advance":
            out += rules.advance(op[1])
        elif kind == "cancel":
            out += rules.cancel_right(op[1], op[2])
        elif kind in ("ack", "resolve"):
            raised = sorted({c.alert.alert_id for c in out if c.change == "raised"})
            if raised:
                alert_id = raised[op[1] % len(raised)]
                action = rules.acknowledge if kind == "ack" else rules.resolve
                out += action(alert_id, op[2])
        elif kind == "restore":
            if zoned:
                snapshots = {z: (0, data) for z, data in rules.snapshots().items()}
                rules = ZoneRules.restore(rules.site, snapshots)
            else:
                rules = RulesEngine.restore(rules.site, rules.snapshot())
        elif kind == "reload" and not reloaded:
            reloaded = True
            out += rules.replace_site(three_zones(moved=True))
    return out


def _per_alert(changes: list[AlertChange]) -> dict[str, list[tuple[Any, ...]]]:
    """Each alert's changes in order (zones interleave differently; each alert's own order and
    every field are what must agree)."""
    out: dict[str, list[tuple[Any, ...]]] = defaultdict(list)
    for c in changes:
        out[c.alert.alert_id].append((c.change, c.at, c.alert.to_record()))
    return dict(out)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(operations())
def test_zones_make_the_same_alert_changes_as_one_engine(ops: list[tuple[Any, ...]]) -> None:
    assert _per_alert(_run(ops, zoned=True)) == _per_alert(_run(ops, zoned=False))


@st.composite
def journals(draw: st.DrawFn) -> tuple[Journal, Instant]:
    journal = Journal()
    for _ in range(draw(st.integers(1, 25))):
        t = BASE + draw(st.integers(0, 12 * 60)) * MIN
        choice = draw(st.integers(0, 9))
        if choice < 6:
            bay = draw(st.sampled_from(BAYS))
            journal.occ(t, draw(st.sampled_from(["occupied", "vacant"])), bay, sensor_id=f"S{bay}")
        elif choice < 8:
            kind, target = draw(st.sampled_from(TARGETS))
            end = t + draw(st.integers(1, 180)) * MIN
            journal.right(
                draw(st.sampled_from(["p1", "p2"])),
                t,
                end,
                bay=target if kind == "bay" else None,
                zone=target if kind == "zone" else None,
            )
        else:
            bays = tuple(draw(st.lists(st.sampled_from(BAYS), min_size=1, max_size=3, unique=True)))
            journal.suspend("s1", t, t + draw(st.integers(1, 180)) * MIN, bays)
    return journal, BASE + 20 * 60 * MIN


@settings(max_examples=150, deadline=None)
@given(journals())
def test_replay_through_zones_equals_replay(case: tuple[Journal, Instant]) -> None:
    journal, until = case
    site = three_zones()
    accepted, errors = read_journal(journal.lines, site)
    assert errors == []
    one = replay_records(accepted, site, until)
    zoned = replay_records(accepted, site, until, engine=ZoneRules.restore(site, {}))  # type: ignore[arg-type]
    assert [a.to_record() for a in zoned] == [a.to_record() for a in one]


def test_a_snapshot_of_one_engine_restores_into_zones() -> None:
    """A store written before the rules ran per zone holds one snapshot for every zone."""
    site = three_zones()
    engine = RulesEngine(site)
    t = at("2026-11-26 09:00")
    for seq, bay in enumerate(BAYS, 1):
        engine.apply(OccupancyEvent(f"e{seq}", "gw1", seq, bay, f"S{bay}", "occupied", t, t))
    engine.apply(Suspension("s1", ("A1", "B1"), t + 30 * MIN, t + 90 * MIN))  # queued: future
    engine.advance(t + 10 * MIN)
    rules = ZoneRules.restore(site, {EVERY_ZONE: (7, engine.snapshot())})
    later = t + 4 * 60 * MIN
    assert sorted((c.alert.alert_id, c.change, c.at) for c in rules.advance(later)) == sorted(
        (c.alert.alert_id, c.change, c.at) for c in engine.advance(later)
    )
    assert rules.oldest_position() == 7
    assert rules.engine("Z3").site.bays.keys() == {"C1"}


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(operations())
def test_zones_saved_before_a_bay_changed_zone_restore_as_one_engine(
    ops: list[tuple[Any, ...]],
) -> None:
    """The site file changed while the collector was stopped: a bay saved in one zone's
    snapshot now belongs to another (and a zone is new); it carries on as in one engine."""
    live = [op for op in ops if op[0] in ("apply", "advance")]
    half = len(live) // 2
    site, moved = three_zones(), three_zones(moved=True)
    zoned, one = ZoneRules.restore(site, {}), RulesEngine(site)
    for op in live[:half]:
        getattr(zoned, op[0])(op[1])
        getattr(one, op[0])(op[1])
    snapshots = {z: (3, data) for z, data in zoned.snapshots().items()}
    zoned = ZoneRules.restore(moved, snapshots)
    one = RulesEngine.restore(moved, one.snapshot())
    out_zoned: list[AlertChange] = []
    out_one: list[AlertChange] = []
    for op in live[half:]:
        out_zoned += getattr(zoned, op[0])(op[1])
        out_one += getattr(one, op[0])(op[1])
    assert _per_alert(out_zoned) == _per_alert(out_one)


def test_records_of_one_instant_keep_their_order_when_their_bay_changes_zone() -> None:
    def occ(seq: int, bay: str, state: str, minute: int) -> tuple[str, OccupancyEvent]:
        t = BASE + minute * MIN
        return ("apply", OccupancyEvent(f"gw1:e:{seq}", "gw1", seq, bay, f"S{bay}", state, t, t))

    ops = [
        occ(1, "B1", "occupied", 1),
        occ(2, "B2", "occupied", 6),
        occ(3, "B2", "vacant", 6),  # B2 is empty from 07:06
        occ(4, "B1", "vacant", 2),
        occ(5, "B1", "occupied", 3),
        ("advance", BASE + MIN),
        ("reload",),  # B2 moves to Z4 with its two records still queued
        ("advance", BASE + 24 * 60 * MIN),
    ]
    one = _per_alert(_run(ops, zoned=False))
    assert {a[0][2]["bay_id"] for a in one.values()} == {"B1"}
    assert _per_alert(_run(ops, zoned=True)) == one
