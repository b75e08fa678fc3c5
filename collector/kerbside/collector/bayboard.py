"""The bay board: each bay's current state, its sessions and the retained ``bays/{id}`` message.

Part of the collector's core (no I/O): an accepted occupancy event in, rows and messages into a
``Draft`` out. A bay's state only moves forward in event time: an event older than what the bay
already shows is history (the journal has it), not news. While the broker hands over its backlog
(``Flow.BACKLOG``) only each bay's latest state is kept for publication, and published when the
backlog is in.

With a time-series sink, the board also keeps the enforcement alerts of each open session, so
that a closed session's point carries its alert count and overstay.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from kerbside.collector.effects import BayStatePoint, Draft, SessionPoint, SessionStep
from kerbside.collector.records import OccupancyEvent
from kerbside.collector.store import BayState, dumps
from kerbside.collector.timeseries.lines import session_figures
from kerbside.core.instants import Instant, format_instant
from kerbside.core.site import Bay, Site


class _BayNow:
    __slots__ = ("gateway_id", "session_start", "since", "state")

    def __init__(
        self, state: str, since: Instant, gateway_id: str | None, session_start: Instant | None
    ) -> None:
        self.state = state
        self.since = since
        self.gateway_id = gateway_id
        self.session_start = session_start


class BayBoard:
    def __init__(
        self,
        site: Site,
        topic_root: str,
        bays: dict[str, BayState],
        session_alerts: Iterable[dict[str, Any]] = (),
        *,
        points: bool = False,
    ) -> None:
        self.site = site
        self._bay_topic = topic_root.rstrip("/") + "/bays/"
        self._bays = {bay_id: _BayNow(*row) for bay_id, row in bays.items()}
        self._points = points
        # bay -> alert id -> latest record, for the current session (only with ``points``)
        self._session_alerts: dict[str, dict[str, dict[str, Any]]] = {}
        for record in session_alerts:
            self.alert_changed(record)
        self._deferred: dict[str, tuple[Bay, OccupancyEvent]] = {}

    def event(self, ev: OccupancyEvent, bay: Bay, draft: Draft, *, defer: bool) -> None:
        """An accepted occupancy event of ``bay``: its new state, if it is one."""
        bay_id = ev.bay_id
        cur = self._bays.get(bay_id)
        if cur is not None and (ev.ts < cur.since or cur.state == ev.state):
            return  # older than what we already know, or no change
        session_start = None
        if ev.state == "occupied":
            session_start = ev.ts
            draft.sessions.append((SessionStep.OPEN, bay_id, ev.ts, None))
        elif cur is not None and cur.state == "occupied" and cur.session_start is not None:
            self._close_session(bay, cur.session_start, ev.ts, draft)
        self._bays[bay_id] = _BayNow(ev.state, ev.ts, ev.gateway_id, session_start)
        draft.bays[bay_id] = (bay_id, ev.state, ev.ts, ev.gateway_id, session_start)
        draft.state_changes.append((bay_id, ev.ts, ev.state))
        if defer:
            # only each bay's latest state is published once the backlog is in: its message is
            # made then, not for every change on the way
            self._deferred[bay_id] = (bay, ev)
        else:
            draft.bay_messages[bay_id] = self._message(bay, ev)
        if self._points:
            draft.points.append(BayStatePoint(bay, ev.state, ev.ts, ev.gateway_id))

    def _message(self, bay: Bay, ev: OccupancyEvent) -> tuple[str, str, bool]:
        """The retained ``bays/{id}`` message of the bay's state since ``ev``."""
        payload = dumps(
            {
                "v": 1,
                "bay_id": ev.bay_id,
                "zone_id": bay.zone_id,
                "state": ev.state,
                "since": format_instant(ev.ts),
                "gateway_id": ev.gateway_id,
            }
        )
        return (self._bay_topic + ev.bay_id, payload, True)

    def release(self, draft: Draft) -> None:
        """The backlog is in: publish each bay's latest state."""
        if self._deferred:
            message = self._message
            draft.bay_messages.update(
                (bay_id, message(bay, ev)) for bay_id, (bay, ev) in self._deferred.items()
            )
            self._deferred = {}

    def _close_session(self, bay: Bay, start: Instant, end: Instant, draft: Draft) -> None:
        draft.sessions.append((SessionStep.CLOSE, bay.id, start, end))
        if not self._points:
            return
        start_iso = format_instant(start)
        alerts = self._session_alerts.pop(bay.id, {})
        records = [r for r in alerts.values() if r.get("session_start") == start_iso]
        overstay_s, count = session_figures(records, end)
        draft.points.append(SessionPoint(bay, start, end, overstay_s, count))

    def alert_changed(self, record: dict[str, Any]) -> None:
        """An enforcement alert's new record (kept for its session's figures)."""
        if not self._points:
            return
        bay_id = record.get("bay_id")
        if not isinstance(bay_id, str):
            return
        cur = self._bays.get(bay_id)
        if cur is None or cur.session_start is None:
            return
        if record.get("session_start") == format_instant(cur.session_start):
            self._session_alerts.setdefault(bay_id, {})[record["alert_id"]] = record

    def replace_site(self, site: Site) -> None:
        self.site = site
