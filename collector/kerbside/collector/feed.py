"""The alert feed: alert changes for the officers' live stream (SSE), with their change ids.

Changes enter only once committed (the unit of work calls ``publish`` after its commit), so the
stream never shows what the store does not hold and a change id is never handed out twice. Recent
changes are kept in memory; a client resuming from further back reads them from the store.
Whatever else learns of committed changes (another collector's, through the database or the
broker) feeds them in the same way.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Sequence
from typing import Any, Protocol

Change = tuple[int, dict[str, Any]]  # (change id, the alert record after it)


class ChangeLog(Protocol):
    def alert_changes_since(self, after: int, limit: int) -> list[Change]: ...

    def last_alert_change(self) -> int: ...


class AlertFeed:
    def __init__(self, log: ChangeLog, keep: int = 2000) -> None:
        self._log = log
        self._ring: collections.deque[Change] = collections.deque(maxlen=keep)
        self._last = log.last_alert_change()
        self._changed: asyncio.Event | None = None

    @property
    def last_id(self) -> int:
        return self._last

    def publish(self, changes: Sequence[Change]) -> None:
        """Committed changes, in change-id order."""
        if not changes:
            return
        self._ring.extend(changes)
        self._last = max(self._last, changes[-1][0])
        if self._changed is not None:
            self._changed.set()

    def catch_up(self) -> None:
        """Take in changes committed that this feed never heard of (a commit whose outcome was
        not known: the database's reply lost), so that the stream has no gap."""
        while True:
            missed = self._log.alert_changes_since(self._last, 1000)
            if not missed:
                return
            self.publish(missed)

    def changes_since(self, after: int, limit: int = 100) -> list[Change]:
        ring = self._ring
        if ring and ring[0][0] <= after + 1:
            return [(i, r) for i, r in ring if i > after][:limit]
        return self._log.alert_changes_since(after, limit)

    async def wait(self, after: int, timeout: float) -> None:  # noqa: ASYNC109
        """Until a change after ``after`` is committed, or ``timeout`` seconds."""
        if self._last > after:
            return
        if self._changed is None:
            self._changed = asyncio.Event()
        event = self._changed
        try:
            await asyncio.wait_for(event.wait(), timeout)
        except TimeoutError:
            return
        finally:
            if event.is_set() and self._changed is event:
                # A fresh event for the next wait; every current waiter has been woken.
                self._changed = asyncio.Event()
