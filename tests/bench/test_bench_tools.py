"""The benchmarks' own machinery: the waiting helper fails loudly, a failed measurement becomes a
failed row, and several runs merge into one table of spreads."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from common import BenchError, Row, WaitTimeoutError, attempt, wait_until
from spread import RunRows, merge, merge_text

pytestmark = pytest.mark.slow  # starts processes (brokers, programs, servers)


def test_wait_until_returns_once_the_condition_holds() -> None:
    ready_at = time.monotonic() + 0.2
    took = wait_until("the clock", lambda: time.monotonic() >= ready_at, 5, interval_s=0.01)
    assert 0.15 <= took < 5


def test_wait_until_names_what_it_awaited_and_for_how_long() -> None:
    with pytest.raises(WaitTimeoutError) as caught:
        wait_until("the tide", lambda: False, 0.2, detail=lambda: "3 of 5 in", interval_s=0.01)
    assert str(caught.value) == "gave up after 0.2 s waiting for the tide (3 of 5 in)"


def test_wait_until_fails_at_once_when_a_watched_process_exits() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    proc.wait()
    started = time.monotonic()
    with pytest.raises(BenchError, match=r"exited with code 3 while waiting for the agent"):
        wait_until("the agent", lambda: False, 30, alive=[proc])
    assert time.monotonic() - started < 5


def test_a_measurement_that_raised_is_a_failed_row_without_a_figure() -> None:
    def measure() -> list[Row]:
        raise WaitTimeoutError("the broker", 10)

    (row,) = attempt("broker drain", measure)
    assert row.failed
    assert not row.ok
    assert row.figure == "broker drain"
    assert row.measured == "FAILED: WaitTimeoutError: gave up after 10 s waiting for the broker"


def test_numbers_that_differ_become_ranges_and_equal_ones_stay() -> None:
    assert merge_text(["1.00 s / 2.19 s", "1.02 s / 2.19 s"]) == "1.00-1.02 s / 2.19 s"
    assert merge_text(["4,845", "12,001", "5,000"]) == "4,845-12,001"
    assert merge_text(["p99 12 ms", "FAILED: x"]) == "p99 12 ms | FAILED: x"


def _run(label: str, *rows: Row) -> RunRows:
    return RunRows(label, [("edge", r) for r in rows])


def test_rows_are_matched_by_label_without_their_numbers_and_verdicts_compared() -> None:
    runs = [
        _run(
            "quiet 1", Row("drain (6100/s)", "0.84x", ">= 0.8x", True), Row("rss", "40", "-", True)
        ),
        _run(
            "quiet 2", Row("drain (5900/s)", "0.78x", ">= 0.8x", False), Row("rss", "41", "-", True)
        ),
        _run("burners 1", Row("drain (3000/s)", "0.81x", ">= 0.8x", True)),
    ]
    drain, rss = merge(runs)
    assert drain == [
        "drain (3000-6100/s)",
        ">= 0.8x",
        "0.78-0.84x",
        "0.81x",
        "VARIES (quiet 1/2, burners 1/1 ok)",
    ]
    # missing from the burner run (its measurement failed there): not a clean "yes"
    assert rss[2:4] == ["40-41", "- (missing in 1 of 1 runs)"]
    assert rss[4] == "VARIES (quiet 2/2, burners 0/1 ok)"
