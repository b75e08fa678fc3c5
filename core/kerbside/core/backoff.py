"""How long to wait before trying again: one capped, jittered exponential backoff for everyone.

``Backoff.next()`` is the delay before the next attempt after a failure: the first is
``first_s``, each one after doubles (``factor``) up to ``cap_s``, and each is drawn at random
from its upper ``jitter`` part ([d * (1 - jitter), d]), so clients that failed together do not
come back together. ``reset()`` after a success. The random source is passed in for tests.
"""

from __future__ import annotations

import random


class Backoff:
    def __init__(
        self,
        first_s: float = 1.0,
        cap_s: float = 30.0,
        *,
        factor: float = 2.0,
        jitter: float = 0.5,
        rng: random.Random | None = None,
    ) -> None:
        if not 0 < first_s <= cap_s:
            raise ValueError("backoff: 0 < first_s <= cap_s")
        if factor < 1 or not 0 <= jitter <= 1:
            raise ValueError("backoff: factor >= 1 and 0 <= jitter <= 1")
        self.first_s = first_s
        self.cap_s = cap_s
        self.factor = factor
        self.jitter = jitter
        self._rng = rng or random.Random()
        self._failures = 0

    @property
    def failures(self) -> int:
        """Failures since the last success."""
        return self._failures

    def ceiling(self) -> float:
        """The longest the next delay can be."""
        return min(self.cap_s, self.first_s * self.factor ** min(self._failures, 64))

    def next(self) -> float:
        """The delay before the next attempt (seconds), counting one more failure."""
        top = self.ceiling()
        self._failures += 1
        return top * (1 - self.jitter * self._rng.random())

    def reset(self) -> None:
        self._failures = 0
