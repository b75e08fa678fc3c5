"""Session steps go to the store as runs of one kind: the same rows as the steps one by one,
in as few statements as the sessions' own order allows."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kerbside.collector.effects import SessionOp, SessionStep, session_runs
from kerbside.collector.store import sqlite as sqlite_store
from kerbside.collector.store.sqlite import SqliteStore
from tests.collector.store_rows import closed, counted, opened, write

BAYS = ["B1", "B2", "B3"]
STARTS = [10, 20]

_steps = st.one_of(
    st.builds(opened, st.sampled_from(BAYS), st.sampled_from(STARTS)),
    st.builds(counted, st.sampled_from(BAYS), st.sampled_from(STARTS)),
    st.builds(closed, st.sampled_from(BAYS), st.sampled_from(STARTS), st.integers(30, 40)),
)


def _sessions(store: SqliteStore) -> dict[str, list[tuple[int, int | None, int]]]:
    return {bay: store.sessions(bay, None, None, 100, None) for bay in BAYS}


@pytest.mark.parametrize("fold", [1, sqlite_store.FOLD_SESSIONS])
@settings(max_examples=300, deadline=None)
@given(before=st.lists(_steps, max_size=6), batch=st.lists(_steps, max_size=14))
def test_runs_leave_the_rows_the_steps_one_by_one_would(
    fold: int, before: list[SessionOp], batch: list[SessionOp]
) -> None:
    """Whether closed sessions move into bay order after every commit (``fold`` 1) or wait."""
    default = sqlite_store.FOLD_SESSIONS
    sqlite_store.FOLD_SESSIONS = fold
    try:
        together, one_by_one = SqliteStore(":memory:"), SqliteStore(":memory:")
        for store in (together, one_by_one):
            write(store, sessions=before)  # sessions there before the batch, or not
        write(together, sessions=batch)
        for step in batch:
            write(one_by_one, sessions=[step])
        assert _sessions(together) == _sessions(one_by_one)
    finally:
        sqlite_store.FOLD_SESSIONS = default


def test_a_street_interleaved_in_a_batch_makes_a_few_runs() -> None:
    """A thousand bays, each closing the stay it had and opening the next, one bay after
    another: two statements, not two thousand."""
    batch: list[SessionOp] = []
    for bay in range(1000):
        batch += [closed(f"B{bay}", 10, 20), opened(f"B{bay}", 20)]
    runs = list(session_runs(batch))
    assert [(step, len(params)) for step, params in runs] == [
        (SessionStep.OPEN, 1000),
        (SessionStep.CLOSE, 1000),
    ]
    # a session's own steps keep their order: opened, then counted, then closed
    runs = list(session_runs([opened("B1", 5), counted("B1", 5), closed("B1", 5, 9)]))
    assert [step for step, _ in runs] == [SessionStep.OPEN, SessionStep.ALERT, SessionStep.CLOSE]
