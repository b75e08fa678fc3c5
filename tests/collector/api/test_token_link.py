"""``kerbside-collector token link NAME``: a one-time sign-in link written into the collector's
store (which the API reads), printed with its QR code; ``token revoke`` ends what it opened."""

from __future__ import annotations

import errno
import re
import sys
from pathlib import Path

import httpx
import pytest
import segno

from kerbside.collector.cli import main
from kerbside.collector.config import load_config
from kerbside.collector.signin import digest
from kerbside.collector.store.opening import open_store
from tests.collector.api.conftest import FailingStdout, serving, write_tokens

URL_RE = re.compile(r"^https://kerbside\.example/officer#signin=([A-Za-z0-9_-]{20,})$")


@pytest.fixture
def setup(tmp_path: Path) -> Path:
    """A collector config whose store is where ``serve`` keeps the sessions, and its tokens."""
    write_tokens(tmp_path / "tokens.yaml")
    config = tmp_path / "collector.yaml"
    config.write_text(
        "site: site.yaml\nstore: {path: signins.db}\ntokens_file: tokens.yaml\n"
        "http: {public_url: 'https://kerbside.example'}\n"
    )
    return config


def test_link_is_printed_with_its_qr_code_and_signs_in_once(
    setup: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    svg = setup.parent / "qr.svg"
    assert main(["token", "link", "officer-1", "--config", str(setup), "--svg", str(svg)]) == 0
    out, err = capsys.readouterr()
    url = out.strip()
    match = URL_RE.match(url)
    assert match is not None, out
    # The terminal shows the same link as a QR code (segno's compact form), then what it is.
    qr = segno.make(url, error="m")
    assert "█" in err
    assert len(err.splitlines()[0]) == qr.symbol_size(border=4)[0]
    assert "one-time sign-in link for officer-1" in err
    assert svg.read_text().startswith("<svg")

    with serving(setup.parent / "tokens.yaml") as api:
        with httpx.Client(base_url=api.url) as c:
            first = c.post("/api/v1/session", json={"code": match[1]})
            again = c.post("/api/v1/session", json={"code": match[1]})
        assert first.status_code == 200
        assert first.json()["name"] == "officer-1"
        assert again.status_code == 401


def test_revoke_ends_the_officers_sessions_in_the_store(
    setup: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["token", "link", "officer-1", "--config", str(setup), "--no-qr"]) == 0
    code = capsys.readouterr().out.strip().rpartition("=")[2]
    with serving(setup.parent / "tokens.yaml") as api:
        with httpx.Client(base_url=api.url) as c:
            cookie = c.post("/api/v1/session", json={"code": code}).headers["set-cookie"]
        assert main(["token", "link", "officer-1", "--config", str(setup), "--no-qr"]) == 0
        unused = capsys.readouterr().out.strip().rpartition("=")[2]
        assert main(["token", "revoke", "officer-1", "--config", str(setup)]) == 0
        assert "ended 2 sign-in(s) of officer-1" in capsys.readouterr().err
        session = {"Cookie": cookie.split(";")[0]}
        with httpx.Client(base_url=api.url, headers=session) as c:
            assert c.get("/api/v1/alerts").status_code == 401
            assert c.post("/api/v1/session", json={"code": unused}).status_code == 401


def test_link_errors_say_what_to_do(setup: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["token", "link", "nobody", "--config", str(setup)]) == 1
    err = capsys.readouterr().err
    assert "no token named nobody" in err
    assert "token add nobody --role officer" in err
    assert main(["token", "link", "analyst-1", "--config", str(setup)]) == 1
    assert "analyst-1 is not an officer" in capsys.readouterr().err
    assert main(["token", "link", "officer-1", "--config", str(setup), "--minutes", "0"]) == 2
    assert main(["token", "link", "officer-1", "--tokens-file", "t.yaml"]) == 2
    assert "give --config" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("error", "said"),
    [
        (errno.ENOSPC, "cannot write to stdout: No space left on device"),
        (
            errno.EPIPE,
            "token link officer-1: no link made: stdout was closed before it could be written",
        ),
    ],
)
def test_a_link_that_cannot_be_printed_is_taken_back(
    setup: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    error: int,
    said: str,
) -> None:
    """stdout holds the link's only copy: one not written there does not stay in the store."""
    stdout = FailingStdout(setup.parent / "stdout", error)
    monkeypatch.setattr(sys, "stdout", stdout)
    try:
        done = main(["token", "link", "officer-1", "--config", str(setup)])
    finally:
        monkeypatch.undo()
        stdout.close()
    assert done == 1
    assert capsys.readouterr().err == f"kerbside-collector: {said}\n"  # and no QR code
    match = URL_RE.match(stdout.tried.strip())
    assert match is not None, stdout.tried
    store = open_store(load_config(str(setup)).store)
    try:
        assert store.take_signin_link(digest(match[1])) is None
    finally:
        store.close()
