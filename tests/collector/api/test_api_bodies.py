"""Bad bodies on every POST: a 4xx with a JSON body naming the field, and nothing written."""

from __future__ import annotations

from typing import Any

import pytest

from tests.collector.api.conftest import ApiServer
from tests.helpers import present

BAY = "CA-F-B00000"
RIGHT: dict[str, Any] = {
    "right_id": "p1",
    "kind": "payment",
    "bay_id": BAY,
    "start": "2026-11-26T08:00:00Z",
    "end": "2026-11-26T10:00:00Z",
}
SUSPENSION: dict[str, Any] = {
    "suspension_id": "s1",
    "bay_ids": [BAY, "CA-G-B00001"],
    "start": "2026-11-27T08:00:00Z",
    "end": "2026-11-27T10:00:00Z",
    "reason": "streetworks",
}
OFFICER: dict[str, Any] = {"officer": "CEO-1", "outcome": "pcn_issued", "note": "n"}


def _without(body: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k != key}


RIGHT_CASES = [
    ("missing right_id", _without(RIGHT, "right_id"), "body.right_id"),
    ("missing start", _without(RIGHT, "start"), "body.start"),
    ("missing kind", _without(RIGHT, "kind"), "body.kind"),
    ("neither bay nor zone", _without(RIGHT, "bay_id"), "body.zone_id"),
    ("both bay and zone", {**RIGHT, "zone_id": "CA-F"}, "body.zone_id"),
    ("wrong kind", {**RIGHT, "kind": "bribe"}, "body.kind"),
    ("start not a string", {**RIGHT, "start": 12}, "body.start"),
    ("start not an instant", {**RIGHT, "start": "tomorrow"}, "body.start"),
    ("start without zone", {**RIGHT, "start": "2026-11-26T08:00:00"}, "body.start"),
    ("end before start", {**RIGHT, "end": "2026-11-26T07:00:00Z"}, "body.end"),
    ("end equals start", {**RIGHT, "end": RIGHT["start"]}, "body.end"),
    ("too long", {**RIGHT, "end": "2028-01-01T00:00:00Z"}, "body.end"),
    ("unknown bay", {**RIGHT, "bay_id": "NOPE-1"}, "body.bay_id"),
    ("unknown zone", {**_without(RIGHT, "bay_id"), "zone_id": "ZZ"}, "body.zone_id"),
    ("bad id", {**RIGHT, "right_id": "a/b"}, "body.right_id"),
    ("extra field", {**RIGHT, "price": 3}, "body.price"),
    ("not an object", [RIGHT], "body"),
]
SUSPENSION_CASES = [
    ("missing bay_ids", _without(SUSPENSION, "bay_ids"), "body.bay_ids"),
    ("empty bay_ids", {**SUSPENSION, "bay_ids": []}, "body.bay_ids"),
    ("bay_ids not a list", {**SUSPENSION, "bay_ids": BAY}, "body.bay_ids"),
    ("one unknown bay", {**SUSPENSION, "bay_ids": [BAY, "NOPE-1"]}, "body.bay_ids.1"),
    ("end before start", {**SUSPENSION, "end": "2026-11-27T07:00:00Z"}, "body.end"),
    ("reason too long", {**SUSPENSION, "reason": "x" * 201}, "body.reason"),
    ("reason wrong type", {**SUSPENSION, "reason": 5}, "body.reason"),
]
OFFICER_CASES = [
    ("bad outcome", {**OFFICER, "outcome": "towed"}, "body.outcome"),
    ("officer wrong type", {**OFFICER, "officer": ["x"]}, "body.officer"),
    ("note too long", {**OFFICER, "note": "x" * 5000}, "body.note"),
]


def _post(api: ApiServer, role: str, path: str, body: Any) -> tuple[int, dict[str, Any]]:
    with api.client(role) as client:
        response = client.post(path, json=body)
    assert response.headers["content-type"].startswith("application/json")
    return response.status_code, response.json()


def _nothing_written(api: ApiServer) -> None:
    api.call(api.service.nothing_written)


@pytest.mark.parametrize(("case", "body", "field"), RIGHT_CASES, ids=[c[0] for c in RIGHT_CASES])
def test_bad_right(api: ApiServer, case: str, body: Any, field: str) -> None:
    code, answer = _post(api, "provider", "/api/v1/rights", body)
    assert code == 422, answer
    assert answer["field"] == field
    assert answer["detail"][0]["msg"]
    _nothing_written(api)


@pytest.mark.parametrize(
    ("case", "body", "field"), SUSPENSION_CASES, ids=[c[0] for c in SUSPENSION_CASES]
)
def test_bad_suspension(api: ApiServer, case: str, body: Any, field: str) -> None:
    code, answer = _post(api, "admin", "/api/v1/suspensions", body)
    assert code == 422, answer
    assert answer["field"] == field
    _nothing_written(api)


@pytest.mark.parametrize("action", ["ack", "resolve"])
@pytest.mark.parametrize(
    ("case", "body", "field"), OFFICER_CASES, ids=[c[0] for c in OFFICER_CASES]
)
def test_bad_officer_action(api: ApiServer, action: str, case: str, body: Any, field: str) -> None:
    alert = api.call(lambda: api.service.raise_alert(BAY))
    code, answer = _post(api, "officer", f"/api/v1/alerts/{alert['alert_id']}/{action}", body)
    assert code == 422, answer
    assert answer["field"] == field
    assert present(api.call(lambda: api.service.store.alert(alert["alert_id"])))["status"] == "open"
    _nothing_written(api)


@pytest.mark.parametrize("action", ["ack", "resolve"])
def test_the_officer_recorded_is_the_tokens_name_whatever_the_body_says(
    api: ApiServer, action: str
) -> None:
    alert = api.call(lambda: api.service.raise_alert(BAY))
    path = f"/api/v1/alerts/{alert['alert_id']}/{action}"
    code, answer = _post(api, "officer", path, {**OFFICER, "officer": "CEO-9999"})
    assert code == 200, answer
    assert [entry["officer"] for entry in answer["history"]] == ["officer-1"]
    stored = present(api.call(lambda: api.service.store.alert_with_history(alert["alert_id"])))
    assert [entry["officer"] for entry in stored[1]] == ["officer-1"]
    # and a body without a name is as good
    other = api.call(lambda: api.service.raise_alert("CA-G-B00001"))
    path = f"/api/v1/alerts/{other['alert_id']}/{action}"
    code, answer = _post(api, "officer", path, _without(OFFICER, "officer"))
    assert code == 200, answer
    assert answer["history"][0]["officer"] == "officer-1"


def test_resolve_needs_an_outcome_but_ack_does_not(api: ApiServer) -> None:
    alert = api.call(lambda: api.service.raise_alert(BAY))
    path = f"/api/v1/alerts/{alert['alert_id']}"
    code, answer = _post(api, "officer", path + "/resolve", {"officer": "CEO-1"})
    assert (code, answer["field"]) == (422, "body.outcome")
    code, answer = _post(api, "officer", path + "/ack", {"officer": "CEO-1"})
    assert code == 200
    assert answer["status"] == "acknowledged"


def test_acting_on_a_closed_alert_is_409(api: ApiServer) -> None:
    alert = api.call(lambda: api.service.raise_alert(BAY))
    path = f"/api/v1/alerts/{alert['alert_id']}"
    assert _post(api, "officer", path + "/resolve", OFFICER)[0] == 200
    code, answer = _post(api, "officer", path + "/ack", OFFICER)
    assert code == 409
    assert answer["field"] == "alert_id"
    code, answer = _post(api, "officer", "/api/v1/alerts/no-such/ack", OFFICER)
    assert (code, answer["field"]) == (404, "path.alert_id")


@pytest.mark.parametrize(
    ("role", "path"),
    [
        ("provider", "/api/v1/rights"),
        ("admin", "/api/v1/suspensions"),
        ("officer", "/api/v1/alerts/x/ack"),
    ],
)
def test_oversized_body_is_413_json(api: ApiServer, role: str, path: str) -> None:
    body = {**RIGHT, "note": "x" * 70_000}
    code, answer = _post(api, role, path, body)
    assert code == 413
    assert answer["field"] == "body"
    _nothing_written(api)


def test_not_json_at_all(api: ApiServer) -> None:
    with api.client("provider") as client:
        response = client.post(
            "/api/v1/rights", content=b"\xff{not json", headers={"content-type": "application/json"}
        )
    assert response.status_code in (400, 422)
    assert response.json()["field"].startswith("body")
    _nothing_written(api)


def test_good_right_is_normalised_and_replaced_by_id(api: ApiServer) -> None:
    code, answer = _post(api, "provider", "/api/v1/rights", RIGHT)
    assert code == 201
    assert answer["start"] == "2026-11-26T08:00:00.000Z"
    assert present(api.call(lambda: api.service.store.right("p1"))).body["type"] == "right"
    code, _ = _post(api, "provider", "/api/v1/rights", {**RIGHT, "end": "2026-11-26T12:00:00Z"})
    assert code == 201
    assert (
        present(api.call(lambda: api.service.store.right("p1"))).body["end"]
        == "2026-11-26T12:00:00.000Z"
    )
    with api.client("provider") as client:
        assert client.delete("/api/v1/rights/p1").status_code == 200
        gone = client.delete("/api/v1/rights/p1")
    assert gone.status_code == 404
    assert present(api.call(lambda: api.service.store.right("p1"))).cancelled
