"""The event loop's errors in the log: each kind said once, then at most once a minute."""

from __future__ import annotations

import asyncio
from typing import Any

from kerbside.core.throttle import Throttle

SAY_EVERY_S = 60.0


class QuietLoopErrors:
    """The event loop's exception handler: each kind of error logged with its traceback the first
    time, then once a minute with how many there were (a listener out of file descriptors
    reports every accept it fails: 400,000 tracebacks in 20 s)."""

    def __init__(self) -> None:
        self._kinds: dict[str, tuple[Throttle, int]] = {}

    def __call__(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        key = f"{context.get('message')}:{type(exc).__name__}"
        throttle, count = self._kinds.get(key, (Throttle(SAY_EVERY_S), 0))
        count += 1
        if throttle.ready():
            if count > 1:
                context = {**context, "message": f"{context.get('message')} ({count} times)"}
            loop.default_exception_handler(context)
            count = 0
        self._kinds[key] = (throttle, count)
