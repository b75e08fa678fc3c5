"""/metrics parsed with prometheus-client's own parsers: names, types, labels, and counts that
move with what the collector does (events, rejections, an alert raised, acknowledged by the broker
and by an officer)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any, cast

import httpx
from fastapi import FastAPI
from prometheus_client.metrics_core import Metric
from prometheus_client.openmetrics.parser import text_string_to_metric_families as _openmetrics
from prometheus_client.parser import text_string_to_metric_families

from kerbside.core.instants import parse_instant
from tests.collector.api.conftest import ApiServer, app_of
from tests.collector.api.harness import Harness

T0 = parse_instant("2026-11-26T08:00:00Z")
BAYS = [f"CA-{'FG'[i % 2]}-B{i:05d}" for i in range(6)]

TYPES = {
    "kerbside_messages": "counter",
    "kerbside_events_in": "counter",
    "kerbside_duplicates": "counter",
    "kerbside_rejected": "counter",
    "kerbside_alerts": "counter",
    "kerbside_alerts_open": "gauge",
    "kerbside_rule_latency_seconds": "histogram",
    "kerbside_alert_publish_latency_seconds": "histogram",
    "kerbside_publish_pending": "gauge",
    "kerbside_journal_skipped": "gauge",
    "kerbside_api_sse_clients": "gauge",
    "kerbside_points_written": "counter",
    "kerbside_points_rejected": "counter",
    "kerbside_points_dropped": "counter",
    "kerbside_influxdb_write_errors": "counter",
    "kerbside_spool_depth": "gauge",
    "kerbside_influxdb_up": "gauge",
    # the process's and Python's, from the library's own collectors
    "process_cpu_seconds": "counter",
    "process_resident_memory_bytes": "gauge",
    "process_open_fds": "gauge",
    "process_start_time_seconds": "gauge",
    "python_info": "gauge",
    "python_gc_collections": "counter",
}

# prometheus_client's OpenMetrics parser is not annotated; typed as its text format parser is.
openmetrics_families = cast("Callable[[str], Iterator[Metric]]", _openmetrics)


def scrape(api: ApiServer) -> dict[str, Metric]:
    with httpx.Client(base_url=api.url) as c:
        r = c.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
    return {f.name: f for f in text_string_to_metric_families(r.text)}


def value(families: dict[str, Metric], name: str, **labels: str) -> float:
    """The one sample called ``name`` (a family's ``_total``, ``_count``... too) with ``labels``."""
    family = name.removesuffix("_total").removesuffix("_count").removesuffix("_sum")
    family = family.removesuffix("_bucket")
    found = [
        s.value
        for s in families[family].samples
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    ]
    assert len(found) == 1, (name, labels, families[family].samples)
    return found[0]


def ingest_and_raise(harness: Harness) -> dict[str, Any]:
    events = [harness.message(harness.event(b, "vacant", T0)) for b in BAYS * 2]
    bad = [harness.message(b"{not json"), harness.message(b"[1, 2")]
    bad.append(harness.message({**harness.event(BAYS[0], "vacant", T0), "bay_id": "NOPE"}))
    harness.clock.at_least(T0 + 60_000)
    harness.ingest(*events, *bad)
    return harness.raise_alert(BAYS[0], at=T0 + 10 * 60_000)  # unpaid, zone CA-F


def test_every_family_has_its_type_and_real_help(api: ApiServer) -> None:
    api = api.fresh(sink=True)
    families = scrape(api)
    for name, kind in TYPES.items():
        assert name in families, name
        assert families[name].type == kind, (name, families[name].type)
    for name, family in families.items():
        if name.startswith("kerbside_"):
            words = family.documentation.split()
            assert len(words) >= 3, (name, family.documentation)  # a sentence, not the name
            assert family.documentation.replace(" ", "_").lower() not in name
        if family.type == "counter":
            assert all(s.name in (name + "_total", name + "_created") for s in family.samples), (
                family.samples
            )


def test_counts_move_with_what_the_collector_does(api: ApiServer) -> None:
    api = api.fresh(sink=True)
    harness = api.service
    before = scrape(api)
    assert value(before, "kerbside_events_in_total") == 0
    assert value(before, "kerbside_rule_latency_seconds_count") == 0
    assert value(before, "kerbside_alert_publish_latency_seconds_count") == 0
    assert before["kerbside_alerts_open"].samples == []

    alert = api.call(lambda: ingest_and_raise(harness))
    after = scrape(api)
    # 12 events and 3 rejected messages; then the arrival that raise_alert reports
    assert value(after, "kerbside_events_in_total") == 13
    assert value(after, "kerbside_messages_total") == 12 + 3 + 1
    assert value(after, "kerbside_rejected_total", reason="not_json") == 2
    assert value(after, "kerbside_rejected_total", reason="unknown_bay") == 1
    assert value(after, "kerbside_alerts_total", kind="unpaid") == 1
    assert value(after, "kerbside_alerts_open", kind="unpaid", zone="CA-F", status="open") == 1
    # raised as soon as it was due (the harness's clock stood at due + alert_delay_s)
    assert value(after, "kerbside_rule_latency_seconds_count") == 1
    assert value(after, "kerbside_rule_latency_seconds_bucket", le="0.005") == 1
    assert value(after, "kerbside_influxdb_up") == 1  # the sink's figures, as it reports them

    # the broker acknowledges everything published so far: the alert change is timed
    published = api.call(lambda: len(harness.link.published))
    for token in range(1, published + 1):
        api.call(partial(harness.collector.outbox.published, token))
    acked = scrape(api)
    assert value(acked, "kerbside_alert_publish_latency_seconds_count") == 1
    assert value(acked, "kerbside_alert_publish_latency_seconds_bucket", le="+Inf") == 1
    assert value(acked, "kerbside_publish_pending") == 0

    api.run(harness.collector.commands.ack_alert(alert["alert_id"], "pc-1", None))
    acknowledged = scrape(api)
    labels = {"kind": "unpaid", "zone": "CA-F"}
    assert value(acknowledged, "kerbside_alerts_open", **labels, status="acknowledged") == 1
    assert [
        s for s in acknowledged["kerbside_alerts_open"].samples if s.labels["status"] == "open"
    ] == []


def test_process_metrics_are_this_processs(api: ApiServer) -> None:
    families = scrape(api)
    assert value(families, "process_resident_memory_bytes") > 10_000_000
    assert value(families, "process_cpu_seconds_total") > 0
    assert value(families, "process_open_fds") > 0


def test_openmetrics_when_the_scraper_asks_for_it(api: ApiServer) -> None:
    with httpx.Client(base_url=api.url) as c:
        r = c.get("/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"})
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/openmetrics-text")
    families = {f.name: f for f in openmetrics_families(r.text)}
    assert families["kerbside_events_in"].type == "counter"
    assert families["kerbside_rule_latency_seconds"].type == "histogram"


async def get_metrics(app: FastAPI) -> str:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://kerbside") as client:
        return (await client.get("/metrics")).text


def test_each_app_has_its_own_registry(tmp_path: Path) -> None:
    """Apps in one process (the tests make many) neither share nor clash over metrics: each has
    its own registry, process collector included."""
    first, second = Harness(tmp_path / "a"), Harness(tmp_path / "b")
    first.set_state(BAYS[0], "vacant", T0)
    counts = []
    for harness in (first, second):
        text = asyncio.run(get_metrics(app_of(harness)))
        families = {f.name: f for f in text_string_to_metric_families(text)}
        assert "process_cpu_seconds" in families
        counts.append(value(families, "kerbside_events_in_total"))
        harness.store.close()
    assert counts == [1, 0]
