"""Each bay's recent state history, in memory: "what was every bay's state at minute t?"

The collector tells the recorder of every state change (``bay_state``), with the instant the new
state began. The minute task asks for the states at a boundary ``t`` a little after ``t`` (the
collector's ``alert_delay_s``), so changes stamped before ``t`` but confirmed after it are in.
History older than the last boundary written is forgotten, so memory stays one entry a bay.
Asking the store instead would cost a query over the whole state history every minute, on the
collector's event loop.
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping

from kerbside.core.instants import Instant


class BayStates:
    def __init__(self) -> None:
        self._changes: dict[str, list[tuple[Instant, str]]] = {}

    def seed(self, states: Mapping[str, tuple[str, Instant]]) -> None:
        """Current (state, since) of bays not heard of yet (at start, from the store)."""
        for bay_id, (state, since) in states.items():
            self._changes.setdefault(bay_id, [(since, state)])

    def observe(self, bay_id: str, state: str, ts: Instant) -> None:
        changes = self._changes.setdefault(bay_id, [])
        if not changes or ts >= changes[-1][0]:
            changes.append((ts, state))
        else:  # backdated behind a later change: keep the list in time order
            bisect.insort(changes, (ts, state), key=lambda c: c[0])

    def at(self, t: Instant) -> dict[str, str]:
        """Each known bay's state at ``t`` (the last change at or before it)."""
        out: dict[str, str] = {}
        for bay_id, changes in self._changes.items():
            i = bisect.bisect_right(changes, t, key=lambda c: c[0])
            if i:
                out[bay_id] = changes[i - 1][1]
        return out

    def forget_before(self, t: Instant) -> None:
        """Drop changes superseded at ``t`` (keep the one in force at ``t`` and later ones)."""
        for changes in self._changes.values():
            i = bisect.bisect_right(changes, t, key=lambda c: c[0])
            if i > 1:
                del changes[: i - 1]
