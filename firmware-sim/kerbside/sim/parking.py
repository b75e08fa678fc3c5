"""Drivers on a site's bays: who parks where and when, who pays, forgets, stays past their
payment or past the maximum stay, and so which sessions are true contraventions (docs/rules.md).

Pure: a site (the rules' own loader reads the file: one source of truth) and a seed in, a plan
out. Visits are placed so that the truth is unambiguous: a visit lies wholly inside one
controlled period or wholly outside control, and every departure is at least two minutes away
from any instant an alert falls due, far more than a detector's boundary error.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from kerbside.core.instants import Instant, format_instant
from kerbside.core.site import Bay, Site

Behaviour = Literal["pays", "permit", "forgets", "short_payment", "overstays", "legal"]
ContraventionKind = Literal["unpaid", "expired", "overstay"]

_MIN = 60_000
MARGIN_MS = 2 * _MIN  # between a departure and any due instant or period edge
_DEFAULT_LIMIT_MS = 90 * _MIN  # longest ordinary stay where no max stay applies


@dataclass(frozen=True, slots=True)
class PlannedRight:
    right_id: str
    kind: Literal["payment", "permit"]
    bay_id: str
    start: Instant
    end: Instant

    def to_journal(self) -> dict[str, Any]:
        return {
            "type": "right",
            "right_id": self.right_id,
            "kind": self.kind,
            "bay_id": self.bay_id,
            "start": format_instant(self.start),
            "end": format_instant(self.end),
        }


@dataclass(frozen=True, slots=True)
class Contravention:
    bay_id: str
    kind: ContraventionKind
    session_start: Instant  # the arrival
    due_at: Instant  # when the rules raise it


@dataclass(frozen=True, slots=True)
class Visit:
    bay_id: str
    sensor_id: str | None
    gateway_id: str | None
    arrival: Instant
    departure: Instant
    behaviour: Behaviour
    controlled: bool
    rights: tuple[PlannedRight, ...]
    contraventions: tuple[Contravention, ...]


@dataclass(frozen=True, slots=True)
class Mix:
    """Shares of drivers, among those whose bay and time allow the behaviour."""

    forgets: float = 0.2
    short_payment: float = 0.15
    overstays: float = 0.15
    first_arrival_ms: tuple[int, int] = (2 * 60_000, 6 * 60_000)  # after the start, per bay
    gap_ms: tuple[int, int] = (2 * 60_000, 8 * 60_000)  # between visits to a bay


# For a demo: cars arrive within the first minute, come back soon after each other, and more
# of them break the rules, so alerts show up within a couple of minutes.
QUICK = Mix(
    forgets=0.3,
    short_payment=0.2,
    overstays=0.3,
    first_arrival_ms=(10_000, 40_000),
    gap_ms=(60_000, 120_000),
)


@dataclass(frozen=True)
class ParkingPlan:
    start: Instant
    end: Instant
    visits: list[Visit]

    @property
    def rights(self) -> list[PlannedRight]:
        return sorted(
            (r for v in self.visits for r in v.rights), key=lambda r: (r.start, r.right_id)
        )

    @property
    def contraventions(self) -> list[Contravention]:
        return sorted(
            (c for v in self.visits for c in v.contraventions),
            key=lambda c: (c.due_at, c.bay_id, c.kind),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "v": 1,
            "start": format_instant(self.start),
            "end": format_instant(self.end),
            "visits": [
                {
                    "bay_id": v.bay_id,
                    "sensor_id": v.sensor_id,
                    "arrival": format_instant(v.arrival),
                    "departure": format_instant(v.departure),
                    "behaviour": v.behaviour,
                    "controlled": v.controlled,
                    "rights": [r.right_id for r in v.rights],
                }
                for v in self.visits
            ],
            "rights": [r.to_journal() for r in self.rights],
            "contraventions": [
                {
                    "bay_id": c.bay_id,
                    "kind": c.kind,
                    "session_start": format_instant(c.session_start),
                    "due_at": format_instant(c.due_at),
                }
                for c in self.contraventions
            ],
        }

    def journal(self, confirm_ms: int = 10_000) -> list[dict[str, Any]]:
        """An ideal journal (docs/protocols.md): occupancy events exactly at the true arrivals and
        departures (as a perfect detector would send them) and the rights, in time order."""
        items: list[tuple[Instant, int, dict[str, Any]]] = []
        for v in self.visits:
            for state, ts in (("occupied", v.arrival), ("vacant", v.departure)):
                items.append((ts, 0, {"bay": v, "state": state}))
        items.extend((r.start, 1, r.to_journal()) for r in self.rights)
        items.sort(key=lambda x: (x[0], x[1]))
        seqs: dict[str, int] = {}
        out: list[dict[str, Any]] = []
        for ts, _, item in items:
            if "bay" not in item:
                out.append(item)
                continue
            visit: Visit = item["bay"]
            gateway = visit.gateway_id or "sim-gw-01"
            seqs[gateway] = seqs.get(gateway, 0) + 1
            seq = seqs[gateway]
            out.append(
                {
                    "type": "occupancy",
                    "v": 1,
                    "event_id": f"{gateway}:sim:{seq}",
                    "gateway_id": gateway,
                    "seq": seq,
                    "bay_id": visit.bay_id,
                    "sensor_id": visit.sensor_id or "S-000000",
                    "state": item["state"],
                    "ts": format_instant(ts),
                    "confirmed_ts": format_instant(ts + confirm_ms),
                    "reason": None,
                }
            )
        return out


def controlled(site: Site, bay: Bay, t: Instant) -> bool:
    """Whether ``t`` is controlled for ``bay``, on the site's wall clock (minute resolution)."""
    local = datetime.fromtimestamp(t / 1000, site.tz)
    if bay.except_holidays and local.date() in site.holidays:
        return False
    hours = bay.controlled_hours
    if hours == "any":
        return True
    if hours == "none":
        return False
    minute = local.hour * 60 + local.minute
    day = local.weekday()
    for r in hours:
        if r.end_min > r.start_min:
            if day in r.days and r.start_min <= minute < r.end_min:
                return True
        elif (day in r.days and minute >= r.start_min) or (
            (day - 1) % 7 in r.days and minute < r.end_min
        ):
            return True
    return False


def _run_end(site: Site, bay: Bay, t: Instant, state: bool, limit: Instant) -> Instant:
    """The first minute boundary after ``t`` (up to ``limit``) where control differs from
    ``state``."""
    probe = t - t % _MIN + _MIN
    while probe < limit and controlled(site, bay, probe) == state:
        probe += _MIN
    return min(probe, limit)


def plan_parking(
    site: Site,
    *,
    seed: int,
    start: Instant,
    hours: float,
    bay_ids: Sequence[str] | None = None,
    mix: Mix | None = None,
) -> ParkingPlan:
    """Visits to ``bay_ids`` (default: every bay of the site) over [start, start + hours)."""
    mix = mix or Mix()
    end = start + round(hours * 3_600_000)
    ids = list(bay_ids) if bay_ids is not None else list(site.bays)
    visits: list[Visit] = []
    for index, bay_id in enumerate(ids):
        bay = site.bays[bay_id]
        rng = random.Random(f"{seed}:parking:{bay_id}")
        t = start + rng.randint(*mix.first_arrival_ms)
        n = 0
        while t < end - 4 * _MIN:
            state = controlled(site, bay, t)
            run_end = _run_end(site, bay, t, state, end)
            visit = _visit(
                bay,
                rng,
                mix=mix,
                arrival=t,
                run_end=run_end,
                is_controlled=state,
                tag=f"{index}-{n}",
            )
            if visit is None:
                t = run_end + rng.randint(1 * _MIN, 3 * _MIN)
                continue
            visits.append(visit)
            n += 1
            # Rights cover the bay, not the car: the next driver comes after the last one's
            # payment has run out, so it cannot cover (or expire on) someone else's stay.
            paid_until = max((r.end for r in visit.rights), default=0)
            t = max(visit.departure + rng.randint(*mix.gap_ms), paid_until + _MIN)
    visits.sort(key=lambda v: (v.arrival, v.bay_id))
    return ParkingPlan(start, end, visits)


def _visit(
    bay: Bay,
    rng: random.Random,
    *,
    mix: Mix,
    arrival: Instant,
    run_end: Instant,
    is_controlled: bool,
    tag: str,
) -> Visit | None:
    """One visit arriving at ``arrival`` that leaves at least MARGIN_MS before ``run_end``, or
    None if nothing fits."""
    room = run_end - MARGIN_MS - arrival
    obs = bay.observation_minutes * _MIN
    grace = bay.grace_minutes * _MIN
    max_stay = None if bay.max_stay_minutes is None else bay.max_stay_minutes * _MIN
    shortest = 2 * _MIN
    # Ordinary stays end well before a max stay would be overstayed.
    limit = min(room, (max_stay + grace - MARGIN_MS) if max_stay is not None else _DEFAULT_LIMIT_MS)

    def make(
        departure: Instant,
        behaviour: Behaviour,
        rights: tuple[PlannedRight, ...] = (),
        contraventions: tuple[Contravention, ...] = (),
    ) -> Visit:
        return Visit(
            bay.id,
            bay.sensor,
            bay.gateway,
            arrival,
            departure,
            behaviour,
            is_controlled,
            rights,
            contraventions,
        )

    def right(kind: Literal["payment", "permit"], start: Instant, end: Instant) -> PlannedRight:
        return PlannedRight(f"sim-{bay.id}-{tag}", kind, bay.id, start, end)

    if room < shortest:
        return None
    if not is_controlled:
        return make(arrival + rng.randint(shortest, max(shortest, min(room, limit))), "legal")
    pick = rng.random()
    needs_right = bay.needs_right
    # A driver who pays does so soon after arriving, well inside the observation time.
    pay_at = arrival + rng.randint(10_000, max(10_000, min(obs // 2, 2 * _MIN)))
    kind: Literal["payment", "permit"] = "permit" if bay.kind == "resident" else "payment"

    if pick < mix.overstays and max_stay is not None:
        due = arrival + max_stay + grace
        departure = due + rng.randint(MARGIN_MS, MARGIN_MS + 10 * _MIN)
        if departure + MARGIN_MS <= run_end:
            rights = (
                (right(kind, pay_at, departure + rng.randint(0, 5 * _MIN)),) if needs_right else ()
            )
            return make(
                departure, "overstays", rights, (Contravention(bay.id, "overstay", arrival, due),)
            )
    pick -= mix.overstays
    if needs_right and pick < mix.forgets:
        due = arrival + obs
        lo = due + MARGIN_MS
        if lo <= limit + arrival:
            departure = rng.randint(lo, arrival + limit)
            return make(departure, "forgets", (), (Contravention(bay.id, "unpaid", arrival, due),))
    pick -= mix.forgets
    if needs_right and pick < mix.short_payment:
        paid_for = rng.randint(max(obs, 2 * _MIN), max(obs, 2 * _MIN) + 20 * _MIN)
        e = pay_at + paid_for
        due = e + grace
        lo = due + MARGIN_MS
        if lo <= arrival + limit:
            departure = rng.randint(lo, min(arrival + limit, lo + 15 * _MIN))
            return make(
                departure,
                "short_payment",
                (right(kind, pay_at, e),),
                (Contravention(bay.id, "expired", arrival, due),),
            )
    # Law-abiding: stays a while, pays (if needed) for longer than the stay.
    lo = max(shortest, obs + MARGIN_MS) if needs_right else shortest
    if lo > limit:
        return None
    departure = arrival + rng.randint(lo, max(lo, min(limit, lo + 40 * _MIN)))
    if needs_right:
        # Paid past the departure, or expiring so close to it that grace covers the rest.
        end = departure + rng.randint(max(0, MARGIN_MS - grace), MARGIN_MS + 5 * _MIN)
        return make(
            departure, "permit" if kind == "permit" else "pays", (right(kind, pay_at, end),)
        )
    return make(departure, "legal")


def site_gateways(site: Site) -> list[str]:
    """Gateways that have bays with sensors, in file order."""
    seen: dict[str, None] = {}
    for bay in site.bays.values():
        if bay.sensor and bay.gateway:
            seen.setdefault(bay.gateway, None)
    return list(seen)


def gateway_bays(site: Site, gateway: str) -> list[Bay]:
    """The sensor-equipped bays of one gateway (file order: neighbours on the street)."""
    bays = [b for b in site.bays.values() if b.sensor and b.gateway == gateway]
    if not bays:
        known = ", ".join(site_gateways(site)) or "none"
        raise ValueError(
            f"site has no bays with sensors on gateway {gateway!r} (gateways: {known})"
        )
    return bays


def visits_by_bay(plan: ParkingPlan) -> dict[str, list[tuple[Instant, Instant]]]:
    out: dict[str, list[tuple[Instant, Instant]]] = {}
    for v in plan.visits:
        out.setdefault(v.bay_id, []).append((v.arrival, v.departure))
    return out
