"""How a live caller drives the engine: deadlines, alert_delay_s, late records, officers."""

from __future__ import annotations

import json
from typing import Any

import pytest

from kerbside.collector.records import (
    JournalRecord,
    OccupancyEvent,
    RecordValidator,
    Right,
    Suspension,
    to_journal_dict,
)
from kerbside.collector.replay import read_journal, replay_records
from kerbside.collector.rules import Alert, AlertChange, RulesEngine
from tests.collector.rules_builders import at, make_site, view

SITE = make_site(max_stay=None)  # paid bays, Mon-Sat 08:30-18:30, grace 10, observation 5
LIMITED = make_site(kind="limited")
DELAY = 15_000


def occ(when: str, state: str, bay: str = "B1", n: int = 0) -> OccupancyEvent:
    ts = at(when)
    return OccupancyEvent(f"gw1:e:{when}:{n}", "gw1", 1, bay, "S1", state, ts, ts + 10_000)


def right(right_id: str, start: str, end: str, bay: str = "B1") -> Right:
    return Right(right_id, "payment", bay, None, at(start), at(end))


def views(changes: list[AlertChange]) -> list[tuple[str, str, str | None]]:
    return [(c.change, c.alert.kind, c.alert.clear_reason) for c in changes]


def test_next_deadline_is_the_exact_raise_instant() -> None:
    engine = RulesEngine(SITE)
    assert engine.next_deadline() is None
    assert engine.apply(occ("2026-11-26 09:00", "occupied")) == []  # queued: after the clock
    assert engine.next_deadline() == at("2026-11-26 09:00")
    assert engine.advance(at("2026-11-26 09:00")) == []
    assert engine.next_deadline() == at("2026-11-26 09:05")
    assert engine.advance(at("2026-11-26 09:04:59.999")) == []
    changes = engine.advance(at("2026-11-26 09:05"))
    assert views(changes) == [("raised", "unpaid", None)]
    assert changes[0].at == at("2026-11-26 09:05")
    assert engine.next_deadline() == at("2026-11-26 18:30")  # where the period ends


def test_alert_delay_lets_a_backdated_departure_prevent_the_alert() -> None:
    """Live: the engine runs alert_delay_s behind the wall clock, so a departure that happened
    at 09:05 but is confirmed at 09:05:10 still arrives before the alert would be raised."""
    engine = RulesEngine(SITE)
    engine.apply(occ("2026-11-26 09:00", "occupied"))
    wall = at("2026-11-26 09:05:10")
    assert engine.advance(wall - DELAY) == []
    assert engine.apply(occ("2026-11-26 09:05", "vacant")) == []
    assert engine.advance(at("2026-11-26 09:06") - DELAY) == []
    assert engine.open_alerts() == []


def test_a_late_departure_can_only_clear() -> None:
    engine = RulesEngine(SITE)
    engine.apply(occ("2026-11-26 09:00", "occupied"))
    raised = engine.advance(at("2026-11-26 09:10"))
    assert views(raised) == [("raised", "unpaid", None)]
    late = engine.apply(occ("2026-11-26 09:03", "vacant"))  # older than the raise
    assert views(late) == [("cleared", "unpaid", "vehicle_left")]
    assert late[0].alert.cleared_at == at("2026-11-26 09:05")  # never before it was raised
    assert engine.bay_state("B1") == ("vacant", at("2026-11-26 09:03"))


def test_a_late_right_clears_with_right_added() -> None:
    engine = RulesEngine(SITE)
    engine.apply(occ("2026-11-26 09:00", "occupied"))
    engine.advance(at("2026-11-26 09:30"))
    late = engine.apply(right("p1", "2026-11-26 09:20", "2026-11-26 10:00"))
    assert views(late) == [("cleared", "unpaid", "right_added")]
    assert late[0].alert.cleared_at == at("2026-11-26 09:20")
    assert views(engine.advance(at("2026-11-26 10:10"))) == [("raised", "expired", None)]


def test_a_late_arrival_raises_only_what_falls_due_after_the_clock() -> None:
    engine = RulesEngine(LIMITED)
    engine.advance(at("2026-11-26 09:10"))
    assert engine.apply(occ("2026-11-26 09:00", "occupied")) == []
    assert engine.open_alerts() == []  # its unpaid was due at 09:05: passed, never raised
    assert engine.next_deadline() == at("2026-11-26 13:10")
    assert views(engine.advance(at("2026-11-26 13:10"))) == [("raised", "overstay", None)]


def test_an_event_older_than_the_bay_state_is_ignored() -> None:
    engine = RulesEngine(SITE)
    engine.apply(occ("2026-11-26 09:00", "occupied"))
    engine.apply(occ("2026-11-26 10:00", "vacant"))
    engine.advance(at("2026-11-26 10:00"))
    assert engine.apply(occ("2026-11-26 09:30", "occupied")) == []
    assert engine.bay_state("B1") == ("vacant", at("2026-11-26 10:00"))


def test_a_right_with_a_future_start_waits_for_its_instant() -> None:
    engine = RulesEngine(SITE)
    engine.apply(occ("2026-11-26 09:00", "occupied"))
    engine.advance(at("2026-11-26 09:10"))
    assert engine.apply(right("p1", "2026-11-26 09:30", "2026-11-26 10:00")) == []
    assert engine.next_deadline() == at("2026-11-26 09:30")
    assert [a.status for a in engine.open_alerts()] == ["open"]
    changes = engine.advance(at("2026-11-26 09:30"))
    assert views(changes) == [("cleared", "unpaid", "right_added")]


def test_acknowledge_then_the_vehicle_leaves() -> None:
    engine = RulesEngine(SITE)
    engine.apply(occ("2026-11-26 09:00", "occupied"))
    alert_id = engine.advance(at("2026-11-26 09:05"))[0].alert.alert_id
    ack = engine.acknowledge(alert_id, at("2026-11-26 09:06"))
    assert [(c.change, c.alert.status, c.at) for c in ack] == [
        ("acknowledged", "acknowledged", at("2026-11-26 09:06"))
    ]
    assert engine.acknowledge(alert_id, at("2026-11-26 09:07")) == []
    engine.apply(occ("2026-11-26 09:20", "vacant"))
    assert views(engine.advance(at("2026-11-26 09:20"))) == [("cleared", "unpaid", "vehicle_left")]


def test_resolve_closes_the_alert_for_good() -> None:
    engine = RulesEngine(SITE)
    engine.apply(occ("2026-11-26 09:00", "occupied"))
    alert_id = engine.advance(at("2026-11-26 09:05"))[0].alert.alert_id
    resolved = engine.resolve(alert_id, at("2026-11-26 09:07"))
    assert [(c.alert.status, c.alert.clear_reason, c.alert.cleared_at) for c in resolved] == [
        ("resolved", "resolved", at("2026-11-26 09:07"))
    ]
    assert engine.resolve(alert_id, at("2026-11-26 09:08")) == []
    engine.apply(occ("2026-11-26 09:20", "vacant"))
    assert engine.advance(at("2026-11-26 09:30")) == []
    assert engine.resolve("no-such-alert", at("2026-11-26 09:30")) == []


def test_cancelled_right_lapses_at_the_cancel_instant() -> None:
    engine = RulesEngine(SITE)
    engine.apply(right("p1", "2026-11-26 08:00", "2026-11-26 12:00"))
    engine.apply(occ("2026-11-26 09:00", "occupied"))
    engine.advance(at("2026-11-26 09:30"))
    assert engine.cancel_right("p1", at("2026-11-26 09:30")) == []
    assert engine.next_deadline() == at("2026-11-26 09:40")
    assert views(engine.advance(at("2026-11-26 09:40"))) == [("raised", "expired", None)]
    assert engine.cancel_right("unknown", at("2026-11-26 09:40")) == []


def test_zone_suspension_state_and_lookups() -> None:
    engine = RulesEngine(SITE)
    engine.apply(Suspension("s1", ("B1", "B2"), at("2026-11-26 10:00"), at("2026-11-26 11:00")))
    engine.advance(at("2026-11-26 10:00"))
    assert engine.suspended("B2", at("2026-11-26 10:30"))
    assert not engine.suspended("B2", at("2026-11-26 11:00"))
    assert not engine.suspended("C1", at("2026-11-26 10:30"))
    assert engine.bay_state("C1") == ("unknown", None)


def test_replacing_the_site_keeps_state_and_ends_periods_that_no_longer_hold() -> None:
    engine = RulesEngine(LIMITED)
    engine.apply(occ("2026-11-26 09:00", "occupied"))
    engine.advance(at("2026-11-26 13:30"))
    assert [a.kind for a in engine.open_alerts()] == ["overstay"]
    changes = engine.replace_site(make_site(kind="limited", bay_extra={"controlled_hours": "none"}))
    assert views(changes) == [("cleared", "overstay", "restriction_ended")]
    assert engine.bay_state("B1")[0] == "occupied"


def test_snapshot_is_json_and_restores_queued_records_and_open_alerts() -> None:
    engine = RulesEngine(SITE)
    engine.apply(occ("2026-11-26 09:00", "occupied"))
    alert_id = engine.advance(at("2026-11-26 09:06"))[0].alert.alert_id
    engine.apply(right("p1", "2026-11-26 09:30", "2026-11-26 10:00"))  # queued
    copy = RulesEngine.restore(SITE, json.loads(json.dumps(engine.snapshot())))
    assert copy.clock == engine.clock
    assert copy.alert(alert_id) == engine.alert(alert_id)
    assert copy.next_deadline() == at("2026-11-26 09:30")
    assert views(copy.advance(at("2026-11-26 10:10"))) == views(
        engine.advance(at("2026-11-26 10:10"))
    )


def test_validator_output_feeds_the_engine() -> None:
    validator = RecordValidator(SITE)
    record = validator.check_journal_line(
        json.dumps(
            {
                "type": "occupancy",
                "v": 1,
                "event_id": "gw1:x:1",
                "gateway_id": "gw1",
                "seq": 1,
                "bay_id": "B1",
                "sensor_id": "S1",
                "state": "occupied",
                "ts": "2026-11-26T09:00:00Z",
                "confirmed_ts": "2026-11-26T09:00:10Z",
                "reason": None,
            }
        )
    )
    assert record is not None
    engine = RulesEngine(SITE)
    engine.apply(record)
    assert views(engine.advance(at("2026-11-26 09:05"))) == [("raised", "unpaid", None)]


def test_cancelling_a_right_sent_ahead_of_its_start() -> None:
    engine = RulesEngine(SITE)
    engine.apply(occ("2026-11-26 09:00", "occupied"))
    engine.advance(at("2026-11-26 09:01"))
    engine.apply(right("p1", "2026-11-26 09:03", "2026-11-26 12:00"))
    engine.apply(right("p2", "2026-11-26 09:02", "2026-11-26 12:00"))
    engine.cancel_right("p2", at("2026-11-26 09:01"))  # before its start: as if never sent
    engine.cancel_right("p1", at("2026-11-26 10:00"))  # cut short: now ends at 10:00
    assert views(engine.advance(at("2026-11-26 10:10"))) == [("raised", "expired", None)]


def test_replaced_site_forgets_removed_bays_and_their_rights() -> None:
    engine = RulesEngine(SITE)
    engine.apply(right("p1", "2026-11-26 09:00", "2026-11-26 12:00", bay="B2"))
    engine.apply(Suspension("s1", ("B2",), at("2026-11-26 09:00"), at("2026-11-26 12:00")))
    engine.advance(at("2026-11-26 09:30"))
    engine.replace_site(make_site(max_stay=None, bays=1))
    assert engine.cancel_right("p1", at("2026-11-26 10:00")) == []
    engine.apply(Suspension("s1", ("B1",), at("2026-11-26 10:00"), at("2026-11-26 12:00")))
    engine.advance(at("2026-11-26 10:00"))
    assert engine.suspended("B1", at("2026-11-26 11:00"))


def live_and_replayed(
    arrivals: list[tuple[str, JournalRecord]], until: str
) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """The alerts of a collector that gets each record at its wall-clock time (its rules DELAY
    behind), and those of ``replay`` over the journal it wrote (the records in that order)."""
    engine = RulesEngine(SITE)
    latest: dict[str, Alert] = {}

    def keep(changes: list[AlertChange]) -> None:
        latest.update((c.alert.alert_id, c.alert) for c in changes)

    for wall, record in arrivals:
        keep(engine.advance(at(wall) - DELAY))
        keep(engine.apply(record))
    keep(engine.advance(at(until)))
    lines = [json.dumps(to_journal_dict(record)) for _wall, record in arrivals]
    accepted, errors = read_journal(lines, SITE)
    assert not errors
    replayed = replay_records(accepted, SITE, at(until))
    return (
        sorted(view(a.to_record()) for a in latest.values()),
        sorted(view(a.to_record()) for a in replayed),
    )


def suspension(suspension_id: str, start: str, end: str) -> Suspension:
    return Suspension(suspension_id, ("B1",), at(start), at(end))


@pytest.mark.parametrize(
    ("arrivals", "expected"),
    [
        pytest.param(
            [
                ("2026-11-26 08:30", right("p1", "2026-11-26 09:00", "2026-11-26 10:00")),
                ("2026-11-26 09:00:05", occ("2026-11-26 09:00", "occupied")),
                ("2026-11-26 09:50", right("p1", "2026-11-26 08:55", "2026-11-26 11:00")),
            ],
            [("expired", "B1", "26T11:10", "open", None, None)],
            id="a right replaced late by an extension that starts earlier",
        ),
        pytest.param(
            [
                ("2026-11-26 08:30", right("p1", "2026-11-26 09:00", "2026-11-26 11:00")),
                ("2026-11-26 09:00:05", occ("2026-11-26 09:00", "occupied")),
                ("2026-11-26 09:50", right("p1", "2026-11-26 08:55", "2026-11-26 10:15")),
            ],
            [("expired", "B1", "26T10:25", "open", None, None)],
            id="a right replaced late by a shortening that starts earlier",
        ),
        pytest.param(
            [
                ("2026-11-26 08:00", right("p1", "2026-11-26 10:00", "2026-11-26 11:00")),
                ("2026-11-26 09:00:05", occ("2026-11-26 09:00", "occupied")),
                ("2026-11-26 09:01", right("p1", "2026-11-26 09:00", "2026-11-26 10:30")),
            ],
            [("expired", "B1", "26T10:40", "open", None, None)],
            id="a right sent ahead replaced by a version that starts earlier",
        ),
        pytest.param(
            [
                ("2026-11-26 08:00", right("p1", "2026-11-26 08:00", "2026-11-26 18:30")),
                ("2026-11-26 09:00", suspension("s1", "2026-11-26 10:00", "2026-11-26 11:00")),
                ("2026-11-26 10:10:05", occ("2026-11-26 10:10", "occupied")),
                ("2026-11-26 10:30", suspension("s1", "2026-11-26 09:50", "2026-11-26 12:00")),
            ],
            [("suspended", "B1", "26T10:15", "cleared", "26T12:00", "suspension_ended")],
            id="a suspension replaced late by a version that starts earlier",
        ),
    ],
)
def test_a_version_replaced_by_one_that_starts_earlier_is_gone_live_and_in_replay(
    arrivals: list[tuple[str, JournalRecord]], expected: list[tuple[Any, ...]]
) -> None:
    live, replayed = live_and_replayed(arrivals, "2026-11-26 13:00")
    assert live == expected
    assert replayed == live


def test_a_snapshot_holding_a_version_and_its_replacement_restores_without_the_first() -> None:
    """Snapshots written before replaced versions left the queue may hold both."""
    engine = RulesEngine(SITE)
    engine.apply(occ("2026-11-26 09:00", "occupied"))
    engine.apply(right("p1", "2026-11-26 08:55", "2026-11-26 10:30"))
    snapshot = json.loads(json.dumps(engine.snapshot()))
    first = to_journal_dict(right("p1", "2026-11-26 09:00", "2026-11-26 10:00"))
    snapshot["queued"].insert(0, [at("2026-11-26 09:00"), 0, first])  # sent before the others
    copy = RulesEngine.restore(SITE, snapshot)
    assert views(copy.advance(at("2026-11-26 12:00"))) == [("raised", "expired", None)]
    assert [a.raised_at for a in copy.open_alerts()] == [at("2026-11-26 10:40")]
