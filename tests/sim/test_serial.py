"""`kerbside-sim serial`: the street on real pseudo-terminals."""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from kerbside.edge.config import load_edge_config
from kerbside.sim.truth import load_truth
from tests.helpers import run_on_full_disk, run_with_reader_gone, wait_until
from tests.sim.simtools import valid_lines

pytestmark = pytest.mark.slow  # starts processes (brokers, programs, servers)


def read_frames(path: Path, want: int, timeout: float = 10.0) -> list[bytes]:
    fd = os.open(path, os.O_RDONLY | os.O_NOCTTY | os.O_NONBLOCK)
    buf = b""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.2)
            if ready:
                try:
                    buf += os.read(fd, 4096)
                except BlockingIOError:
                    continue
            found = valid_lines(buf)
            if len(found) >= want:
                return [m.group(0) for m in found]
    finally:
        os.close(fd)
    raise AssertionError(f"only {len(valid_lines(buf))} frames in {timeout}s: {buf[-200:]!r}")


@contextlib.contextmanager
def serving(*args: str) -> Iterator[subprocess.Popen[bytes]]:
    """``kerbside-sim serial`` with ``args``; stopped (SIGTERM) after the block, it exits 0."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "kerbside.sim.cli", "serial", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err


def test_serve_read_vanish_return_and_stop(tmp_path: Path) -> None:
    config_out = tmp_path / "edge.yaml"
    truth_out = tmp_path / "truth.json"
    with serving(
        "--sensors", "6", "--ports", "2", "--speed", "30", "--dir", str(tmp_path),
        "--config-out", str(config_out), "--truth-out", str(truth_out),
    ) as proc:  # fmt: skip
        assert proc.stdout is not None
        links = [Path(proc.stdout.readline().decode().strip()) for _ in range(2)]
        assert links == [tmp_path / "tty0", tmp_path / "tty1"]
        assert all(link.is_symlink() for link in links)
        config = load_edge_config(config_out)
        assert [p.port for p in config.serial] == [str(link) for link in links]
        ids = {f.split(b",")[1] for f in read_frames(links[1], 3)}
        assert ids <= {b"S-000004", b"S-000005", b"S-000006"}

        before = os.readlink(links[0])
        read_frames(links[0], 2)
        proc.send_signal(signal.SIGUSR1)
        wait_until(lambda: not links[0].exists(), 5, "the port vanished", every=0.02)
        wait_until(links[0].is_symlink, 5, "the port back under the same name")
        assert read_frames(links[0], 2)
        assert before.startswith("/dev/pts/")
    assert not links[0].exists()
    truth = load_truth(truth_out)
    assert truth.end > truth.start
    assert len(truth.sensors) == 6


def test_no_reader_never_blocks_the_simulation(tmp_path: Path) -> None:
    """Nobody reads the ptys: 100 sensors for 10 simulated minutes (far beyond any tty buffer)
    still finish, because the server drops what nobody takes."""
    truth_out = tmp_path / "truth.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "kerbside.sim.cli",
            "serial",
            "--sensors",
            "100",
            "--speed",
            "600",
            "--hours",
            "0.17",
            "--dir",
            str(tmp_path),
            "--truth-out",
            str(truth_out),
        ],
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.decode().split() == [str(tmp_path / "tty0"), str(tmp_path / "tty1")]
    truth = load_truth(truth_out)
    assert truth.end - truth.start == round(0.17 * 3_600_000)


def test_wait_for_reader_starts_the_street_when_the_port_is_opened(tmp_path: Path) -> None:
    """With --wait-for-reader nothing runs until a reader opens the port, however late: then the
    sensors power up (each sends its first frame at once) and the truth starts there."""
    truth_out = tmp_path / "truth.json"
    with serving(
        "--wait-for-reader", "--sensors", "8", "--dir", str(tmp_path), "--truth-out", str(truth_out)
    ) as proc:
        assert proc.stdout is not None
        link = Path(proc.stdout.readline().decode().strip())
        time.sleep(3)  # longer than an absent reader's lines are kept
        opened_ms = time.time_ns() // 1_000_000
        frames = read_frames(link, 4, timeout=3)  # the first keep-alive would be a minute away
        assert len({f.split(b",")[1] for f in frames}) >= 4
    truth = load_truth(truth_out)
    assert opened_ms - 50 <= truth.start <= opened_ms + 2000


def _serial(tmp_path: Path) -> list[str]:
    """A short street (one sensor, 36 simulated seconds in a tenth of a second)."""
    return [
        sys.executable, "-m", "kerbside.sim.cli", "serial", "--sensors", "1",
        "--speed", "600", "--hours", "0.01", "--dir", str(tmp_path),
    ]  # fmt: skip


def test_a_full_disk_under_stdout_is_one_line_and_exit_1(tmp_path: Path) -> None:
    """Whoever waits for the ports' names would never get them: nothing is served."""
    done = run_on_full_disk(_serial(tmp_path))
    assert done.returncode == 1
    assert done.stderr == "kerbside-sim: cannot write to stdout: No space left on device\n"
    assert not (tmp_path / "tty0").exists()


def test_a_reader_gone_away_is_no_error(tmp_path: Path) -> None:
    """``kerbside-sim serial ... | head -c0``: the street is served all the same, quietly."""
    code, err = run_with_reader_gone(_serial(tmp_path))
    assert code == 0
    assert err == ""
