"""Rights belong to the provider token that created them: another provider can neither replace
(shorten) nor cancel them, so it cannot raise a false ``expired``; an admin may do both."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from kerbside.collector.tokens import TokenHolder, hash_token, save_tokens
from tests.collector.api.conftest import ApiServer, serving
from tests.collector.api.harness import T0

BAY = "CA-F-B00000"
HOUR = 3_600_000
RIGHT: dict[str, Any] = {
    "right_id": "pay-1",
    "kind": "payment",
    "bay_id": BAY,
    "start": "2026-11-26T08:00:00Z",
    "end": "2026-11-26T10:00:00Z",
}
HOLDERS = {"prov-a": "provider", "prov-b": "provider", "council": "admin"}


@pytest.fixture
def api(tmp_path: Path) -> Iterator[ApiServer]:
    tokens = tmp_path / "tokens.yaml"
    save_tokens(tokens, [TokenHolder(n, r, hash_token(f"tok-{n}")) for n, r in HOLDERS.items()])
    with serving(tokens) as server:
        yield server


def _as(api: ApiServer, name: str) -> httpx.Client:
    return httpx.Client(
        base_url=api.url, headers={"Authorization": f"Bearer tok-{name}"}, timeout=10
    )


def _stored(api: ApiServer) -> tuple[str, bool, str | None]:
    found = api.call(lambda: api.service.store.right("pay-1"))
    assert found is not None
    return found.body["end"], found.cancelled, found.owner


def test_another_provider_can_neither_shorten_nor_cancel_a_right(api: ApiServer) -> None:
    # A car parks at T0 and pays until 10:00; the unpaid alert never comes.
    api.call(lambda: api.service.set_state(BAY, "occupied", T0))
    with _as(api, "prov-a") as a, _as(api, "prov-b") as b:
        assert a.post("/api/v1/rights", json=RIGHT).status_code == 201
        shortened = b.post("/api/v1/rights", json={**RIGHT, "end": "2026-11-26T08:10:00Z"})
        cancelled = b.delete("/api/v1/rights/pay-1")
    for response in (shortened, cancelled):
        assert response.status_code == 403, response.text
        assert response.json()["field"] == "path.right_id"
    assert _stored(api) == ("2026-11-26T10:00:00.000Z", False, "prov-a")
    journal = api.call(lambda: [e.type for e in api.service.store.journal()])
    assert journal == ["occupancy", "right"]  # nothing of prov-b's was written
    # Hours later, no expired alert: the right still covers the stay.
    api.call(lambda: api.service.clock.at_least(T0 + HOUR + 20_000))
    api.call(api.service.collector.cycle.tick)
    alerts = api.call(lambda: api.service.store.alerts(bay_id=BAY))
    assert alerts == []


def test_the_owner_replaces_and_cancels_its_right_and_an_admin_may_too(api: ApiServer) -> None:
    with _as(api, "prov-a") as a, _as(api, "council") as admin:
        assert a.post("/api/v1/rights", json=RIGHT).status_code == 201
        longer = {**RIGHT, "end": "2026-11-26T11:00:00Z"}
        assert a.post("/api/v1/rights", json=longer).status_code == 201
        assert _stored(api) == ("2026-11-26T11:00:00.000Z", False, "prov-a")
        # an admin's replacement leaves the right its owner's
        assert admin.post("/api/v1/rights", json=RIGHT).status_code == 201
        assert _stored(api) == ("2026-11-26T10:00:00.000Z", False, "prov-a")
        assert a.delete("/api/v1/rights/pay-1").status_code == 200
        assert _stored(api)[1:] == (True, "prov-a")
        assert a.delete("/api/v1/rights/pay-1").status_code == 404
        # an admin's own right: no provider may touch it
        other = {**RIGHT, "right_id": "permit-9", "kind": "permit"}
        assert admin.post("/api/v1/rights", json=other).status_code == 201
        assert a.delete("/api/v1/rights/permit-9").status_code == 403
        assert admin.delete("/api/v1/rights/permit-9").status_code == 200
