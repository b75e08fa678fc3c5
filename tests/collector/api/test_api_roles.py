"""Every route, every role, and no token: 401 without a (known) token, 403 for a wrong role,
2xx for an allowed one; admin may do everything; the public routes need nothing."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.collector.api.conftest import ROLES, ApiServer, app_of
from tests.collector.api.harness import Harness

PUBLIC = frozenset({None, *ROLES})
ANY_ROLE = frozenset(ROLES)

# (method, path) -> roles allowed (admin is added below). The API contract, plus the page's
# session routes.
MATRIX: dict[tuple[str, str], frozenset[str | None]] = {
    ("GET", "/api/v1/bays"): frozenset({"officer", "analyst"}),
    ("GET", "/api/v1/bays/{bay_id}"): frozenset({"officer", "analyst"}),
    ("GET", "/api/v1/bays/{bay_id}/sessions"): frozenset({"analyst"}),
    ("GET", "/api/v1/zones"): frozenset({"officer", "analyst"}),
    ("GET", "/api/v1/alerts"): frozenset({"officer", "analyst"}),
    ("GET", "/api/v1/alerts/{alert_id}"): frozenset({"officer", "analyst"}),
    ("GET", "/api/v1/alerts/stream"): frozenset({"officer"}),
    ("POST", "/api/v1/alerts/{alert_id}/ack"): frozenset({"officer"}),
    ("POST", "/api/v1/alerts/{alert_id}/resolve"): frozenset({"officer"}),
    ("POST", "/api/v1/rights"): frozenset({"provider"}),
    ("DELETE", "/api/v1/rights/{right_id}"): frozenset({"provider"}),
    ("POST", "/api/v1/suspensions"): frozenset(),
    ("GET", "/api/v1/occupancy"): frozenset({"analyst"}),
    ("GET", "/api/v1/gateways"): frozenset({"analyst"}),
    ("GET", "/api/v1/opendata/parking-spots"): PUBLIC,
    ("GET", "/api/v1/opendata/parking-groups"): PUBLIC,
    ("GET", "/api/v1/opendata/on-street-parking"): PUBLIC,
    ("GET", "/api/v1/opendata/zone-occupancy"): PUBLIC,
    ("GET", "/healthz"): PUBLIC,
    ("GET", "/metrics"): PUBLIC,
    ("GET", "/officer"): PUBLIC,
    ("POST", "/api/v1/session"): frozenset({"officer"}),
    ("GET", "/api/v1/session"): ANY_ROLE,
    ("DELETE", "/api/v1/session"): PUBLIC,
    ("POST", "/api/v1/signin-links"): frozenset(),
}
# The page's session is an officer's only: not even an admin's token opens one.
NOT_ADMIN = frozenset({("POST", "/api/v1/session")})

BAY = "CA-F-B00000"
_counter = iter(range(1_000_000))


def _fresh_alert(api: ApiServer) -> str:
    n = next(_counter)
    record = api.call(lambda: api.service.raise_alert(BAY, "unpaid", at=1_800_000_000_000 + n))
    return str(record["alert_id"])


def _fresh_right(api: ApiServer) -> str:
    right_id = f"r-{next(_counter)}"

    async def add() -> None:
        await api.service.collector.commands.post_right(
            {
                "type": "right",
                "right_id": right_id,
                "kind": "payment",
                "bay_id": BAY,
                "start": "2026-11-26T08:00:00.000Z",
                "end": "2026-11-26T09:00:00.000Z",
            },
            "provider-1",  # the provider token's name (live.py): its own right
        )

    api.run(add())
    return right_id


def _request(api: ApiServer, client: httpx.Client, method: str, path: str) -> int:
    """Send a request that the route would accept from an allowed caller; return the status."""
    right = {
        "right_id": f"p-{next(_counter)}",
        "kind": "payment",
        "bay_id": BAY,
        "start": "2026-11-26T08:00:00Z",
        "end": "2026-11-26T10:00:00Z",
    }
    suspension = {
        "suspension_id": f"s-{next(_counter)}",
        "bay_ids": [BAY],
        "start": "2026-11-27T08:00:00Z",
        "end": "2026-11-27T10:00:00Z",
        "reason": "streetworks",
    }
    officer = {"officer": "CEO-1", "outcome": "pcn_issued", "note": "x"}
    calls: dict[tuple[str, str], Callable[[], httpx.Response]] = {
        ("GET", "/api/v1/bays/{bay_id}"): lambda: client.get(f"/api/v1/bays/{BAY}"),
        ("GET", "/api/v1/bays/{bay_id}/sessions"): lambda: client.get(
            f"/api/v1/bays/{BAY}/sessions"
        ),
        ("GET", "/api/v1/alerts/{alert_id}"): lambda: client.get(
            f"/api/v1/alerts/{_fresh_alert(api)}"
        ),
        ("POST", "/api/v1/alerts/{alert_id}/ack"): lambda: client.post(
            f"/api/v1/alerts/{_fresh_alert(api)}/ack", json=officer
        ),
        ("POST", "/api/v1/alerts/{alert_id}/resolve"): lambda: client.post(
            f"/api/v1/alerts/{_fresh_alert(api)}/resolve", json=officer
        ),
        ("POST", "/api/v1/rights"): lambda: client.post("/api/v1/rights", json=right),
        ("DELETE", "/api/v1/rights/{right_id}"): lambda: client.delete(
            f"/api/v1/rights/{_fresh_right(api)}"
        ),
        ("POST", "/api/v1/suspensions"): lambda: client.post(
            "/api/v1/suspensions", json=suspension
        ),
        ("POST", "/api/v1/signin-links"): lambda: client.post(
            "/api/v1/signin-links", json={"name": "officer-1"}
        ),
        ("GET", "/api/v1/occupancy"): lambda: client.get(
            "/api/v1/occupancy",
            params={
                "zone": "CA-F",
                "start": "2026-11-26T00:00:00Z",
                "end": "2026-11-27T00:00:00Z",
                "interval": "1h",
            },
        ),
    }
    if (method, path) == ("GET", "/api/v1/alerts/stream"):
        with client.stream("GET", path) as response:
            if response.status_code == 200:
                first = next(response.iter_lines())
                assert first.startswith("retry:")
            return response.status_code
    call = calls.get((method, path), lambda: client.request(method, path))
    return call().status_code


def test_matrix_covers_every_route(tmp_path: Path) -> None:
    paths = app_of(Harness(tmp_path)).openapi()["paths"]
    routes = {(method.upper(), path) for path, ops in paths.items() for method in ops}
    assert routes == set(MATRIX)


@pytest.mark.parametrize(("method", "path"), sorted(MATRIX))
def test_role_matrix(shared_api: ApiServer, method: str, path: str) -> None:
    admin = frozenset() if (method, path) in NOT_ADMIN else frozenset({"admin"})
    allowed = MATRIX[(method, path)] | admin
    outcomes: dict[str | None, int] = {}
    for role in (None, *ROLES):
        with shared_api.client(role) as client:
            outcomes[role] = _request(shared_api, client, method, path)
    for role, code in outcomes.items():
        if role in allowed:
            assert 200 <= code < 300, (role, code, outcomes)
        elif role is None:
            assert code == 401, (role, code, outcomes)
        else:
            assert code == 403, (role, code, outcomes)


def test_unknown_and_malformed_tokens_are_401(shared_api: ApiServer) -> None:
    headers: list[dict[str, Any]] = [
        {"Authorization": "Bearer not-a-token"},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"Authorization": "Bearer"},
        {"Cookie": "kerbside_token=forged"},
        {"Cookie": "kerbside_session=forged"},
    ]
    for h in headers:
        with httpx.Client(base_url=shared_api.url, headers=h) as c:
            r = c.get("/api/v1/bays")
        assert r.status_code == 401, h
        assert r.headers["www-authenticate"].startswith("Bearer")
        assert "detail" in r.json()
