"""What the engine keeps per bay: occupancy, rights, suspensions, the current session's alerts."""

from __future__ import annotations

from kerbside.collector.rules.alerts import AlertKind, AlertStatus
from kerbside.collector.rules.schedule import POS_INF
from kerbside.core.instants import Instant

Interval = tuple[Instant, Instant]
AlertKey = tuple[str, Instant]  # (kind, key): what makes an alert unique within a session


class SessionAlert:
    """An alert of the current session, mutable inside the engine only."""

    __slots__ = (
        "alert_id",
        "clear_reason",
        "cleared_at",
        "end",
        "key",
        "kind",
        "raised_at",
        "status",
    )

    def __init__(
        self,
        alert_id: str,
        kind: AlertKind,
        key: Instant,
        raised_at: Instant,
        *,
        status: AlertStatus = "open",
        cleared_at: Instant | None = None,
        clear_reason: str | None = None,
        end: Instant = POS_INF,
    ) -> None:
        self.alert_id = alert_id
        self.kind: AlertKind = kind
        self.key = key
        self.raised_at = raised_at
        self.status: AlertStatus = status
        self.cleared_at = cleared_at
        self.clear_reason = clear_reason
        # End of the controlled period it was raised in (unused for `suspended`, whose run is
        # looked up again because suspensions can be replaced).
        self.end = end

    def __repr__(self) -> str:
        return f"<{self.kind} {self.alert_id} {self.status} raised {self.raised_at}>"


class BayState:
    __slots__ = ("alerts", "arrival", "rights", "since", "state", "suspensions", "version", "wake")

    def __init__(self) -> None:
        self.state = "unknown"
        self.since: Instant | None = None
        self.arrival: Instant | None = None
        self.alerts: dict[AlertKey, SessionAlert] | None = None
        self.rights: dict[str, Interval] | None = None
        self.suspensions: dict[str, Interval] | None = None
        self.version = 0
        self.wake: Instant | None = None


def merge_runs(intervals: list[Interval]) -> list[Interval]:
    """Suspensions that overlap or touch make one suspended run."""
    runs: list[Interval] = []
    for start, end in sorted(intervals):
        if runs and start <= runs[-1][1]:
            if end > runs[-1][1]:
                runs[-1] = (runs[-1][0], end)
        else:
            runs.append((start, end))
    return runs


def run_at(state: BayState, at: Instant) -> Interval | None:
    """The suspended run of the bay containing ``at``, if any."""
    if not state.suspensions:
        return None
    for start, end in merge_runs(list(state.suspensions.values())):
        if start > at:
            break
        if at < end:
            return (start, end)
    return None


def run_boundary(state: BayState, now: Instant) -> Instant:
    """The first start or end of a suspended run at or after ``now``."""
    for start, end in merge_runs(list((state.suspensions or {}).values())):
        if now <= start:
            return start
        if now < end:
            return end
    return POS_INF
