"""The collector's commands as a program with stdout on a full disk (one line on stderr, exit 1,
no traceback) or closed (quiet); ``token add`` then stores no token."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from kerbside.collector.tokens import TokenHolder, hash_token, save_tokens
from tests.helpers import buffered_env, free_port, write_collector_setup

pytestmark = pytest.mark.slow  # starts processes (brokers, programs, servers)

needs_dev_full = pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")

FULL = "kerbside-collector: cannot write to stdout: No space left on device\n"


def _setup(tmp_path: Path) -> Path:
    """A collector's config and site, and a tokens file holding one token (an analyst's)."""
    save_tokens(tmp_path / "tokens.yaml", [TokenHolder("an-1", "analyst", hash_token("kbs_x"))])
    return write_collector_setup(
        tmp_path, port=free_port(), topic_root="t", extra="tokens_file: tokens.yaml\n"
    )


def _on_full_disk(*args: str) -> subprocess.CompletedProcess[str]:
    with Path("/dev/full").open("w") as full:
        return subprocess.run(
            [sys.executable, "-m", "kerbside.collector.cli", *args],
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
            env=buffered_env(),
            check=False,
            timeout=60,
        )


@needs_dev_full
@pytest.mark.parametrize("command", [["check"], ["migrate"], ["token", "list"]])
def test_a_full_disk_under_stdout_is_one_line_and_exit_1(
    tmp_path: Path, command: list[str]
) -> None:
    done = _on_full_disk(*command, "--config", str(_setup(tmp_path)))
    assert (done.returncode, done.stderr) == (1, FULL)


@needs_dev_full
def test_token_add_on_a_full_disk_stores_no_token(tmp_path: Path) -> None:
    """The token's only copy cannot be written: nothing is stored, and the name is still free."""
    config = _setup(tmp_path)
    before = (tmp_path / "tokens.yaml").read_text()
    done = _on_full_disk("token", "add", "pc-1", "--role", "officer", "--config", str(config))
    assert (done.returncode, done.stderr) == (1, FULL)
    assert (tmp_path / "tokens.yaml").read_text() == before


def test_a_reader_gone_away_is_no_error(tmp_path: Path) -> None:
    """``kerbside-collector check | head -c0``: quiet, and exit 0."""
    command = [sys.executable, "-m", "kerbside.collector.cli", "check"]
    with subprocess.Popen(
        [*command, "--config", str(_setup(tmp_path))],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    ) as program:
        assert program.stdout is not None
        assert program.stderr is not None
        program.stdout.close()  # before it writes: its first write finds no reader
        err = program.stderr.read().decode()
        assert program.wait(timeout=60) == 0
    assert err == ""
