"""A hostile or broken gateway against the running collector (a process, on a private Mosquitto
with no size limit of its own): oversize payloads, another gateway's sensors, a ts in 2100, a
rejected event's retry, JSON nested to exhaust a parser. The collector keeps running, keeps
taking good messages and says what it refused."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from kerbside.core.instants import format_instant
from tests.helpers import Mosquitto, topic_root_for, wait_until
from tests.reliability.stack import Stack, Wire, event, health, now_ms

pytestmark = [pytest.mark.slow, pytest.mark.reliability]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    workdir = tmp_path_factory.mktemp("hostile-gateways")
    broker = Mosquitto(workdir / "mosquitto").start()
    collector = Stack(workdir / "collector", broker, topic_root_for("hostile-gateways"))
    try:
        yield collector.start()
    finally:
        collector.stop()
        broker.stop()


@pytest.fixture
def wire(stack: Stack, request: pytest.FixtureRequest) -> Iterator[Wire]:
    client = Wire(stack.broker.port, stack.topic_root, request.node.name[:40])
    yield client
    client.close()


def _bay(stack: Stack, bay: str) -> dict[str, object]:
    with stack.client("officer") as client:
        found: dict[str, object] = client.get(f"/api/v1/bays/{bay}").json()
    return found


def _dead(wire: Wire, reason: str) -> list[dict[str, object]]:
    return [d for d in wire.on("/deadletter") if d["reason"] == reason]


def test_oversize_payloads_are_dead_lettered_short_and_huge_ones_never_reach_it(
    stack: Stack, wire: Wire
) -> None:
    before = stack.rss_kib()
    big = b'{"v": 1, "pad": "' + b"x" * 199_970 + b'"}'
    huge = b"y" * (20 * 1024 * 1024)
    for payload in (big, big, huge, huge):
        wire.publish("gw/gw-1/events", payload)
    wire.publish("gw/gw-1/events", json.dumps(event("gw-1", 1, "B001", "occupied", now_ms())))
    wait_until(lambda: _bay(stack, "B001")["state"] == "occupied", 20)
    wait_until(lambda: len(_dead(wire, "too_large")) >= 2, 10)
    dead = _dead(wire, "too_large")
    assert [d["size"] for d in dead] == [len(big), len(big)]  # the 20 MB ones never came
    for letter in dead:
        assert letter["payload"] == big[:1024].decode()
    raw = [p for t, p in wire.seen if t.endswith("/deadletter")]
    assert max(map(len, raw)) < 1500
    # Before, each 50 MB event cost the collector its size several times over, for good.
    grown_mib = (stack.rss_kib() - before) / 1024
    assert grown_mib < 30, f"the collector grew by {grown_mib:.0f} MiB"
    assert stack.metric("kerbside_rejected_total", 'reason="too_large"') == 2


def test_health_for_another_gateways_or_invented_sensors_is_ignored_and_counted(
    stack: Stack, wire: Wire
) -> None:
    wire.publish("gw/gw-2/health", json.dumps(health("gw-2", [("S004", 3000)])))

    def low_battery() -> dict[str, str]:
        with stack.client("officer") as client:
            items = client.get("/api/v1/alerts", params={"kind": "low_battery"}).json()["items"]
        return {a["sensor_id"]: a["status"] for a in items}

    wait_until(lambda: low_battery() == {"S004": "open"}, 10)
    # gw-1 says gw-2's sensor has recovered and a thousand sensors it does not have are flat:
    # ten such messages of 50 KB each once made 14,500 alerts and sensor rows
    invented = [(f"X{i:05d}", 2000) for i in range(1000)]
    for _ in range(10):
        payload = json.dumps(health("gw-1", [("S004", 3600), *invented, ("S001", 3000)]))
        assert len(payload) > 40_000
        wire.publish("gw/gw-1/health", payload)
    wait_until(lambda: stack.metric("kerbside_foreign_sensors_total") == 10_010, 15)
    assert low_battery() == {"S004": "open", "S001": "open"}
    raised = [a for a in wire.on("/alerts/maintenance") if a["kind"] == "low_battery"]
    assert sorted(a["sensor_id"] for a in raised) == ["S001", "S004"]


def test_a_ts_in_2100_is_refused_and_the_bay_carries_on(stack: Stack, wire: Wire) -> None:
    """Such an event once froze its bay: every later event looked older than it."""
    future = event("gw-1", 2100, "B002", "occupied", now_ms(), ts="2100-01-01T00:00:00.000Z")
    wire.publish("gw/gw-1/events", json.dumps(future))
    now = now_ms()
    wire.publish("gw/gw-1/events", json.dumps(event("gw-1", 2101, "B002", "occupied", now)))
    wait_until(lambda: _bay(stack, "B002")["since"] == format_instant(now), 10)
    later = now_ms()
    wire.publish("gw/gw-1/events", json.dumps(event("gw-1", 2102, "B002", "vacant", later)))
    wait_until(lambda: _bay(stack, "B002")["state"] == "vacant", 10)
    assert [d["payload"] for d in _dead(wire, "ts_out_of_range")] == [json.dumps(future)]


def test_a_rejected_events_corrected_retry_is_taken(stack: Stack, wire: Wire) -> None:
    now = now_ms()
    wrong = event("gw-1", 13, "B003", "occupied", now, confirmed_ts="2100-01-01T00:00:00Z")
    wire.publish("gw/gw-1/events", json.dumps(wrong))
    wait_until(lambda: len(_dead(wire, "ts_out_of_range")) == 1, 10)
    right = event("gw-1", 13, "B003", "occupied", now)  # the same event_id, corrected
    wire.publish("gw/gw-1/events", json.dumps(right))
    wait_until(lambda: _bay(stack, "B003")["state"] == "occupied", 10)
    assert _dead(wire, "duplicate_conflict") == []


def test_json_nested_too_deep_is_refused_and_ingest_goes_on(stack: Stack, wire: Wire) -> None:
    """60,000 levels in 60 KB once raised RecursionError out of the batch (counted as
    internal_error, or worse: the batch failed again and again)."""
    wire.publish("gw/gw-1/events", b"[" * 60_000)
    deep = event("gw-1", 15, "B001", "vacant", now_ms(), extra=[[[[[[[[1]]]]]]]])
    wire.publish("gw/gw-1/events", json.dumps(deep))
    good = event("gw-1", 16, "B001", "vacant", now_ms())
    wire.publish("gw/gw-1/events", json.dumps(good))
    wait_until(lambda: _bay(stack, "B001")["state"] == "vacant", 10)
    wait_until(lambda: len(_dead(wire, "too_deep")) == 2, 10)
    assert stack.metric("kerbside_rejected_total", 'reason="internal_error"') == 0
    assert "RecursionError" not in stack.log.read_text()


def test_the_collector_said_each_thing_without_a_traceback(stack: Stack) -> None:
    """Last in the module: after everything above, one log, no traceback, still healthy."""
    text = stack.log.read_text()
    assert "Traceback" not in text, text[-3000:]
    with stack.client() as client:
        health = client.get("/healthz").json()
    assert health["store"] == "ok", health
    assert Path(stack.workdir / "collector.db").exists()
