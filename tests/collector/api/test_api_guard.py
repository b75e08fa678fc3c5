"""Clients that hold connections without asking, from real sockets: a request's head has a
deadline, at the connection limit the oldest half-sent request makes way (or a newcomer is told
503 when every connection is busy), and what was closed is logged once, not per connection."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from kerbside.collector.config import HttpConfig
from tests.collector.api.conftest import ApiServer, serving, token_of, write_tokens

HALF = b"GET /healthz HTTP/1.1\r\nHost: collector\r\nUser-Agent: slow"


def _half_sent(api: ApiServer, n: int) -> list[socket.socket]:
    out = []
    port = int(api.url.rsplit(":", 1)[1])
    for _ in range(n):
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        sock.sendall(HALF)
        out.append(sock)
    return out


def _closed_by_server(sock: socket.socket, within_s: float) -> bool:
    """True if the server closes ``sock`` (EOF or reset) within ``within_s``; what it sends
    before (the rest of an earlier response) is read and dropped."""
    deadline = time.monotonic() + within_s
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            if sock.recv(4096) == b"":
                return True
        except ConnectionResetError:
            return True
        except TimeoutError:
            return False
    return False


@pytest.fixture
def guarded(tmp_path: Path) -> Iterator[ApiServer]:
    http = HttpConfig(max_connections=20, header_timeout_s=1.0)
    with serving(write_tokens(tmp_path / "tokens.yaml"), http) as api:
        yield api


def test_a_request_head_not_sent_in_time_is_closed(guarded: ApiServer) -> None:
    quiet = _half_sent(guarded, 3)
    trickle = _half_sent(guarded, 1)[0]
    began = time.monotonic()
    # a byte every 0.2 s: uvicorn's keep-alive timer restarts at each byte, the deadline not
    while time.monotonic() - began < 1.6:
        try:
            trickle.sendall(b"x")
        except OSError:
            break
        time.sleep(0.2)  # the trickle's pace
    assert _closed_by_server(trickle, 1.0)
    trickle.close()
    assert all(_closed_by_server(sock, 1.0) for sock in quiet)
    # a keep-alive connection's next request has the same deadline
    port = int(guarded.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: collector\r\n\r\n")
        assert sock.recv(4096).startswith(b"HTTP/1.1 200")
        sock.sendall(HALF)
        assert _closed_by_server(sock, 3.0)
    for sock in quiet:
        sock.close()


def test_at_the_limit_the_oldest_half_sent_request_makes_way(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    http = HttpConfig(max_connections=20, header_timeout_s=60)
    with serving(write_tokens(tmp_path / "tokens.yaml"), http) as api:
        caplog.set_level(logging.WARNING, logger="kerbside.collector.api")
        socks = _half_sent(api, 50)
        with httpx.Client(base_url=api.url, timeout=5) as client:
            for _ in range(5):
                assert client.get("/healthz").status_code == 200
        closed = [_closed_by_server(sock, 0.5) for sock in socks]
        # the oldest went first; the newest 19 (the 20th place is the client's) still wait
        assert closed[:25] == [True] * 25
        assert closed[-15:] == [False] * 15
        for sock in socks:
            sock.close()
    said = [r for r in caplog.records if r.name == "kerbside.collector.api"]
    assert len(said) == 1, [r.getMessage() for r in said]
    assert "closed 1 still sending their request when 20 were open" in said[0].getMessage()


def test_when_every_connection_is_busy_a_newcomer_is_told_503(tmp_path: Path) -> None:
    http = HttpConfig(max_connections=5, header_timeout_s=60)
    with serving(write_tokens(tmp_path / "tokens.yaml"), http) as api:
        port = int(api.url.rsplit(":", 1)[1])
        streams = []
        for _ in range(5):  # officers' alert streams: busy for as long as they last
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            sock.sendall(
                b"GET /api/v1/alerts/stream HTTP/1.1\r\nHost: c\r\n"
                b"Authorization: Bearer " + token_of("officer").encode() + b"\r\n\r\n"
            )
            assert sock.recv(4096).startswith(b"HTTP/1.1 200")
            streams.append(sock)
        with socket.create_connection(("127.0.0.1", port), timeout=5) as newcomer:
            newcomer.sendall(b"GET /healthz HTTP/1.1\r\nHost: c\r\n\r\n")
            answer = newcomer.recv(4096)
        assert answer.startswith(b"HTTP/1.1 503")
        assert answer.endswith(b'"detail":"too many connections; try again soon"}')
        streams.pop().close()
        with httpx.Client(base_url=api.url, timeout=5) as client:
            deadline = time.monotonic() + 5
            while client.get("/healthz").status_code != 200:
                assert time.monotonic() < deadline
        for sock in streams:
            sock.close()
