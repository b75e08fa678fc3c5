"""Maintenance alerts: gateways offline, sensors silent or faulty, low batteries.

A core without I/O: the service feeds it what gateways say and the time, and stores and
publishes the alert records it returns. Gateway silence is judged on the collector's receive
clock (a gateway's own clock may be the thing that is broken); the other kinds on the instants
the gateway reports.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from kerbside.core.instants import format_instant, parse_instant

GATEWAY_OFFLINE = "gateway_offline"
SENSOR_SILENT = "sensor_silent"
SENSOR_FAULT = "sensor_fault"
LOW_BATTERY = "low_battery"
KINDS = (GATEWAY_OFFLINE, SENSOR_SILENT, SENSOR_FAULT, LOW_BATTERY)


@dataclass(frozen=True)
class BayInfo:
    """The bay fields a maintenance alert carries (from the site)."""

    bay_id: str
    zone_id: str
    street: str | None
    location: dict[str, float] | None


def alert_id_for(kind: str, subject: str, raised_at: int) -> str:
    return f"{kind}:{subject}:{raised_at}"


class Maintenance:
    """Open maintenance alerts by (kind, subject) and the gateways' silence deadlines."""

    def __init__(
        self,
        offline_after_ms: int,
        low_battery_mv: int,
        open_alerts: Iterable[dict[str, Any]] = (),
        gateways_seen: dict[str, tuple[bool, int]] | None = None,
    ) -> None:
        self.offline_after_ms = offline_after_ms
        self.low_battery_mv = low_battery_mv
        self._open: dict[tuple[str, str], dict[str, Any]] = {}
        for record in open_alerts:
            self._open[(record["kind"], _subject(record))] = dict(record)
        # gateway -> last time heard from (receive clock); only gateways believed online
        self._last_seen: dict[str, int] = {}
        self._heap: list[tuple[int, str]] = []
        for gateway_id, (online, last_seen) in (gateways_seen or {}).items():
            if online:
                self._watch(gateway_id, last_seen)

    def open_alerts(self) -> list[dict[str, Any]]:
        return [dict(r) for r in self._open.values()]

    def alert(self, alert_id: str) -> dict[str, Any] | None:
        """One of ours, open or acknowledged, by id."""
        return next((dict(r) for r in self._open.values() if r["alert_id"] == alert_id), None)

    # -- gateways ----------------------------------------------------------------------------

    def gateway_heard(self, gateway_id: str, now: int, online: bool = True) -> list[dict[str, Any]]:
        """A status or health message at receive time ``now``; ``online=False`` is a last will
        or a clean stop."""
        if not online:
            self._last_seen.pop(gateway_id, None)
            return self._raise(GATEWAY_OFFLINE, gateway_id, now, {"gateway_id": gateway_id})
        self._watch(gateway_id, now)
        return self._clear(GATEWAY_OFFLINE, gateway_id, now)

    def forget_gateways(self, gone: Callable[[str], bool]) -> None:
        """Stop watching the gateways ``gone`` says left the site. Their open alerts stay as they
        are (an officer resolves them): the site says nothing of whether they recovered."""
        for gateway_id in [g for g in self._last_seen if gone(g)]:
            del self._last_seen[gateway_id]  # its deadline in the heap is skipped as superseded

    def _watch(self, gateway_id: str, last_seen: int) -> None:
        self._last_seen[gateway_id] = last_seen
        heapq.heappush(self._heap, (last_seen + self.offline_after_ms, gateway_id))

    def next_deadline(self) -> int | None:
        while self._heap:
            due, gateway_id = self._heap[0]
            seen = self._last_seen.get(gateway_id)
            if seen is None or seen + self.offline_after_ms != due:
                heapq.heappop(self._heap)  # superseded by a later message or an offline
                continue
            return due
        return None

    def advance(self, now: int) -> list[dict[str, Any]]:
        changes: list[dict[str, Any]] = []
        while (due := self.next_deadline()) is not None and due <= now:
            _, gateway_id = heapq.heappop(self._heap)
            del self._last_seen[gateway_id]
            changes += self._raise(GATEWAY_OFFLINE, gateway_id, due, {"gateway_id": gateway_id})
        return changes

    # -- sensors -------------------------------------------------------------------------------

    def sensor_state(
        self, sensor_id: str, bay: BayInfo | None, state: str, reason: str | None, ts: int
    ) -> list[dict[str, Any]]:
        """An accepted occupancy event from a sensor."""
        changes: list[dict[str, Any]] = []
        kind = {"sensor_silent": SENSOR_SILENT, "sensor_fault": SENSOR_FAULT}.get(reason or "")
        if state == "unknown" and kind is not None:
            other = SENSOR_FAULT if kind == SENSOR_SILENT else SENSOR_SILENT
            changes += self._clear(other, sensor_id, ts)
            changes += self._raise(kind, sensor_id, ts, _sensor_fields(sensor_id, bay))
        elif state in ("occupied", "vacant"):
            changes += self._clear(SENSOR_SILENT, sensor_id, ts)
            changes += self._clear(SENSOR_FAULT, sensor_id, ts)
        return changes

    def battery(
        self, sensor_id: str, bay: BayInfo | None, battery_mv: int, ts: int
    ) -> list[dict[str, Any]]:
        if battery_mv < self.low_battery_mv:
            fields = _sensor_fields(sensor_id, bay)
            fields["battery_mv"] = battery_mv
            return self._raise(LOW_BATTERY, sensor_id, ts, fields)
        return self._clear(LOW_BATTERY, sensor_id, ts)

    # -- officers ------------------------------------------------------------------------------

    def update(self, record: dict[str, Any]) -> None:
        """An officer acknowledged or resolved an alert of ours."""
        key = (record["kind"], _subject(record))
        if record["status"] in ("cleared", "resolved"):
            self._open.pop(key, None)
        elif key in self._open:
            self._open[key] = dict(record)

    # -- records ---------------------------------------------------------------------------------

    def _raise(
        self, kind: str, subject: str, at: int, fields: dict[str, Any]
    ) -> list[dict[str, Any]]:
        if (kind, subject) in self._open:
            return []
        record: dict[str, Any] = {
            "v": 1,
            "alert_id": alert_id_for(kind, subject, at),
            "kind": kind,
            "status": "open",
            **fields,
            "session_start": None,
            "raised_at": format_instant(at),
            "cleared_at": None,
            "clear_reason": None,
        }
        self._open[(kind, subject)] = record
        return [dict(record)]

    def _clear(self, kind: str, subject: str, at: int) -> list[dict[str, Any]]:
        record = self._open.get((kind, subject))
        if record is None:
            return []
        if kind != GATEWAY_OFFLINE and at < parse_instant(record["raised_at"]):
            # A sensor's report from before its alert (sent late, or out of order) says nothing
            # of whether it has recovered since.
            return []
        del self._open[(kind, subject)]
        record = {
            **record,
            "status": "cleared",
            "cleared_at": format_instant(at),
            "clear_reason": "recovered",
        }
        return [record]


def _sensor_fields(sensor_id: str, bay: BayInfo | None) -> dict[str, Any]:
    fields: dict[str, Any] = {"sensor_id": sensor_id}
    if bay is not None:
        fields.update(
            bay_id=bay.bay_id, zone_id=bay.zone_id, street=bay.street, location=bay.location
        )
    return fields


def _subject(record: dict[str, Any]) -> str:
    if record["kind"] == GATEWAY_OFFLINE:
        return str(record["gateway_id"])
    return str(record["sensor_id"])
