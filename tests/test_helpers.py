"""The tests' own helpers: a wait that runs out says what it waited for; a server helper whose
binary is missing fails at once and leaves no file open (an unclosed file is a ResourceWarning,
an error in this suite, reported later in whichever test the garbage collector runs under)."""

from __future__ import annotations

import gc
import shutil
import warnings
from pathlib import Path

import pytest

from tests import helpers
from tests.helpers import Influxd, VictoriaMetrics, wait_until


def test_a_wait_that_runs_out_names_what_it_waited_for() -> None:
    with pytest.raises(AssertionError, match=r"waited 0\.1 s for: the broker's SUBACK"):
        wait_until(lambda: False, 0.1, "the broker's SUBACK")
    queue: list[int] = []
    with pytest.raises(AssertionError, match=r"waited 0\.1 s for: .*len\(queue\) == 3"):
        wait_until(lambda: len(queue) == 3, 0.1)


def test_the_limit_scales_for_a_slow_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(helpers, "TIMEOUT_SCALE", 3.0)
    assert helpers.limit(None) == 3 * helpers.WAIT_S
    assert helpers.limit(2) == 6


@pytest.mark.parametrize("server", [VictoriaMetrics, Influxd])
def test_a_missing_server_binary_leaves_no_file_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, server: type[VictoriaMetrics | Influxd]
) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: str(tmp_path / "not-installed"))
    with warnings.catch_warnings():
        warnings.simplefilter("error", ResourceWarning)
        with pytest.raises(FileNotFoundError):
            server(tmp_path / "server").start()
        gc.collect()  # an unclosed log file would warn here
