"""The one backoff: doubling from the first delay up to the cap, jittered down, reset on success."""

from __future__ import annotations

import random

import pytest

from kerbside.core.backoff import Backoff


def test_without_jitter_it_doubles_up_to_the_cap_and_starts_again_after_a_reset() -> None:
    backoff = Backoff(1.0, 30.0, jitter=0.0)
    assert [backoff.next() for _ in range(7)] == [1, 2, 4, 8, 16, 30, 30]
    assert backoff.failures == 7
    backoff.reset()
    assert backoff.next() == 1.0


def test_jitter_draws_each_delay_from_the_upper_part_of_its_ceiling() -> None:
    backoff = Backoff(0.5, 4.0, jitter=0.5, rng=random.Random(3))
    for ceiling in (0.5, 1, 2, 4, 4, 4):
        assert ceiling * 0.5 <= backoff.next() <= ceiling
    delays = {round(Backoff(1, 1, rng=random.Random(seed)).next(), 6) for seed in range(20)}
    assert len(delays) == 20  # clients that failed together come back apart


def test_many_failures_stay_at_the_cap() -> None:
    backoff = Backoff(0.1, 2.0, jitter=0.0)
    for _ in range(10_000):
        backoff.next()
    assert backoff.next() == 2.0


@pytest.mark.parametrize(
    ("first", "cap", "factor", "jitter"),
    [(0, 1, 2, 0.5), (2, 1, 2, 0.5), (1, 2, 0.5, 0), (1, 2, 2, 1.5)],
)
def test_nonsense_is_refused(first: float, cap: float, factor: float, jitter: float) -> None:
    with pytest.raises(ValueError, match="backoff"):
        Backoff(first, cap, factor=factor, jitter=jitter)
