"""Schema-driven fuzzing of the OpenAPI document (schemathesis), once per role with a valid
token: whatever the generated request, the API never answers 5xx."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.core.result import Ok

from tests.collector.api.conftest import ROLES, ApiServer, token_of
from tests.collector.api.harness import T0

EXAMPLES_PER_OPERATION = 5
SKIP = {("GET", "/api/v1/alerts/stream")}  # never ends by design; tests/…/test_api_sse.py


@pytest.mark.parametrize("role", ROLES)
def test_no_server_errors(shared_api: ApiServer, role: str) -> None:
    spec = httpx.get(f"{shared_api.url}/openapi.json").json()
    schema = schemathesis.openapi.from_dict(spec)
    results = list(schema.get_all_operations())
    assert all(isinstance(r, Ok) for r in results), [r for r in results if not isinstance(r, Ok)]
    operations = [
        r.ok()
        for r in results
        if isinstance(r, Ok) and (r.ok().method.upper(), r.ok().path) not in SKIP
    ]
    assert len(operations) >= 18
    headers = {"Authorization": f"Bearer {token_of(role)}"}
    failures: list[str] = []
    seen: set[tuple[str, str, int]] = set()
    strategy = st.one_of(*[op.as_strategy() for op in operations])

    @settings(
        max_examples=EXAMPLES_PER_OPERATION * len(operations),
        deadline=None,
        suppress_health_check=list(HealthCheck),
        database=None,
    )
    @given(case=strategy)
    def run(case: Any) -> None:
        response = case.call(base_url=shared_api.url, headers=headers, timeout=10)
        seen.add((case.method, case.path, response.status_code // 100))
        if response.status_code >= 500:
            failures.append(f"{case.method} {case.formatted_path} -> {response.status_code}")

    run()
    # The documented examples too: they name bays of the site, so they reach the service.
    examples = {
        name: spec["components"]["schemas"][name]["examples"][0]
        for name in ("RightBody", "SuspensionBody", "AckBody", "ResolveBody")
    }
    # (after 10:00: the example right covers the bay from 08:00 to 10:00 on that day)
    harness = shared_api.service
    at = max(T0 + 3 * 3_600_000, harness.next_instant())
    alert = shared_api.call(lambda: harness.raise_alert("CA-F-PKW-001", at=at))
    with httpx.Client(base_url=shared_api.url, headers=headers) as client:
        for path, name in [
            ("/api/v1/rights", "RightBody"),
            ("/api/v1/suspensions", "SuspensionBody"),
            (f"/api/v1/alerts/{alert['alert_id']}/ack", "AckBody"),
            (f"/api/v1/alerts/{alert['alert_id']}/resolve", "ResolveBody"),
        ]:
            response = client.post(path, json=examples[name])
            seen.add(("POST", path, response.status_code // 100))
            assert response.status_code < 500, (path, response.text)
    assert failures == []
    assert {code for *_, code in seen} >= {2, 4}
