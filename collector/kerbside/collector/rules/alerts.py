"""Enforcement alerts (docs/rules.md): the record every consumer sees, and what changed."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Literal, get_args

from kerbside.core.instants import Instant, format_instant
from kerbside.core.site import Location

AlertKind = Literal["overstay", "unpaid", "expired", "suspended"]
AlertStatus = Literal["open", "acknowledged", "cleared", "resolved"]
ChangeKind = Literal["raised", "acknowledged", "cleared", "resolved"]

# The enforcement kinds, in the order the rules raise them at one instant (the one list of them:
# the store, the time series and the engine take it from here).
KINDS: tuple[AlertKind, ...] = get_args(AlertKind)
ACTIVE = frozenset({"open", "acknowledged"})


def make_alert_id(bay_id: str, kind: str, session_start: Instant, key: Instant) -> str:
    """Stable across restarts and in replay: derived from what makes the alert unique.

    ``key`` is the restriction start ``s`` (overstay, unpaid: one per session and period), the
    right's end ``e`` (expired) or ``max(arrival, run start)`` (suspended: one per run).
    """
    text = f"{bay_id}|{kind}|{session_start}|{key}"
    return hashlib.sha256(text.encode()).hexdigest()[:20]


@dataclass(frozen=True, slots=True)
class Alert:
    alert_id: str
    kind: AlertKind
    status: AlertStatus
    bay_id: str
    zone_id: str
    street: str | None
    location: Location | None
    session_start: Instant
    raised_at: Instant
    cleared_at: Instant | None = None
    clear_reason: str | None = None

    def to_record(self) -> dict[str, Any]:
        """The alert record (docs/rules.md) (MQTT payload, API item, replay output line)."""
        return {
            "v": 1,
            "alert_id": self.alert_id,
            "kind": self.kind,
            "status": self.status,
            "bay_id": self.bay_id,
            "zone_id": self.zone_id,
            "street": self.street,
            "location": (
                None
                if self.location is None
                else {"lat": self.location.lat, "lon": self.location.lon}
            ),
            "session_start": format_instant(self.session_start),
            "raised_at": format_instant(self.raised_at),
            "cleared_at": None if self.cleared_at is None else format_instant(self.cleared_at),
            "clear_reason": self.clear_reason,
        }


@dataclass(frozen=True, slots=True)
class AlertChange:
    """One change of an alert's status; ``alert`` is the alert as it is after the change."""

    alert: Alert
    change: ChangeKind
    at: Instant  # when it happened on the event clock (raised_at, cleared_at or the ack's time)
