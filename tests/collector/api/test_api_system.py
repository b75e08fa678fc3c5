"""/healthz answers 503 when a part is down (/metrics: test_api_metrics.py); /officer and
/docs are served; every request body in the OpenAPI document has an example."""

from __future__ import annotations

import inspect
from pathlib import Path

import httpx
from fastapi.routing import APIRoute

from kerbside.collector.api.pagecache import PageCache
from kerbside.collector.api.routes import alerts, bays, occupancy, officer, opendata, rights
from kerbside.collector.api.routes import system as system_routes
from tests.collector.api.conftest import ApiServer, app_of
from tests.collector.api.harness import Harness


def test_healthz(api: ApiServer) -> None:
    with httpx.Client(base_url=api.url) as c:
        r = c.get("/healthz")
        assert r.status_code == 200
        assert r.json()["status"] == "ok"
        assert (r.json()["broker"], r.json()["sink"]) == ("ok", "disabled")
        api.call(lambda: setattr(api.service.link, "connected", False))
        r = c.get("/healthz")
        assert r.status_code == 503
        assert (r.json()["status"], r.json()["broker"]) == ("down", "down")
        api.call(lambda: setattr(api.service.link, "connected", True))
        assert c.get("/healthz").status_code == 200
        with_sink = api.fresh(sink=True)
        assert c.get("/healthz").json()["sink"] == "ok"
        with_sink.call(lambda: setattr(with_sink.service.sink, "well", False))
        assert c.get("/healthz").status_code == 503


def test_officer_shell_and_docs(api: ApiServer) -> None:
    with httpx.Client(base_url=api.url) as c:
        page = c.get("/officer")
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert "default-src 'self'" in page.headers["content-security-policy"]
        assert c.get("/docs").status_code == 200


def test_every_body_has_an_example(tmp_path: Path) -> None:
    spec = app_of(Harness(tmp_path)).openapi()
    schemas = spec["components"]["schemas"]
    bodies = []
    for ops in spec["paths"].values():
        for op in ops.values():
            content = op.get("requestBody", {}).get("content", {})
            for media in content.values():
                schema = media["schema"]
                refs = [s["$ref"] for s in schema.get("anyOf", [schema]) if "$ref" in s]
                assert len(refs) == 1, schema
                ref = refs[0].rsplit("/", 1)[1]
                bodies.append(ref)
                assert schemas[ref].get("examples"), ref
    assert sorted(set(bodies)) == [
        "AckBody",
        "ResolveBody",
        "RightBody",
        "SessionBody",
        "SignInLinkBody",
        "SuspensionBody",
    ]


def test_every_route_and_dependency_runs_on_the_loop() -> None:
    """A plain ``def`` would run in FastAPI's thread pool, beside the loop that owns the service."""

    def calls(dependant: object) -> list[object]:
        out = []
        for dep in getattr(dependant, "dependencies", []):
            if dep.call is not None:
                out.append(dep.call)
            out.extend(calls(dep))
        return out

    checked = 0
    for module in (alerts, bays, occupancy, officer, opendata, rights, system_routes):
        for route in module.router.routes:
            assert isinstance(route, APIRoute)
            assert inspect.iscoroutinefunction(route.endpoint), route.path
            for call in calls(route.dependant):
                assert inspect.iscoroutinefunction(call), (route.path, call)
            checked += 1
    assert checked >= 20


def test_page_cache_serves_one_build_within_its_ttl() -> None:
    builds: list[int] = []

    def build() -> bytes:
        builds.append(1)
        return str(len(builds)).encode()

    cache = PageCache(ttl_s=60)
    assert cache.get("k", build) == b"1"
    assert cache.get("k", build) == b"1"
    assert cache.get("other", build) == b"2"
    fresh = PageCache(ttl_s=0)
    assert fresh.get("k", build) == b"3"
    assert fresh.get("k", build) == b"4"
    small = PageCache(ttl_s=60, max_entries=2)
    for key in range(5):
        small.get(key, build)
    assert len(small._pages) <= 2
