"""An in-memory stand-in for CollectorService, for API tests that need no broker or engine.

It keeps the API contract (api/ports.py): contract-shaped dicts, cursors, a change log with waits,
NotFound and RecordRejected. The end-to-end tests use the real collector instead.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from kerbside.collector.api.ports import NotFoundError, Page, RecordRejectedError
from kerbside.core.instants import format_instant, parse_instant

T0 = parse_instant("2026-11-26T08:00:00Z")


def make_site(
    n_bays: int = 6, zones: tuple[str, ...] = ("CA-F", "CA-G"), named: tuple[str, ...] = ()
) -> SimpleNamespace:
    """``n_bays`` bays spread over ``zones``, plus ``named`` bays (in the first zone)."""
    zone_objs = {z: SimpleNamespace(id=z, name=f"Zone {z}") for z in zones}
    bays = {}
    ids = [(zones[i % len(zones)], f"{zones[i % len(zones)]}-B{i:05d}") for i in range(n_bays)]
    ids += [(zones[0], name) for name in named]
    for i, (zone, bay_id) in enumerate(ids):
        bays[bay_id] = SimpleNamespace(
            id=bay_id,
            zone_id=zone,
            street="Parkway",
            kind="paid",
            location=SimpleNamespace(lat=51.5378 + i * 1e-4, lon=-0.1452),
            gateway="gw-1",
        )
    return SimpleNamespace(name="test", zones=zone_objs, bays=bays)


@dataclass
class FakeService:
    site: SimpleNamespace = field(default_factory=make_site)
    rights: dict[str, dict[str, Any]] = field(default_factory=dict)
    suspensions: dict[str, dict[str, Any]] = field(default_factory=dict)
    states: dict[str, tuple[str, int | None]] = field(default_factory=dict)
    history: dict[str, list[tuple[int, str]]] = field(default_factory=dict)
    alerts_by_id: dict[str, dict[str, Any]] = field(default_factory=dict)
    actions: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    changes: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    health: dict[str, Any] = field(
        default_factory=lambda: {"broker": "ok", "store": "ok", "sink": "disabled"}
    )
    calls: list[str] = field(default_factory=list)
    # The collector's clock and each bay's origin; by default every bay has always existed.
    clock: Callable[[], int] = field(default=lambda: time.time_ns() // 1_000_000)
    origins: dict[str, int] | None = None

    @property
    def bay_origins(self) -> dict[str, int]:
        if self.origins is None:
            return dict.fromkeys(self.site.bays, 0)
        return self.origins

    def __post_init__(self) -> None:
        self._ids = itertools.count(1)
        self._changed: asyncio.Event | None = None

    # --- test controls -------------------------------------------------------------------
    def set_state(self, bay_id: str, state: str, ts: int) -> None:
        self.states[bay_id] = (state, ts)
        self.history.setdefault(bay_id, []).append((ts, state))

    def raise_alert(self, bay_id: str, kind: str = "unpaid", at: int = T0) -> dict[str, Any]:
        bay = self.site.bays[bay_id]
        alert_id = f"{bay_id}:{kind}:{at}"
        record = {
            "v": 1,
            "alert_id": alert_id,
            "kind": kind,
            "status": "open",
            "bay_id": bay_id,
            "zone_id": bay.zone_id,
            "street": bay.street,
            "location": {"lat": bay.location.lat, "lon": bay.location.lon},
            "session_start": format_instant(at - 300_000),
            "raised_at": format_instant(at),
            "cleared_at": None,
            "clear_reason": None,
        }
        self._change(record)
        return record

    def clear_alert(self, alert_id: str, reason: str, at: int) -> None:
        record = dict(self.alerts_by_id[alert_id])
        record.update(status="cleared", cleared_at=format_instant(at), clear_reason=reason)
        self._change(record)

    def _change(self, record: dict[str, Any]) -> None:
        self.alerts_by_id[record["alert_id"]] = record
        self.changes.append((next(self._ids), dict(record)))
        if self._changed is not None:
            self._changed.set()
            self._changed = None

    # --- the service contract ------------------------------------------------------------
    async def post_right(self, body: dict[str, Any]) -> dict[str, Any]:
        self.calls.append("post_right")
        self.rights[body["right_id"]] = body
        for record in list(self.alerts_by_id.values()):
            covered = record.get("bay_id") == body.get("bay_id") or (
                body.get("zone_id") is not None and record.get("zone_id") == body["zone_id"]
            )
            if (
                covered
                and record["kind"] == "unpaid"
                and record["status"] in ("open", "acknowledged")
            ):
                self.clear_alert(record["alert_id"], "right_added", parse_instant(body["start"]))
        return body

    async def delete_right(self, right_id: str) -> dict[str, Any]:
        self.calls.append("delete_right")
        if right_id not in self.rights:
            raise NotFoundError(f"no right {right_id}")
        return {"right_id": right_id, "cancelled": True, **self.rights.pop(right_id)}

    async def post_suspension(self, body: dict[str, Any]) -> dict[str, Any]:
        self.calls.append("post_suspension")
        self.suspensions[body["suspension_id"]] = body
        return body

    def _act(
        self, alert_id: str, action: str, officer: str, outcome: Any, note: Any
    ) -> dict[str, Any]:
        record = self.alerts_by_id.get(alert_id)
        if record is None:
            raise NotFoundError(f"no alert {alert_id}")
        if record["status"] in ("cleared", "resolved"):
            raise RecordRejectedError(f"alert is {record['status']}", "alert_id")
        self.actions.setdefault(alert_id, []).append(
            {
                "at": format_instant(T0),
                "action": action,
                "officer": officer,
                "outcome": outcome,
                "note": note,
            }
        )
        record = dict(record)
        if action == "ack":
            record["status"] = "acknowledged"
        else:
            record.update(status="resolved", cleared_at=format_instant(T0), clear_reason="resolved")
        self._change(record)
        return record

    async def ack_alert(
        self, alert_id: str, officer: str, outcome: str | None, note: str | None
    ) -> dict[str, Any]:
        return self._act(alert_id, "ack", officer, outcome, note)

    async def resolve_alert(
        self, alert_id: str, officer: str, outcome: str, note: str | None
    ) -> dict[str, Any]:
        return self._act(alert_id, "resolve", officer, outcome, note)

    @staticmethod
    def _page(items: list[dict[str, Any]], limit: int, cursor: str | None) -> Page:
        start = 0
        if cursor is not None:
            if not cursor.isdigit():
                raise ValueError("bad cursor")
            start = int(cursor)
        chunk = items[start : start + limit]
        nxt = str(start + limit) if start + limit < len(items) else None
        return chunk, nxt

    def bay(self, bay_id: str) -> dict[str, Any] | None:
        bay = self.site.bays.get(bay_id)
        if bay is None:
            return None
        state, since = self.states.get(bay_id, ("unknown", None))
        return {
            "bay_id": bay.id,
            "zone_id": bay.zone_id,
            "street": bay.street,
            "kind": bay.kind,
            "location": {"lat": bay.location.lat, "lon": bay.location.lon},
            "state": state,
            "since": None if since is None else format_instant(since),
            "gateway_id": bay.gateway,
        }

    def bays(self, zone_id: str | None = None, limit: int = 100, cursor: str | None = None) -> Page:
        items = [
            b
            for bay_id in sorted(self.site.bays)
            if (b := self.bay(bay_id)) is not None and (zone_id is None or b["zone_id"] == zone_id)
        ]
        return self._page(items, limit, cursor)

    def sessions(
        self,
        bay_id: str,
        start: int | None,
        end: int | None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> Page:
        out = []
        opened: int | None = None
        for ts, state in self.history.get(bay_id, []):
            if state == "occupied" and opened is None:
                opened = ts
            elif state != "occupied" and opened is not None:
                out.append(
                    {
                        "bay_id": bay_id,
                        "zone_id": self.site.bays[bay_id].zone_id,
                        "start": format_instant(opened),
                        "end": format_instant(ts),
                        "alerts": 0,
                    }
                )
                opened = None
        return self._page(out, limit, cursor)

    def alerts(
        self,
        status: str | None = None,
        zone: str | None = None,
        kind: str | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> Page:
        items = [
            r
            for r in sorted(
                self.alerts_by_id.values(), key=lambda r: (r["raised_at"], r["alert_id"])
            )
            if (status is None or r["status"] == status)
            and (zone is None or r["zone_id"] == zone)
            and (kind is None or r["kind"] == kind)
        ]
        return self._page(items, limit, cursor)

    def alert(self, alert_id: str) -> dict[str, Any] | None:
        record = self.alerts_by_id.get(alert_id)
        if record is None:
            return None
        return {**record, "history": self.actions.get(alert_id, [])}

    def alert_changes_since(self, after: int, limit: int = 100) -> list[tuple[int, dict[str, Any]]]:
        return [(cid, rec) for cid, rec in self.changes if cid > after][:limit]

    def last_alert_change_id(self) -> int:
        return self.changes[-1][0] if self.changes else 0

    async def wait_alert_change(self, after: int, timeout: float) -> None:  # noqa: ASYNC109
        if self.last_alert_change_id() > after:
            return
        if self._changed is None:
            self._changed = asyncio.Event()
        event = self._changed
        try:
            async with asyncio.timeout(timeout):
                await event.wait()
        except TimeoutError:
            return

    def state_changes(
        self, zone_id: str | None, start: int, end: int
    ) -> dict[str, list[tuple[int, str]]]:
        out: dict[str, list[tuple[int, str]]] = {}
        for bay_id, bay in self.site.bays.items():
            if zone_id is not None and bay.zone_id != zone_id:
                continue
            changes = self.history.get(bay_id, [])
            before = [c for c in changes if c[0] <= start]
            line = [(start, before[-1][1])] if before else []
            line += [c for c in changes if start < c[0] < end]
            out[bay_id] = line
        return out

    def metrics(self) -> dict[str, Any]:
        return {
            "events_in": 12,
            "rejected": {"not_json": 2, "unknown_bay": 1},
            "alerts": {"unpaid": len(self.alerts_by_id)},
            "rule_latency_s": {"count": 12, "sum": 0.006, "buckets": {0.001: 11, 0.01: 12}},
            "spool_depth": 0,
        }

    def gateways(self) -> list[dict[str, Any]]:
        return [
            {
                "gateway_id": "gw-1",
                "online": True,
                "last_seen": "2026-11-26T08:00:00.000Z",
                "events": 2,
                "epochs": 1,
                "first_seq": 1,
                "last_seq": 2,
                "missing_seq": 0,
            }
        ]

    def healthz(self) -> dict[str, Any]:
        return dict(self.health)

    def suspended_bays(self, now: int) -> set[str]:
        out: set[str] = set()
        for s in self.suspensions.values():
            if parse_instant(s["start"]) <= now < parse_instant(s["end"]):
                out.update(s["bay_ids"])
        return out
