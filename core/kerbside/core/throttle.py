"""Saying a recurring thing in the log at most once per interval."""

from __future__ import annotations

import time
from collections.abc import Callable


class Throttle:
    """``ready()`` is True the first time, then at most once per ``interval_s``.

    A gateway that waits for something (a broker, a serial adapter, free disk space) says so
    every time it tries at first, and then no more than this often, so the journal of a small
    SD card is not flooded during a day-long outage.
    """

    def __init__(self, interval_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval_s = interval_s
        self._clock = clock
        self._last: float | None = None

    def ready(self) -> bool:
        now = self._clock()
        if self._last is not None and now - self._last < self.interval_s:
            return False
        self._last = now
        return True

    def reset(self) -> None:
        """The thing waited for came: the next occurrence is said at once."""
        self._last = None
