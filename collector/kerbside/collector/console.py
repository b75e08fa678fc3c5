"""How far a long command has got, on stderr (its records go to stdout through
``kerbside.core.output``)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from typing import TextIO, TypeVar

from kerbside.core.throttle import Throttle

T = TypeVar("T")

# On a terminal the progress line is redrawn this often; into a file or a pipe (a log), a line
# is added this often.
TERMINAL_EVERY_S = 1.0
LOG_EVERY_S = 30.0
# Items between two looks at the clock.
TICK_EVERY = 4096


class Progress:
    """How far a long command has got, on stderr. On a terminal, one line redrawn at most every
    ``TERMINAL_EVERY_S`` and wiped before anything else is printed; elsewhere a line at most
    every ``LOG_EVERY_S``. Nothing in the first interval, so a short run says nothing."""

    def __init__(self, stream: TextIO, clock: Callable[[], float] = time.monotonic) -> None:
        self._stream = stream
        self._terminal = stream.isatty()
        self._throttle = Throttle(TERMINAL_EVERY_S if self._terminal else LOG_EVERY_S, clock)
        self._throttle.ready()  # the first interval is quiet
        self._drawn = False

    def say(self, text: Callable[[], str]) -> None:
        """Show ``text()`` if it is time to."""
        if not self._throttle.ready():
            return
        if self._terminal:
            self._stream.write(f"\r\x1b[K{text()}")
            self._drawn = True
        else:
            self._stream.write(f"{text()}\n")
        self._stream.flush()

    def wipe(self) -> None:
        """Take the terminal's progress line away (before printing anything else)."""
        if self._drawn:
            self._stream.write("\r\x1b[K")
            self._stream.flush()
            self._drawn = False

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.wipe()  # an error or Ctrl-C is not printed after a progress line


def counted(items: Iterable[T], tick: Callable[[int], None]) -> Iterator[T]:
    """``items`` as they are, calling ``tick(n)`` once every ``TICK_EVERY`` of them."""
    for n, item in enumerate(items, 1):
        if not n % TICK_EVERY:
            tick(n)
        yield item
