"""The officers' sign-in: one-time links an admin makes, traded for a server-side session (a
random id in an HttpOnly cookie, never the token), an officer's only; sign-out, expiry and
revoking the token end it, and end its open alert stream; the cookie is Secure behind a trusted
TLS proxy and only then; /docs loads nothing from elsewhere."""

from __future__ import annotations

import json
import re
import sqlite3
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import httpx
import pytest
import segno

from kerbside.collector.config import HttpConfig
from kerbside.collector.tokens import TokenHolder, hash_token, load_tokens, save_tokens
from kerbside.core.instants import parse_instant
from tests.collector.api.conftest import ApiServer, serving, token_of, write_tokens
from tests.collector.api.test_api_sse import Stream
from tests.helpers import wait_until

LINK_RE = re.compile(r"^(https?://[^/]+)/officer#signin=([A-Za-z0-9_-]{20,})$")


def _server(tmp_path: Path, **http: Any) -> AbstractContextManager[ApiServer]:
    """A server of the test's own, with these http settings (its tokens file may change)."""
    return serving(write_tokens(tmp_path / "tokens.yaml"), HttpConfig(**http))


@pytest.fixture
def own(tmp_path: Path) -> Iterator[ApiServer]:
    with _server(tmp_path) as api:
        yield api


def _link(api: ApiServer, name: str = "officer-1", **body: Any) -> tuple[str, dict[str, Any]]:
    with api.client("admin") as c:
        r = c.post("/api/v1/signin-links", json={"name": name, **body})
    assert r.status_code == 201, r.text
    match = LINK_RE.match(r.json()["url"])
    assert match is not None, r.json()["url"]
    return match[2], r.json()


def _redeem(api: ApiServer, code: str, **headers: str) -> httpx.Response:
    with httpx.Client(base_url=api.url, headers=headers) as c:
        return c.post("/api/v1/session", json={"code": code})


def _cookie(response: httpx.Response) -> str:
    """``name=value`` of the session cookie a response set."""
    return response.headers["set-cookie"].split(";")[0]


def _as(api: ApiServer, cookie: str) -> httpx.Client:
    return httpx.Client(base_url=api.url, headers={"Cookie": cookie}, timeout=10)


def test_a_link_signs_an_officer_in_once(shared_api: ApiServer) -> None:
    code, made = _link(shared_api)
    assert made["name"] == "officer-1"
    assert made["url"] == f"{shared_api.url}/officer#signin={code}"
    # The QR code is the link itself.
    assert made["qr_svg"].startswith("<svg")
    qr = segno.make(made["url"], error="m")
    assert f'width="{(qr.symbol_size(scale=6, border=4))[0]}"' in made["qr_svg"]
    expires = parse_instant(made["expires_at"])
    assert 14 * 60_000 < expires - time.time() * 1000 <= 15 * 60_000

    r = _redeem(shared_api, code)
    assert r.status_code == 200, r.text
    assert (r.json()["name"], r.json()["role"]) == ("officer-1", "officer")
    cookie = r.headers["set-cookie"]
    assert cookie.startswith("kerbside_session=")
    assert "HttpOnly" in cookie
    assert "samesite=strict" in cookie.lower()
    assert "secure" not in cookie.lower()  # plain http here: a Secure cookie would be dropped
    assert re.search(r"Max-Age=43[12]\d\d", cookie)  # 12 hours, a shift
    session_id = _cookie(r).partition("=")[2]
    assert session_id not in {token_of(role) for role in ("officer", "admin")}
    with _as(shared_api, _cookie(r)) as c:
        assert c.get("/api/v1/alerts").status_code == 200
        who = c.get("/api/v1/session").json()
        assert (who["name"], who["expires_at"]) == ("officer-1", r.json()["expires_at"])

    again = _redeem(shared_api, code)
    assert again.status_code == 401
    assert "used or has expired" in again.json()["detail"]
    assert "set-cookie" not in again.headers


def test_the_store_keeps_no_secret(tmp_path: Path) -> None:
    with _server(tmp_path) as api:
        code, _ = _link(api)
        session_id = _cookie(_redeem(api, code)).partition("=")[2]
        _link(api)  # one left unused
    with sqlite3.connect(tmp_path / "signins.db") as db:
        dump = "\n".join(db.iterdump())
    assert "officer_sessions" in dump
    assert "signin_links" in dump
    assert code not in dump
    assert session_id not in dump
    assert token_of("officer") not in dump


def test_only_an_officer_gets_a_link_or_a_session(shared_api: ApiServer) -> None:
    with shared_api.client("admin") as c:
        for name in ("analyst-1", "nobody"):
            r = c.post("/api/v1/signin-links", json={"name": name})
            assert r.status_code == 422, r.text
            assert r.json()["field"] == "body.name"
    with shared_api.client("officer") as c:
        assert c.post("/api/v1/signin-links", json={"name": "officer-1"}).status_code == 403
    for role in ("analyst", "admin", "provider"):
        with shared_api.client(role) as c:
            assert c.post("/api/v1/session").status_code == 403, role
    # An officer's token typed on the phone opens a session too (the link is the easy way).
    with shared_api.client("officer") as c:
        r = c.post("/api/v1/session")
    assert r.status_code == 200
    # A session is an officer's: not an analyst's or a provider's routes.
    with _as(shared_api, _cookie(r)) as c:
        assert c.get("/api/v1/gateways").status_code == 403
        assert c.get("/api/v1/bays/CA-F-PKW-001/sessions").status_code == 403
        assert c.delete("/api/v1/rights/nope").status_code == 403
    # Nor does a session renew itself.
    with _as(shared_api, _cookie(r)) as c:
        assert c.post("/api/v1/session").status_code == 401


def test_sign_out_ends_the_session_on_the_server(shared_api: ApiServer) -> None:
    code, _ = _link(shared_api)
    cookie = _cookie(_redeem(shared_api, code))
    with _as(shared_api, cookie) as c:
        out = c.delete("/api/v1/session")
        assert out.status_code == 200
        assert "Max-Age=0" in out.headers["set-cookie"] or '=""' in out.headers["set-cookie"]
    # A copy of the cookie kept elsewhere opens nothing any more.
    with _as(shared_api, cookie) as c:
        r = c.get("/api/v1/alerts")
    assert r.status_code == 401
    assert "signed out" in r.json()["detail"]


def test_links_and_sessions_expire(tmp_path: Path) -> None:
    with _server(tmp_path, session_hours=1 / 3600) as api:  # a one-second shift
        code, made = _link(api, minutes=0.01)
        expires = parse_instant(made["expires_at"])
        wait_until(lambda: time.time() * 1000 > expires)
        assert _redeem(api, code).status_code == 401
        code, _ = _link(api)
        r = _redeem(api, code)
        assert r.status_code == 200
        assert "Max-Age=1;" in r.headers["set-cookie"]
        with _as(api, _cookie(r)) as c:
            wait_until(lambda: c.get("/api/v1/session").status_code == 401, timeout=10)


def test_revoking_a_token_ends_its_sessions_links_and_open_streams(own: ApiServer) -> None:
    code, _ = _link(own)
    cookie = _cookie(_redeem(own, code))
    unused, _ = _link(own)
    by_cookie = Stream(own, {"Cookie": cookie}, {})
    by_token = Stream(own, {"Authorization": f"Bearer {token_of('officer')}"}, {})
    assert (by_cookie.code, by_token.code) == (200, 200)
    try:
        tokens_file = own.app.state.tokens.path
        kept = [h for h in load_tokens(tokens_file) if h.name != "officer-1"]
        # Revoked, and a new token for the same officer: the old session stays ended.
        save_tokens(tokens_file, [*kept, TokenHolder("officer-1", "officer", hash_token("new"))])
        for s in (by_cookie, by_token):
            event = s.next(timeout=10)
            assert event["event"] == "signed-out"
    finally:
        by_cookie.close()
        by_token.close()
    with _as(own, cookie) as c:
        assert c.get("/api/v1/alerts").status_code == 401
    assert _redeem(own, unused).status_code == 401
    with httpx.Client(base_url=own.url, headers={"Authorization": "Bearer new"}) as c:
        assert c.post("/api/v1/session").status_code == 200


def test_a_stream_ends_when_its_session_is_signed_out(shared_api: ApiServer) -> None:
    code, _ = _link(shared_api)
    cookie = _cookie(_redeem(shared_api, code))
    stream = Stream(shared_api, {"Cookie": cookie}, {"since": 0})
    try:
        assert stream.code == 200
        record = shared_api.call(lambda: shared_api.service.raise_alert("CA-F-PKW-001"))
        assert json.loads(stream.next()["data"])["alert_id"] == record["alert_id"]
        with _as(shared_api, cookie) as c:
            c.delete("/api/v1/session")
        assert stream.next(timeout=10)["event"] == "signed-out"
    finally:
        stream.close()


@pytest.mark.parametrize(
    ("trusted", "secure"), [(["127.0.0.1"], True), (["10.0.0.0/8"], False), ([], False)]
)
def test_cookie_is_secure_behind_a_trusted_tls_proxy(
    tmp_path: Path, trusted: list[str], secure: bool
) -> None:
    with _server(tmp_path, trusted_proxies=trusted) as api:
        code, _ = _link(api)
        r = _redeem(api, code, **{"X-Forwarded-Proto": "https"})
        assert r.status_code == 200
        assert ("secure" in r.headers["set-cookie"].lower()) is secure
        headers = {"Authorization": f"Bearer {token_of('admin')}", "X-Forwarded-Proto": "https"}
        with httpx.Client(base_url=api.url, headers=headers) as c:
            url = c.post("/api/v1/signin-links", json={"name": "officer-1"}).json()["url"]
        assert url.startswith("https://" if secure else "http://")
        # Without the header, no proxy claims TLS: not Secure.
        code, _ = _link(api)
        assert "secure" not in _redeem(api, code).headers["set-cookie"].lower()


def test_links_use_the_public_url(tmp_path: Path) -> None:
    with _server(tmp_path, public_url="https://kerbside.example.gov.uk") as api:
        _, made = _link(api)
        assert made["url"].startswith("https://kerbside.example.gov.uk/officer#signin=")


def test_trusted_proxies_must_be_addresses() -> None:
    assert HttpConfig(trusted_proxies=["127.0.0.1", "10.1.2.3/8", "::1"]).trusted_proxies == [
        "127.0.0.1/32",
        "10.0.0.0/8",
        "::1/128",
    ]
    with pytest.raises(ValueError, match="not an IP address or network"):
        HttpConfig(trusted_proxies=["proxy.internal"])


def test_docs_load_nothing_from_elsewhere(shared_api: ApiServer) -> None:
    with httpx.Client(base_url=shared_api.url) as c:
        html = c.get("/docs").text
        assets = re.findall(r'(?:src|href)\s*=\s*[\'"]([^\'"]+)[\'"]', html)
        scripts = [a for a in assets if a.endswith((".js", ".css"))]
        assert len(scripts) >= 2, html
        for asset in assets:
            assert asset.startswith("/"), asset  # same origin
            assert c.get(asset).status_code == 200, asset
        assert "cdn." not in html
