"""Builders for the rules tests: small sites and journals, and a compact view of alerts."""

from __future__ import annotations

import json
from typing import Any

from kerbside.collector.replay import read_journal, replay_records
from kerbside.core.instants import Instant, format_instant, parse_instant
from kerbside.core.site import Site, parse_site

WORKDAYS = [{"days": ["mon", "tue", "wed", "thu", "fri", "sat"], "start": "08:30", "end": "18:30"}]


def make_site(
    hours: Any = None,
    *,
    kind: str = "paid",
    max_stay: int | None = 240,
    bay_extra: dict[str, Any] | None = None,
    zone_extra: dict[str, Any] | None = None,
    defaults: dict[str, Any] | None = None,
    holidays: list[str] | None = None,
    timezone: str = "Europe/London",
    bays: int = 2,
) -> Site:
    """Zone Z1 with bays B1..Bn (on gateway gw1, sensors S1..Sn) and zone Z2 with bay C1."""
    zone: dict[str, Any] = {
        "id": "Z1",
        "name": "Zone one",
        "controlled_hours": WORKDAYS if hours is None else hours,
    }
    zone.update(zone_extra or {})
    bay_list = []
    for i in range(1, bays + 1):
        bay: dict[str, Any] = {
            "id": f"B{i}",
            "zone": "Z1",
            "street": "Parkway",
            "kind": kind,
            "location": {"lat": 51.5, "lon": -0.14},
            "sensor": f"S{i}",
            "gateway": "gw1",
        }
        if max_stay is not None:
            bay["max_stay_minutes"] = max_stay
        bay.update(bay_extra or {})
        bay_list.append(bay)
    bay_list.append({"id": "C1", "zone": "Z2", "kind": "paid", "sensor": "T1", "gateway": "gw2"})
    data: dict[str, Any] = {
        "site": "test",
        "timezone": timezone,
        "zones": [zone, {"id": "Z2", "controlled_hours": "any"}],
        "bays": bay_list,
    }
    if defaults is not None:
        data["defaults"] = defaults
    if holidays is not None:
        data["holidays"] = holidays
    return parse_site(data)


def at(text: str) -> Instant:
    """``"2026-11-26 09:00"`` (UTC, seconds and milliseconds optional) as an instant."""
    text = text.replace(" ", "T")
    if text.count(":") == 1:
        text += ":00"
    return parse_instant(text if text.endswith("Z") else text + "Z")


class Journal:
    """Journal lines built one record at a time."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self._seq = 0

    def occ(self, when: str | Instant, state: str, bay: str = "B1", **extra: Any) -> Journal:
        self._seq += 1
        ts = when if isinstance(when, int) else at(when)
        gateway = "gw2" if bay.startswith("C") else "gw1"
        record = {
            "type": "occupancy",
            "v": 1,
            "event_id": f"{gateway}:ep:{self._seq}",
            "gateway_id": gateway,
            "seq": self._seq,
            "bay_id": bay,
            "sensor_id": "S" + bay[1:],
            "state": state,
            "ts": format_instant(ts),
            "confirmed_ts": format_instant(ts + 10_000),
            "reason": "sensor_silent" if state == "unknown" else None,
        }
        record.update(extra)
        self.lines.append(json.dumps(record))
        return self

    def park(
        self, arrive: str | Instant, leave: str | Instant | None = None, bay: str = "B1"
    ) -> Journal:
        self.occ(arrive, "occupied", bay)
        if leave is not None:
            self.occ(leave, "vacant", bay)
        return self

    def right(
        self,
        right_id: str,
        start: str | Instant,
        end: str | Instant,
        bay: str | None = "B1",
        zone: str | None = None,
    ) -> Journal:
        record: dict[str, Any] = {"type": "right", "right_id": right_id, "kind": "payment"}
        if zone is not None:
            record["zone_id"] = zone
        else:
            record["bay_id"] = bay
        record["start"] = format_instant(start if isinstance(start, int) else at(start))
        record["end"] = format_instant(end if isinstance(end, int) else at(end))
        self.lines.append(json.dumps(record))
        return self

    def suspend(
        self,
        suspension_id: str,
        start: str | Instant,
        end: str | Instant,
        bays: tuple[str, ...] = ("B1",),
    ) -> Journal:
        self.lines.append(
            json.dumps(
                {
                    "type": "suspension",
                    "suspension_id": suspension_id,
                    "bay_ids": list(bays),
                    "start": format_instant(start if isinstance(start, int) else at(start)),
                    "end": format_instant(end if isinstance(end, int) else at(end)),
                    "reason": "streetworks",
                }
            )
        )
        return self

    def raw(self, line: str) -> Journal:
        self.lines.append(line)
        return self


def replay(
    site: Site, journal: Journal, until: str | Instant | None = None
) -> list[tuple[Any, ...]]:
    """Replay and view each alert as (kind, bay, raised_at, status, cleared_at, clear_reason)
    with instants as ``HH:MM[:SS.mmm]`` strings when on the journal's day, else full ISO."""
    accepted, errors = read_journal(journal.lines, site)
    assert not errors, errors
    limit = until if until is None or isinstance(until, int) else at(until)
    return [view(a.to_record()) for a in replay_records(accepted, site, limit)]


def view(record: dict[str, Any]) -> tuple[Any, ...]:
    return (
        record["kind"],
        record["bay_id"],
        short(record["raised_at"]),
        record["status"],
        short(record["cleared_at"]),
        record["clear_reason"],
    )


def short(text: str | None) -> str | None:
    """``2026-11-26T09:05:00.000Z`` -> ``26T09:05``; milliseconds kept when not zero."""
    if text is None:
        return None
    day, clock = text[8:10], text[11:-1]
    if clock.endswith(".000"):
        clock = clock[:-4]
    if clock.endswith(":00"):
        clock = clock[:-3]
    return f"{day}T{clock}"
