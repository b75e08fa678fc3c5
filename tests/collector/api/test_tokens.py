"""``kerbside-collector token add|revoke|list``: the token is printed once, only its hash kept."""

from __future__ import annotations

import errno
import stat
import sys
from pathlib import Path

import pytest
import yaml

from kerbside.collector import tokens
from kerbside.collector.cli import main
from kerbside.collector.tokens import TokenRegistry, hash_token
from tests.collector.api.conftest import FailingStdout


def test_add_list_revoke(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "tokens.yaml"
    assert main(["token", "--tokens-file", str(path), "add", "pc-1234", "--role", "officer"]) == 0
    token = capsys.readouterr().out.strip()
    assert len(token) > 30
    saved = yaml.safe_load(path.read_text())
    assert saved == [{"name": "pc-1234", "role": "officer", "sha256": hash_token(token)}]
    assert token not in path.read_text()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600

    registry = TokenRegistry(path)
    holder = registry.lookup(token)
    assert holder is not None
    assert (holder.name, holder.role) == ("pc-1234", "officer")
    assert registry.lookup(token + "x") is None

    assert main(["token", "--tokens-file", str(path), "add", "pc-1234", "--role", "admin"]) == 1
    assert main(["token", "--tokens-file", str(path), "add", "ringgo", "--role", "provider"]) == 0
    capsys.readouterr()
    assert main(["token", "--tokens-file", str(path), "list"]) == 0
    listed = capsys.readouterr().out
    assert listed.splitlines() == ["pc-1234\tofficer", "ringgo\tprovider"]
    assert token not in listed

    assert main(["token", "--tokens-file", str(path), "revoke", "pc-1234"]) == 0
    assert main(["token", "--tokens-file", str(path), "revoke", "pc-1234"]) == 1
    assert [h["name"] for h in yaml.safe_load(path.read_text())] == ["ringgo"]


def test_registry_rereads_a_changed_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "tokens.yaml"
    registry = TokenRegistry(path)
    main(["token", "--tokens-file", str(path), "add", "a1", "--role", "analyst"])
    token = capsys.readouterr().out.strip()
    registry._checked = -1e9  # as if a second had passed
    assert registry.lookup(token) is not None
    main(["token", "--tokens-file", str(path), "revoke", "a1"])
    registry._checked = -1e9
    assert registry.lookup(token) is None


def test_config_tokens_file_and_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "collector.yaml"
    config.write_text(f"site: {tmp_path / 'site.yaml'}\ntokens_file: {tmp_path / 't.yaml'}\n")
    assert main(["token", "--config", str(config), "add", "x", "--role", "admin"]) == 0
    assert (tmp_path / "t.yaml").exists()
    assert main(["token", "list"]) == 2
    assert "--tokens-file" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text("- {name: x, role: wizard, sha256: abc}\n")
    assert main(["token", "--tokens-file", str(bad), "list"]) == 2
    assert "[0].role" in capsys.readouterr().err


def test_a_tokens_file_that_is_not_text_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    binary = tmp_path / "tokens.yaml"
    binary.write_bytes(b"\xd2\x80\xff tokens\n")
    assert main(["token", "--tokens-file", str(binary), "list"]) == 2
    assert capsys.readouterr().err == f"kerbside-collector: {binary}: not UTF-8 text\n"
    registry = TokenRegistry(binary)  # the API keeps running, and says why it has no tokens
    assert registry.error == f"{binary}: not UTF-8 text"


@pytest.mark.parametrize(
    ("error", "said"),
    [
        (errno.ENOSPC, "cannot write to stdout: No space left on device"),
        (errno.EPIPE, "token for pc-1 not stored: stdout was closed before it could be written"),
    ],
)
def test_a_token_that_cannot_be_printed_is_not_stored(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    error: int,
    said: str,
) -> None:
    """Its only copy would be lost (a full disk under stdout, a reader gone away): it is printed
    before its hash is stored, so nothing is stored, and the name is still free."""
    path = tmp_path / "tokens.yaml"
    assert main(["token", "--tokens-file", str(path), "add", "ringgo", "--role", "provider"]) == 0
    capsys.readouterr()
    stdout = FailingStdout(tmp_path / "stdout", error)
    monkeypatch.setattr(sys, "stdout", stdout)
    try:
        done = main(["token", "--tokens-file", str(path), "add", "pc-1", "--role", "officer"])
    finally:
        monkeypatch.undo()
        stdout.close()
    assert done == 1
    assert capsys.readouterr().err == f"kerbside-collector: {said}\n"
    token = stdout.tried.strip()
    assert token.startswith("kbs_")
    assert TokenRegistry(path).lookup(token) is None
    assert [h["name"] for h in yaml.safe_load(path.read_text())] == ["ringgo"]
    assert main(["token", "--tokens-file", str(path), "add", "pc-1", "--role", "officer"]) == 0


def test_a_token_printed_but_not_stored_is_said_to_be_not_valid(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "tokens.yaml"

    def full(*_: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(tokens, "save_tokens", full)
    assert main(["token", "--tokens-file", str(path), "add", "pc-1", "--role", "officer"]) == 1
    out, err = capsys.readouterr()
    assert out.startswith("kbs_")
    assert err == (
        f"kerbside-collector: {path}: cannot write: No space left on device;"
        " the token printed for pc-1 is not valid\n"
    )
    assert not path.exists()


def test_a_revoke_that_cannot_be_written_says_the_token_is_still_valid(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "tokens.yaml"
    assert main(["token", "--tokens-file", str(path), "add", "pc-1", "--role", "officer"]) == 0
    token = capsys.readouterr().out.strip()

    def full(*_: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(tokens, "save_tokens", full)
    assert main(["token", "--tokens-file", str(path), "revoke", "pc-1"]) == 1
    assert capsys.readouterr().err == (
        f"kerbside-collector: {path}: cannot write: No space left on device;"
        " pc-1's token is still valid\n"
    )
    holder = TokenRegistry(path).lookup(token)
    assert holder is not None
    assert holder.name == "pc-1"
