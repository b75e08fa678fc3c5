from __future__ import annotations

from tests.collector.api.conftest import ApiServer


def test_bays_list_for_officer(api: ApiServer) -> None:
    with api.client("officer") as c:
        r = c.get("/api/v1/bays", params={"limit": 2})
    assert r.status_code == 200, r.text
    body = r.json()
    assert len(body["items"]) == 2
    assert body["next_cursor"] == "2"
