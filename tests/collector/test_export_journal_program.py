"""``export-journal`` as a program: a reader that goes away early, a full disk."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.collector.test_export_journal import store_with_events

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
    with subprocess.Popen(
        _export_command(config), stdout=subprocess.PIPE, stderr=subprocess.PIPE
    ) as program:
        assert program.stdout is not None
        assert program.stderr is not None
        program.stdout.close()  # before it writes: its first write finds no reader
        err = program.stderr.read().decode()
        assert program.wait(timeout=60) == 0
    assert err == ""


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_a_full_disk_under_the_export_is_one_line_and_exit_1(tmp_path: Path) -> None:
    config = store_with_events(tmp_path, 50)
    with Path("/dev/full").open("wb") as full:
        done = subprocess.run(
            _export_command(config), stdout=full, stderr=subprocess.PIPE, check=False
        )
    assert done.returncode == 1
    assert done.stderr.decode() == (
        "kerbside-collector: cannot write to stdout: No space left on device\n"
    )
