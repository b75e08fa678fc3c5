"""A damaged store file: ``kerbside-collector run`` says so in one line naming the file and exits
2 (systemd's unit does not restart on 2), instead of a traceback and a restart loop."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from kerbside.collector.store.sqlite import SqliteStore
from tests.collector.store_rows import journal_row, write
from tests.helpers import write_collector_setup

pytestmark = [pytest.mark.slow, pytest.mark.reliability]


def _run(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kerbside.collector.cli", "run", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _garbage(path: Path) -> None:
    path.write_bytes(b"this was never a database " * 1000)


def _torn_pages(path: Path) -> None:
    store = SqliteStore(path)
    write(
        store,
        journal=[journal_row("occupancy", i, {"n": i, "pad": "x" * 300}) for i in range(3000)],
    )
    store.close()
    data = bytearray(path.read_bytes())
    for offset in range(2 * 4096, len(data) - 4096, 4096):  # all but the first two pages
        data[offset : offset + 64] = b"\xa5" * 64
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", [_garbage, _torn_pages], ids=["not a database", "torn pages"])
def test_a_damaged_store_is_one_line_and_exit_2(tmp_path: Path, damage: object) -> None:
    config = write_collector_setup(tmp_path, port=1, topic_root="damaged")  # no broker needed
    store = tmp_path / "collector.db"
    assert callable(damage)
    damage(store)
    done = _run(config)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"kerbside-collector: {store}: the store is damaged")
    assert "restore it from a backup" in lines[0]
    assert "Traceback" not in done.stdout + done.stderr
