"""The collector's commands as a program with stdout on a full disk (one line on stderr, exit 1,
no traceback) or closed (quiet); ``token add`` then stores no token."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from kerbside.collector.tokens import TokenHolder, hash_token, save_tokens
from tests.helpers import free_port, run_on_full_disk, run_with_reader_gone, write_collector_setup

pytestmark = pytest.mark.slow  # starts processes (brokers, programs, servers)

FULL = "kerbside-collector: cannot write to stdout: No space left on device\n"


def _setup(tmp_path: Path) -> Path:
    """A collector's config and site, and a tokens file holding one token (an analyst's)."""
    save_tokens(tmp_path / "tokens.yaml", [TokenHolder("an-1", "analyst", hash_token("kbs_x"))])
    return write_collector_setup(
        tmp_path, port=free_port(), topic_root="t", extra="tokens_file: tokens.yaml\n"
    )


COLLECTOR = [sys.executable, "-m", "kerbside.collector.cli"]


@pytest.mark.parametrize("command", [["check"], ["migrate"], ["token", "list"]])
def test_a_full_disk_under_stdout_is_one_line_and_exit_1(
    tmp_path: Path, command: list[str]
) -> None:
    done = run_on_full_disk([*COLLECTOR, *command, "--config", str(_setup(tmp_path))])
    assert (done.returncode, done.stderr) == (1, FULL)


def test_token_add_on_a_full_disk_stores_no_token(tmp_path: Path) -> None:
    """The token's only copy cannot be written: nothing is stored, and the name is still free."""
    config = _setup(tmp_path)
    before = (tmp_path / "tokens.yaml").read_text()
    done = run_on_full_disk(
        [*COLLECTOR, "token", "add", "pc-1", "--role", "officer", "--config", str(config)]
    )
    assert (done.returncode, done.stderr) == (1, FULL)
    assert (tmp_path / "tokens.yaml").read_text() == before


def test_a_reader_gone_away_is_no_error(tmp_path: Path) -> None:
    """``kerbside-collector check | head -c0``: quiet, and exit 0."""
    code, err = run_with_reader_gone([*COLLECTOR, "check", "--config", str(_setup(tmp_path))])
    assert code == 0
    assert err == ""
