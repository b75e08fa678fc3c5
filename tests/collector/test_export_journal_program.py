"""``export-journal`` as a program: a reader that goes away early, a full disk."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.collector.test_export_journal import store_with_events
from tests.helpers import run_on_full_disk, run_with_reader_gone

pytestmark = pytest.mark.slow  # starts processes (brokers, programs, servers)


def _export_command(config: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "kerbside.collector.cli",
        "export-journal",
        "--config",
        str(config),
    ]


def test_a_reader_that_stops_early_ends_the_export_quietly(tmp_path: Path) -> None:
    """``export-journal | head``: no traceback."""
    config = store_with_events(tmp_path, 50)
    code, err = run_with_reader_gone(_export_command(config))
    assert code == 0
    assert err == ""


def test_a_full_disk_under_the_export_is_one_line_and_exit_1(tmp_path: Path) -> None:
    config = store_with_events(tmp_path, 50)
    done = run_on_full_disk(_export_command(config))
    assert done.returncode == 1
    assert done.stderr == "kerbside-collector: cannot write to stdout: No space left on device\n"
