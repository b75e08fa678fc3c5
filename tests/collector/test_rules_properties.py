"""Properties of the rules engine.

1. Saving and restoring the engine's state at any point changes nothing.
2. On single-bay journals whose instants are whole minutes, the engine agrees with a deliberately
   naive evaluator written here from the rules contract: it steps minute by minute, applies the
   minute's records, clears, then raises, asking every condition of the table afresh. A right
   replaces the version of its id that came before it in the journal, never one after it.
3. Live, with records reaching the engine up to alert_delay after their time (rights and
   suspensions, any time before; a new version of one, long after where it changes nothing
   already decided), the alerts equal replay's.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kerbside.collector.replay import read_journal, replay_records
from kerbside.collector.rules import Alert, AlertChange, RulesEngine
from kerbside.collector.rules.engine import replaced_versions
from kerbside.core.instants import Instant, format_instant
from kerbside.core.site import Bay, Site
from tests.collector.rules_builders import Journal, at, make_site

MIN = 60_000
HOURS_PRESETS: list[Any] = [
    None,  # Mon-Sat 08:30-18:30
    "any",
    [
        {
            "days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"],
            "start": "09:00",
            "end": "10:00",
        },
        {
            "days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"],
            "start": "10:00",
            "end": "11:30",
        },
        {
            "days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"],
            "start": "13:00",
            "end": "14:00",
        },
    ],
    [
        {"days": ["fri", "sat", "sun"], "start": "22:00", "end": "02:00"},
        {"days": ["sat", "sun"], "start": "01:00", "end": "01:30"},
        {"days": ["sun"], "start": "03:00", "end": "24:00"},
    ],
]
# Days around both of Europe/London's daylight-saving Sundays, and an ordinary Thursday.
BASES = [at("2026-11-26 00:00"), at("2027-03-27 00:00"), at("2026-10-24 00:00")]
SPAN_MIN = 2 * 24 * 60


@st.composite
def single_bay_case(draw: st.DrawFn) -> tuple[Site, Journal, Instant]:
    hours = draw(st.sampled_from(HOURS_PRESETS))
    kind = draw(st.sampled_from(["paid", "resident", "limited", "free"]))
    holiday = draw(st.sampled_from([None, "2026-11-26", "2027-03-28", "2026-10-25"]))
    site = make_site(
        hours,
        kind=kind,
        max_stay=draw(st.sampled_from([None, 20, 45, 90])),
        defaults={
            "grace_minutes": draw(st.sampled_from([0, 5, 10])),
            "observation_minutes": draw(st.sampled_from([0, 3, 5])),
        },
        holidays=[holiday] if holiday else [],
        zone_extra={"except_holidays": holiday is not None},
        bays=1,
    )
    base = draw(st.sampled_from(BASES))
    minute = st.integers(0, SPAN_MIN).map(lambda m: base + m * MIN)
    journal = Journal()
    suspension_ids = iter(range(1000))
    offset = st.integers(-60, 120).map(lambda m: m * MIN)
    rights: list[tuple[str, Instant]] = []  # (id, start) of each right written

    def right(right_id: str, start: Instant, end: Instant, zone: bool) -> None:
        journal.right(right_id, start, end, bay=None if zone else "B1", zone="Z1" if zone else None)
        rights.append((right_id, start))

    for _ in range(draw(st.integers(1, 8))):
        choice = draw(st.integers(0, 10))
        if choice < 5:  # a stay, with rights around its arrival
            arrival = draw(minute)
            journal.occ(arrival, "occupied")
            leave = draw(st.sampled_from(["vacant", "vacant", "unknown", None]))
            if leave is not None:
                journal.occ(arrival + draw(st.integers(1, 600)) * MIN, leave)
            for _ in range(draw(st.integers(0, 3))):
                start = arrival + draw(offset)
                end = start + draw(st.integers(1, 180)) * MIN
                right(draw(st.sampled_from(["p1", "p2", "p3"])), start, end, draw(st.booleans()))
        elif choice < 7:
            state = draw(st.sampled_from(["occupied", "vacant", "unknown"]))
            journal.occ(draw(minute), state)
        elif choice < 9:
            start = draw(minute)
            end = start + draw(st.integers(1, 240)) * MIN
            right(draw(st.sampled_from(["p1", "p2", "p3"])), start, end, False)
        elif choice == 9 and rights:
            # a new version of a right written before, its start moved either way
            right_id, old_start = draw(st.sampled_from(rights))
            start = old_start + draw(st.integers(-90, 90)) * MIN
            end = start + draw(st.integers(1, 180)) * MIN
            right(right_id, start, end, draw(st.booleans()))
        else:
            start = draw(minute)
            end = start + draw(st.integers(1, 180)) * MIN
            journal.suspend(f"s{next(suspension_ids)}", start, end)
    until = base + draw(st.integers(SPAN_MIN // 3, SPAN_MIN + 600)) * MIN
    return site, journal, until


def engine_view(site: Site, journal: Journal, until: Instant) -> list[tuple[Any, ...]]:
    accepted, errors = read_journal(journal.lines, site)
    assert not errors
    return sorted(_key(a) for a in replay_records(accepted, site, until))


def _key(a: Alert) -> tuple[Any, ...]:
    return (a.raised_at, a.kind, a.session_start, a.status, a.cleared_at, a.clear_reason)


class NaiveOracle:
    """The rules contract read aloud, one minute at a time, for bay B1."""

    def __init__(self, site: Site) -> None:
        self.site = site
        self.bay: Bay = site.bays["B1"]
        self.tz = site.tz
        self.holidays = site.holidays if self.bay.except_holidays else frozenset()

    def controlled(self, t: Instant) -> bool:
        local = datetime.fromtimestamp(t / 1000, UTC).astimezone(self.tz)
        day = local.date()
        if day in self.holidays:
            return False
        hours = self.bay.controlled_hours
        if isinstance(hours, str):
            return hours == "any"
        minute = local.hour * 60 + local.minute
        yesterday = (day - timedelta(days=1)).weekday()
        for rng in hours:
            if rng.end_min > rng.start_min:
                if day.weekday() in rng.days and rng.start_min <= minute < rng.end_min:
                    return True
            else:
                if day.weekday() in rng.days and minute >= rng.start_min:
                    return True
                if yesterday in rng.days and minute < rng.end_min:
                    return True
        return False

    def run(self, lines: list[str], until: Instant) -> list[tuple[Any, ...]]:
        records = sorted(
            ((self._time(json.loads(line)), i, json.loads(line)) for i, line in enumerate(lines)),
            key=lambda r: (r[0], r[1]),
        )
        bay = self.bay
        grace, obs = bay.grace_minutes * MIN, bay.observation_minutes * MIN
        rights: dict[str, tuple[Instant, Instant]] = {}
        holder: dict[str, int] = {}  # right id -> position in the journal of its version held
        suspensions: list[tuple[Instant, Instant]] = []
        alerts: list[dict[str, Any]] = []
        session: list[dict[str, Any]] = []
        arrival: Instant | None = None
        s = run_key = 0
        if not records:
            return []
        m = records[0][0]
        i = 0
        while m <= until:
            # 1. the minute's records take effect first
            while i < len(records) and records[i][0] == m:
                _time, line, rec = records[i]
                i += 1
                if rec["type"] == "occupancy":
                    if rec["state"] == "occupied":
                        if arrival is None:
                            arrival, session = m, []
                    elif arrival is not None:
                        # the vehicle leaving in this minute beats the sensor going unknown
                        leaves = rec["state"] == "vacant" or any(
                            r[0] == m and r[2]["type"] == "occupancy" and r[2]["state"] == "vacant"
                            for r in records[i:]
                        )
                        reason = "vehicle_left" if leaves else "sensor_unknown"
                        for a in session:
                            if a["status"] == "open":
                                a.update(status="cleared", cleared_at=m, clear_reason=reason)
                        arrival = None
                elif rec["type"] == "right":
                    # a version replaces the one before it in the journal, never one after it
                    if holder.get(rec["right_id"], -1) < line:
                        rights[rec["right_id"]] = (at(rec["start"]), at(rec["end"]))
                        holder[rec["right_id"]] = line
                else:
                    suspensions.append((at(rec["start"]), at(rec["end"])))
            if arrival is not None:
                ctl = self.controlled(m)
                if arrival == m or not self.controlled(m - MIN):
                    s = m
                suspended = any(a <= m < b for a, b in suspensions)
                if arrival == m or not any(a <= m - MIN < b for a, b in suspensions):
                    run_key = m

                def covered(x: Instant) -> bool:
                    return any(a <= x < b for a, b in rights.values())

                # 2. clears, in the order of the list
                for a in session:
                    if a["status"] != "open":
                        continue
                    if a["kind"] != "suspended" and not ctl:
                        a.update(status="cleared", cleared_at=m, clear_reason="restriction_ended")
                    elif a["kind"] == "suspended" and not suspended:
                        a.update(status="cleared", cleared_at=m, clear_reason="suspension_ended")
                    elif a["kind"] in ("unpaid", "expired") and any(
                        start == m for start, _ in rights.values()
                    ):
                        a.update(status="cleared", cleared_at=m, clear_reason="right_added")

                # 3. raises: every row of the table, asked afresh at this minute
                due: list[tuple[str, Instant]] = []
                max_stay = bay.max_stay_minutes
                if ctl and max_stay is not None and m == s + max_stay * MIN + grace:
                    due.append(("overstay", s))
                if ctl and bay.needs_right:
                    if m == s + obs and not any(a <= m and b > s for a, b in rights.values()):
                        due.append(("unpaid", s))
                    if not covered(m):
                        due.extend(
                            ("expired", e)
                            for _start, e in rights.values()
                            if e + grace == m and e > s and not covered(e)
                        )
                if suspended and m == run_key + obs:
                    due.append(("suspended", run_key))
                for kind, key in due:
                    if any(a["kind"] == kind and a["key"] == key for a in session):
                        continue  # one per (session, kind, P / e / run)
                    alert = {
                        "kind": kind,
                        "key": key,
                        "raised_at": m,
                        "session_start": arrival,
                        "status": "open",
                        "cleared_at": None,
                        "clear_reason": None,
                    }
                    session.append(alert)
                    alerts.append(alert)
            m += MIN
        return sorted(
            (
                a["raised_at"],
                a["kind"],
                a["session_start"],
                a["status"],
                a["cleared_at"],
                a["clear_reason"],
            )
            for a in alerts
        )

    @staticmethod
    def _time(rec: dict[str, Any]) -> Instant:
        return at(rec["ts"] if rec["type"] == "occupancy" else rec["start"])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(single_bay_case())
def test_engine_agrees_with_a_naive_minute_by_minute_oracle(
    case: tuple[Site, Journal, Instant],
) -> None:
    site, journal, until = case
    assert engine_view(site, journal, until) == NaiveOracle(site).run(journal.lines, until)


@st.composite
def multi_bay_case(draw: st.DrawFn) -> tuple[Site, Journal, Instant, set[tuple[int, int]]]:
    site = make_site(
        draw(st.sampled_from(HOURS_PRESETS)),
        kind=draw(st.sampled_from(["paid", "limited"])),
        max_stay=draw(st.sampled_from([None, 30, 90])),
        bays=3,
    )
    base = draw(st.sampled_from(BASES))
    instant = st.integers(0, SPAN_MIN * MIN).map(lambda ms: base + ms)
    bay = st.sampled_from(["B1", "B2", "B3", "C1"])
    journal = Journal()
    count = draw(st.integers(0, 30))
    for _ in range(count):
        choice = draw(st.integers(0, 9))
        if choice < 6:
            state = draw(st.sampled_from(["occupied", "occupied", "vacant", "unknown"]))
            journal.occ(draw(instant), state, bay=draw(bay))
        elif choice < 9:
            start = draw(instant)
            end = start + draw(st.integers(1, 4 * 3_600_000))
            if draw(st.booleans()):
                journal.right(draw(st.sampled_from(["p1", "p2"])), start, end, bay=None, zone="Z1")
            else:
                journal.right(draw(st.sampled_from(["p1", "p3", "p4"])), start, end, bay=draw(bay))
        else:
            start = draw(instant)
            end = start + draw(st.integers(1, 3 * 3_600_000))
            ids = draw(st.sampled_from(["s1", "s2", "s3"]))
            journal.suspend(ids, start, end, bays=tuple(draw(st.sets(bay, min_size=1))))
    until = base + draw(st.integers(0, (SPAN_MIN + 600) * MIN))
    cuts = draw(st.sets(st.tuples(st.integers(0, max(count, 1)), st.integers(0, 1)), max_size=4))
    return site, journal, until, cuts


def _replay_with_cuts(
    site: Site, journal: Journal, until: Instant, cuts: set[tuple[int, int]]
) -> list[dict[str, Any]]:
    accepted, _errors = read_journal(journal.lines, site)
    replaced = replaced_versions(accepted)
    engine = RulesEngine(site)
    latest: dict[str, Alert] = {}

    def keep(changes: list[AlertChange]) -> None:
        for change in changes:
            latest[change.alert.alert_id] = change.alert

    def cut() -> RulesEngine:
        return RulesEngine.restore(site, json.loads(json.dumps(engine.snapshot())))

    for i, (time, n, record) in enumerate(accepted):
        if time > until:
            break
        if n in replaced:
            continue
        if time > engine.clock + 1:
            keep(engine.advance(time - 1))
        if (i, 0) in cuts:
            engine = cut()
        keep(engine.apply(record))
        if (i, 1) in cuts:
            engine = cut()
    keep(engine.advance(until))
    alerts = sorted(latest.values(), key=lambda a: (a.raised_at, a.bay_id, a.kind))
    return [a.to_record() for a in alerts]


@settings(max_examples=150, deadline=None)
@given(multi_bay_case())
def test_snapshot_and_restore_anywhere_changes_nothing(
    case: tuple[Site, Journal, Instant, set[tuple[int, int]]],
) -> None:
    site, journal, until, cuts = case
    whole = _replay_with_cuts(site, journal, until, set())
    accepted, _ = read_journal(journal.lines, site)
    assert whole == [a.to_record() for a in replay_records(accepted, site, until)]
    assert _replay_with_cuts(site, journal, until, cuts) == whole


DELAY = 15_000


@st.composite
def live_case(draw: st.DrawFn) -> tuple[Site, list[tuple[Instant, str]], Instant]:
    """A journal in the order records reach the collector: each at most DELAY - 1 ms after
    its own time (rights and suspensions may also be sent ahead of their start).

    And maybe a new version of a right or suspension sent after the one it copies took effect,
    long after its own start, which is earlier: the collector cannot go back on what it decided
    before the version came, so it is sent only while the bays of its id have been empty since
    its start; a vehicle may arrive in one of them soon after."""
    site, journal, until = draw(multi_bay_case())[:3]
    arrivals = []
    versions: list[tuple[dict[str, Any], Instant]] = []  # (right or suspension, when sent)
    for line in journal.lines:
        record = json.loads(line)
        time = _record_time(record)
        early = record["type"] != "occupancy" and draw(st.booleans())
        lag = -draw(st.integers(0, 3_600_000)) if early else draw(st.integers(0, DELAY - 1))
        arrivals.append((time + lag, line))
        if record["type"] != "occupancy":
            versions.append((record, time + lag))
    late = draw(st.sampled_from(["none", "copy", "own"]))
    if late == "own" and journal.lines:
        # a version of an id of its own, on a bay, sent ahead of its start, for the late one
        # to copy
        start = _record_time(json.loads(draw(st.sampled_from(journal.lines))))
        start += draw(st.integers(-180, 180)) * MIN
        end = start + draw(st.integers(1, 4 * 60)) * MIN
        bay = draw(st.sampled_from(["B1", "B2", "B3", "C1"]))
        if draw(st.booleans()):
            journal.right("q1", start, end, bay=bay)
        else:
            journal.suspend("q1", start, end, bays=(bay,))
        sent = start - draw(st.integers(0, 3_600_000))
        arrivals.append((sent, journal.lines[-1]))
        versions.append((json.loads(journal.lines[-1]), sent))
    if late != "none" and versions:
        old, sent = versions[-1] if late == "own" else draw(st.sampled_from(versions))
        old_start = at(old["start"])
        bays = sorted({b for r, _sent in versions if _same_id(r, old) for b in _bays(site, r)})
        stays = _stays(journal.lines)
        spans = [span for bay in bays for span in stays.get(bay, ())]
        if not any(a <= old_start < b for a, b in spans):
            # the empty stretch around the old start, where the new version's start and the
            # rules' clock when it comes must lie
            lo = max([b for _a, b in spans if b <= old_start], default=old_start - 120 * MIN)
            hi = min([a for a, _b in spans if a > old_start], default=old_start + 360 * MIN)
            start = max(int(lo), old_start - draw(st.integers(1, 120)) * MIN)
            first_clock = max(old_start, sent - DELAY)
            if first_clock < hi:
                clock = draw(st.integers(first_clock, int(min(hi, first_clock + 360 * MIN)) - 1))
                end = clock + draw(st.integers(1, 180)) * MIN  # sent while it runs
                new = {**old, "start": format_instant(start), "end": format_instant(end)}
                arrivals.append((clock + DELAY, json.dumps(new)))
                until = max(until, clock + draw(st.integers(0, 360)) * MIN)
                if draw(st.integers(0, 3)):
                    arrive = clock + draw(st.integers(1, 60)) * MIN
                    journal.occ(arrive, "occupied", bay=draw(st.sampled_from(bays)))
                    arrivals.append((arrive + draw(st.integers(0, DELAY - 1)), journal.lines[-1]))
    arrivals.sort(key=lambda a: a[0])
    # Events of one bay reach the collector in the order they happened, as gateways send them.
    return site, arrivals, until


def _record_time(record: dict[str, Any]) -> Instant:
    return at(record["ts"] if record["type"] == "occupancy" else record["start"])


def _stays(lines: list[str]) -> dict[str, list[tuple[Instant, float]]]:
    """Each bay's stays, [arrival, departure), as the rules see them."""
    events = sorted(
        (_record_time(r), i, r)
        for i, r in enumerate(json.loads(line) for line in lines)
        if r["type"] == "occupancy"
    )
    stays: dict[str, list[tuple[Instant, float]]] = {}
    since: dict[str, Instant] = {}
    for time, _i, event in events:
        bay = event["bay_id"]
        if event["state"] == "occupied":
            since.setdefault(bay, time)
        elif bay in since:
            stays.setdefault(bay, []).append((since.pop(bay), time))
    for bay, arrival in since.items():
        stays.setdefault(bay, []).append((arrival, float("inf")))
    return stays


def _same_id(record: dict[str, Any], other: dict[str, Any]) -> bool:
    key = "right_id" if record["type"] == "right" else "suspension_id"
    return bool(record["type"] == other["type"] and record[key] == other[key])


def _bays(site: Site, record: dict[str, Any]) -> list[str]:
    if record["type"] == "suspension":
        return list(record["bay_ids"])
    if record.get("zone_id") is not None:
        return [bay.id for bay in site.bays_of_zone(record["zone_id"])]
    return [record["bay_id"]]


@settings(max_examples=150, deadline=None)
@given(live_case())
def test_live_with_alert_delay_equals_replay(
    case: tuple[Site, list[tuple[Instant, str]], Instant],
) -> None:
    site, arrivals, until = case
    lines = [line for _arrival, line in arrivals]
    accepted, _ = read_journal(lines, site)
    by_line = {number: record for _time, number, record in accepted}
    engine = RulesEngine(site)
    latest: dict[str, Alert] = {}
    for number, (arrival, _line) in enumerate(arrivals, 1):
        if arrival - DELAY > until:
            break
        for change in engine.advance(arrival - DELAY):
            latest[change.alert.alert_id] = change.alert
        if number in by_line:
            for change in engine.apply(by_line[number]):
                latest[change.alert.alert_id] = change.alert
    for change in engine.advance(until):
        latest[change.alert.alert_id] = change.alert
    live = sorted(
        (a.to_record() for a in latest.values() if a.raised_at <= until),
        key=lambda r: (r["raised_at"], r["bay_id"], r["kind"], r["alert_id"]),
    )
    replayed = sorted(
        (a.to_record() for a in replay_records(accepted, site, until)),
        key=lambda r: (r["raised_at"], r["bay_id"], r["kind"], r["alert_id"]),
    )
    assert live == replayed
