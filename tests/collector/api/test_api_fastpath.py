"""GET /api/v1/bays answered by api/fastpath.py: the same answers as the FastAPI route."""

from __future__ import annotations

from typing import Any

import pytest

from kerbside.collector.api.fastpath import BaysFastPath, parse_query
from tests.collector.api.conftest import ApiServer, token_of


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"", (None, 100, None)),
        (b"limit=2", (None, 2, None)),
        (b"zone=Z1&limit=1000", ("Z1", 1000, None)),
        (b"cursor=abc%3D&zone=Z_2-x", ("Z_2-x", 100, "abc=")),
    ],
)
def test_plain_queries_are_parsed(raw: bytes, expected: tuple[Any, ...]) -> None:
    assert parse_query(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        b"limit=0",
        b"limit=1001",
        b"limit=010",
        b"limit=x",
        b"limit=2&limit=3",
        b"zone=",
        b"zone=a%20b",
        b"cursor=",
        b"cursor=" + b"c" * 201,
        b"other=1",
        b"limit",
    ],
)
def test_other_queries_are_left_to_fastapi(raw: bytes) -> None:
    assert parse_query(raw) is None


def _scope(headers: list[tuple[bytes, bytes]], query: bytes = b"") -> dict[str, Any]:
    return {
        "type": "http",
        "method": "GET",
        "path": "/api/v1/bays",
        "query_string": query,
        "headers": headers,
    }


def test_only_authorised_bearer_callers_take_the_fast_path(api: ApiServer) -> None:
    fast = BaysFastPath(api.app, fastapi_app=api.app)

    def bearer(role: str) -> list[tuple[bytes, bytes]]:
        return [(b"authorization", f"Bearer {token_of(role)}".encode())]

    for role in ("officer", "analyst", "admin"):
        assert api.call(lambda r=role: fast._page(_scope(bearer(r)))) is not None  # type: ignore[misc]
    for headers in (
        bearer("provider"),  # 403 from the route
        [(b"authorization", b"Bearer nope")],  # 401
        [(b"authorization", b"Basic abc")],  # 401
        [(b"cookie", f"kerbside_token={token_of('admin')}".encode())],  # the route reads cookies
        [*bearer("admin"), (b"content-length", b"999999")],  # 413 from BodyLimit
    ):
        assert api.call(lambda h=headers: fast._page(_scope(h))) is None  # type: ignore[misc]
    assert api.call(lambda: fast._page(_scope(bearer("admin"), b"cursor=garbage"))) is None


def test_fast_and_routed_answers_are_the_same(api: ApiServer) -> None:
    routed = api.client()
    with api.client("officer") as c, routed:
        assert routed.post(
            "/api/v1/session", headers={"Authorization": f"Bearer {token_of('officer')}"}
        ).is_success
        for params in ({}, {"limit": "2"}, {"zone": "CA-G", "limit": "1"}):
            fast, slow = (
                c.get("/api/v1/bays", params=params),
                routed.get("/api/v1/bays", params=params),
            )
            assert fast.status_code == slow.status_code == 200
            assert fast.content == slow.content
            assert fast.headers["content-type"] == slow.headers["content-type"]
            assert fast.json()["items"]
        first = c.get("/api/v1/bays", params={"limit": "1"}).json()
        cursor = first["next_cursor"]
        assert cursor is not None
        nxt = c.get("/api/v1/bays", params={"limit": "1", "cursor": cursor})
        assert nxt.status_code == 200
        assert nxt.json()["items"][0]["bay_id"] > first["items"][0]["bay_id"]
        for params in ({"limit": "0"}, {"cursor": "garbage"}, {"zone": "no zone"}):
            fast, slow = (
                c.get("/api/v1/bays", params=params),
                routed.get("/api/v1/bays", params=params),
            )
            assert fast.status_code == slow.status_code == 422
            assert fast.json() == slow.json()
