"""``/metrics``: the collector's numbers as Prometheus metrics, through prometheus-client.

The collector's core and shell only count (stored counters, ``telemetry.Telemetry``); this module
is where those numbers become metric families, read fresh from the read side at each scrape (a
custom collector, the library's way to export numbers held elsewhere). Each app has a registry of
its own, with the process and platform collectors beside ours.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from kerbside.collector.queries import Queries
from kerbside.collector.telemetry import LatencyCounts

# stored counter -> (metric name without _total, help)
_COUNTERS = {
    "messages_in": ("kerbside_messages", "MQTT messages received from gateways, of any kind"),
    "events_in": ("kerbside_events_in", "Occupancy events accepted and journaled"),
    "duplicates": ("kerbside_duplicates", "Occupancy events received again with the same body"),
    "foreign_sensors": (
        "kerbside_foreign_sensors",
        "Health entries ignored: sensors the site does not give the reporting gateway",
    ),
}
# the time-series sink's figures: (metric name without _total, help), counters then gauges
_SINK_COUNTERS = {
    "points_written": ("kerbside_points_written", "Time-series points InfluxDB accepted"),
    "points_rejected": ("kerbside_points_rejected", "Time-series points InfluxDB refused for good"),
    "points_dropped": (
        "kerbside_points_dropped",
        "Time-series points dropped because the spool was full",
    ),
    "write_errors": (
        "kerbside_influxdb_write_errors",
        "Failed writes to InfluxDB (outages, timeouts, server errors)",
    ),
}
_SINK_GAUGES = {
    "spool_depth": ("kerbside_spool_depth", "Time-series points waiting to be written to InfluxDB"),
    "influxdb_up": ("kerbside_influxdb_up", "1 if the last write to InfluxDB succeeded, else 0"),
}


class KerbsideMetrics(Collector):
    """Reads the app's current read side at each scrape (tests swap it under a running app)."""

    def __init__(self, queries: Callable[[], Queries], sse_clients: Callable[[], int]) -> None:
        self._queries = queries
        self._sse_clients = sse_clients

    def collect(self) -> Iterator[Metric]:
        numbers = self._queries().metrics()
        for key, (name, help_text) in _COUNTERS.items():
            yield CounterMetricFamily(name, help_text, value=numbers.get(key, 0.0))
        yield _labelled(
            CounterMetricFamily(
                "kerbside_rejected",
                "Messages rejected to the dead letter topic, by reason",
                labels=["reason"],
            ),
            numbers.get("rejected", {}),
        )
        yield _labelled(
            CounterMetricFamily(
                "kerbside_alerts",
                "Alerts raised (enforcement and maintenance), by kind",
                labels=["kind"],
            ),
            numbers.get("alerts", {}),
        )
        outstanding = GaugeMetricFamily(
            "kerbside_alerts_open",
            "Alerts not yet cleared or resolved, by kind, zone (empty for a gateway's) and status"
            " (open, acknowledged)",
            labels=["kind", "zone", "status"],
        )
        for (status, kind, zone), count in sorted(numbers.get("alerts_outstanding", {}).items()):
            outstanding.add_metric([kind, zone, status], count)
        yield outstanding
        yield _histogram(
            "kerbside_rule_latency_seconds",
            "How long after it fell due (its instant plus alert_delay_s) an enforcement alert was"
            " committed",
            numbers["rule_latency"],
        )
        yield _histogram(
            "kerbside_alert_publish_latency_seconds",
            "How long after its commit the broker acknowledged an alert change (QoS 1)",
            numbers["publish_latency"],
        )
        yield GaugeMetricFamily(
            "kerbside_publish_pending",
            "Alert changes and bay states committed and not yet acknowledged by the broker",
            value=numbers.get("publish_pending", 0.0),
        )
        yield GaugeMetricFamily(
            "kerbside_journal_skipped",
            "Journal records the last start could not read and skipped",
            value=numbers.get("journal_skipped", 0.0),
        )
        yield GaugeMetricFamily(
            "kerbside_api_sse_clients",
            "Clients connected to the alert stream",
            value=self._sse_clients(),
        )
        sink: Mapping[str, Any] | None = numbers.get("sink")
        if sink is not None:
            for key, (name, help_text) in _SINK_COUNTERS.items():
                if _is_number(sink.get(key)):
                    yield CounterMetricFamily(name, help_text, value=sink[key])
            for key, (name, help_text) in _SINK_GAUGES.items():
                if _is_number(sink.get(key)):
                    yield GaugeMetricFamily(name, help_text, value=sink[key])


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _labelled(family: CounterMetricFamily, values: Mapping[str, float]) -> CounterMetricFamily:
    for label, value in sorted(values.items()):
        family.add_metric([label], value)
    return family


def _histogram(name: str, help_text: str, counts: LatencyCounts) -> HistogramMetricFamily:
    buckets: list[tuple[str, float]] = [
        (repr(float(bound)), float(n))
        for bound, n in zip(counts.bounds, counts.cumulative, strict=True)
    ]
    buckets.append(("+Inf", float(counts.count)))
    return HistogramMetricFamily(name, help_text, buckets=buckets, sum_value=counts.sum)


def registry_for(
    queries: Callable[[], Queries], sse_clients: Callable[[], int]
) -> CollectorRegistry:
    """A registry of the app's own: ours, and the process's (CPU, memory, open files) and the
    Python platform's and garbage collector's (several apps in one process each get them)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(KerbsideMetrics(queries, sse_clients))
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    return registry


def exposition(registry: CollectorRegistry, accept: str | None) -> tuple[bytes, str]:
    """The registry in the format the scraper asked for (Prometheus text or OpenMetrics)."""
    encode, content_type = choose_encoder(accept or "")
    return encode(registry), content_type
