"""A simulated street driven through the collector's own code into InfluxDB, on a simulated clock.

``kerbside-sim capture`` makes the street (capture + ground truth); the edge agent's parser,
detector and health builder turn the capture into the MQTT messages a gateway would publish, at
the instants it would publish them; the collector (``runtime.assemble``: its unit of work over
the core, rules, maintenance alerts and store) takes them one by one while a manual clock follows
those instants, and its time-series sink (``create_sink``: recorder, spool, writer thread) writes
to InfluxDB.
A second gateway with no sensors reports health, drops off (last will) and comes back, for the
uptime figures.
"""

from __future__ import annotations

import bisect
import functools
import itertools
import json
import re
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from kerbside.collector.config import CollectorConfig, InfluxConfig, StoreConfig
from kerbside.collector.link import Message
from kerbside.collector.runtime import Collector, SinkView, assemble
from kerbside.collector.store import Committed, Work
from kerbside.collector.store.sqlite import SqliteStore
from kerbside.collector.timeseries import SpoolWriter, TimeSeriesRecorder, create_sink
from kerbside.core.backoff import Backoff
from kerbside.core.instants import format_instant, parse_instant
from kerbside.core.site import load_site
from kerbside.edge.capture import BadCaptureLine, CaptureRecord, read_capture
from kerbside.edge.config import load_edge_config
from kerbside.edge.detector import Detector
from kerbside.edge.health import health_payloads, status_payload
from kerbside.edge.model import event_payload
from kerbside.edge.replay import replay_changes
from tests.helpers import FakeLink

MIN = 60_000
ROOT = "kerbside/v1"
AUX = "gw-aux-01"
AUX_BAY = "Z-SOUTH-AUX-001"
STREETS = ("Parkway", "Delancey Street", "Arlington Road")
KINDS = {"Parkway": "limited", "Delancey Street": "paid", "Arlington Road": "free"}
MAX_STAY_MIN = 30
GRACE_MIN = 10
OBSERVATION_MIN = 5
ALERT_DELAY_S = 15
LOW_BATTERY_MV = 3300
NETWORK_MS = 100


@dataclass
class Street:
    """Everything a test needs to know about the street that was driven."""

    workdir: Path
    truth: dict[str, Any]
    start: int
    end: int
    bays: dict[str, dict[str, str]]  # bay_id -> {zone_id, street, kind, sensor_id}
    aux_offline: tuple[int, int]  # will received, back online (status ts)
    health_times: list[int] = field(default_factory=list)
    submitted: int = 0
    store_path: Path | None = None
    config_path: Path | None = None


def make_capture(workdir: Path, sensors: int, hours: float, start: str, seed: int) -> Path:
    out = workdir / "sim"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "kerbside.sim.cli",
            "capture",
            "--scenario",
            "clean",
            "--seed",
            str(seed),
            "--sensors",
            str(sensors),
            "--hours",
            str(hours),
            "--start",
            start,
            str(out),
        ],
        check=True,
        capture_output=True,
    )
    return out


def write_site(workdir: Path, truth: dict[str, Any]) -> dict[str, dict[str, str]]:
    """Two zones (first and second half of the sensors), three streets of three kinds."""
    sensors = truth["sensors"]
    bays: dict[str, dict[str, str]] = {}
    lines = [
        "site: e2e-street",
        "timezone: Europe/London",
        f"defaults: {{grace_minutes: {GRACE_MIN}, observation_minutes: {OBSERVATION_MIN}}}",
        "zones:",
        "  - {id: Z-NORTH, name: North, controlled_hours: any}",
        "  - {id: Z-SOUTH, name: South, controlled_hours: any}",
        "bays:",
    ]
    for i, sensor in enumerate(sensors):
        zone = "Z-NORTH" if i < len(sensors) // 2 else "Z-SOUTH"
        street = STREETS[i % 3]
        kind = KINDS[street]
        bays[sensor["bay_id"]] = {
            "zone_id": zone,
            "street": street,
            "kind": kind,
            "sensor_id": sensor["sensor_id"],
        }
        extra = f", max_stay_minutes: {MAX_STAY_MIN}" if kind == "limited" else ""
        lines.append(
            f"  - {{id: {sensor['bay_id']}, zone: {zone}, street: {street}, kind: {kind}{extra},"
            f" sensor: {sensor['sensor_id']}, gateway: {truth['gateway_id']}}}"
        )
    # The second gateway serves a bay whose sensor is not fitted yet: the collector only
    # believes gateways the site gives bays to. It is no bay of the analysts' figures.
    lines.append(
        f"  - {{id: {AUX_BAY}, zone: Z-SOUTH, street: Parkway, kind: free, gateway: {AUX}}}"
    )
    (workdir / "site.yaml").write_text("\n".join(lines) + "\n")
    return bays


def gateway_messages(sim_dir: Path, start: int, end: int) -> Iterator[tuple[int, str, bytes]]:
    """(publish instant, topic, payload) of the simulated gateway, in order: its status, its
    events when the detector confirms them, its health every minute."""
    config = load_edge_config(sim_dir / "edge.yaml")
    gw = config.gateway_id
    detector = Detector(config.detector, config.bay_of_sensor)
    pending: list[tuple[int, str, bytes]] = [
        (
            start,
            f"{ROOT}/gw/{gw}/status",
            status_payload(gw, online=True, ts=start, version="e2e", clock_synced=True),
        ),
    ]
    next_health = start + MIN
    now = [start]

    def records() -> Iterator[CaptureRecord | BadCaptureLine]:
        nonlocal next_health
        for record in read_capture(sim_dir / "capture.jsonl"):
            if not isinstance(record, BadCaptureLine):
                while next_health <= record.t and next_health < end:
                    payloads = health_payloads(
                        gw,
                        ts=next_health,
                        uptime_s=(next_health - start) // 1000,
                        outbox_depth=0,
                        events_dropped=0,
                        unknown_sensors=detector.unknown_sensors,
                        ports=[],
                        bay_of_sensor=config.bay_of_sensor,
                        stats=detector.stats,
                    )
                    pending.extend((next_health, f"{ROOT}/gw/{gw}/health", p) for p in payloads)
                    next_health += MIN
                now[0] = record.t
            yield record

    changes = replay_changes(records(), config, detector=detector)
    for seq, change in enumerate(changes, start=1):
        body = event_payload(change, gw, "e2e", seq)
        pending.append((now[0], f"{ROOT}/gw/{gw}/events", json.dumps(body).encode()))
        yield from _drain(pending)
    yield from _drain(pending)


def _drain(pending: list[tuple[int, str, bytes]]) -> Iterator[tuple[int, str, bytes]]:
    yield from pending
    pending.clear()


def aux_messages(start: int, end: int, offline: tuple[int, int]) -> list[tuple[int, str, bytes]]:
    """A gateway without sensors: status, health every minute, a last will, back online."""
    out: list[tuple[int, str, bytes]] = []
    status = f"{ROOT}/gw/{AUX}/status"
    health = f"{ROOT}/gw/{AUX}/health"
    out.append(
        (
            start,
            status,
            status_payload(AUX, online=True, ts=start, version="e2e", clock_synced=True),
        )
    )
    t = start + MIN
    while t < end:
        if not offline[0] <= t < offline[1]:
            body = {
                "v": 1,
                "gateway_id": AUX,
                "ts": format_instant(t),
                "uptime_s": 1,
                "outbox_depth": 2,
                "events_dropped": 0,
                "unknown_sensors": 0,
                "ports": [],
                "sensors": [],
            }
            out.append((t, health, json.dumps(body).encode()))
        t += MIN
    # The will carries the ts of the connection that set it; the collector stamps its receipt.
    out.append(
        (
            offline[0],
            status,
            status_payload(AUX, online=False, ts=start, version="e2e", clock_synced=True),
        )
    )
    out.append(
        (
            offline[1],
            status,
            status_payload(AUX, online=True, ts=offline[1], version="e2e", clock_synced=True),
        )
    )
    return sorted(out, key=lambda m: m[0])


def merged(
    *streams: Iterator[tuple[int, str, bytes]] | list[tuple[int, str, bytes]],
) -> list[tuple[int, str, bytes]]:
    items = [m for stream in streams for m in stream]
    items.sort(key=lambda m: m[0])  # stable: each gateway's own order is kept
    return items


class ManualClock:
    def __init__(self, start: int) -> None:
        self.now = start

    def __call__(self) -> int:
        return self.now


def drive(
    street: Street,
    influx_url: str,
    database: str,
    messages: list[tuple[int, str, bytes]],
    *,
    until: int,
    on_message: Callable[[int], None] | None = None,
    influx: InfluxConfig | None = None,
) -> tuple[Collector, TimeSeriesRecorder]:
    """Feed ``messages`` to a collector whose sink writes to InfluxDB (v1 at
    ``influx_url``/``database`` unless ``influx`` is given); returns both (the writer is still
    running: the caller drains and closes it)."""
    workdir = street.workdir
    store_path = workdir / "collector.db"
    if influx is None:
        influx = InfluxConfig(
            url=influx_url, api="v1", database=database, batch_size=500, flush_interval_ms=50
        )
    config = CollectorConfig(
        site=workdir / "site.yaml",
        store=StoreConfig(path=store_path),
        influxdb=influx,
        http=None,
        alert_delay_s=ALERT_DELAY_S,
    )
    (workdir / "collector.yaml").write_text(
        f"site: site.yaml\nstore: {{path: collector.db}}\nalert_delay_s: {ALERT_DELAY_S}\n"
        f"influxdb: {{url: '{influx_url}', api: v1, database: {database}}}\nhttp: null\n"
    )
    street.store_path, street.config_path = store_path, workdir / "collector.yaml"
    clock = ManualClock(street.start)
    store = SqliteStore(store_path)
    # The street's hours take seconds here; an fsync per batch would take most of them.
    store._commits.execute("PRAGMA synchronous=OFF")
    recorder = create_sink(
        influx,
        SinkView(lambda: collector.queries, clock),
        store_path=store_path,
        delay_s=ALERT_DELAY_S,
        store=store,
    )
    recorder.writer.backoff = Backoff(0.05, 0.3)
    collector = assemble(
        config, load_site(config.site), store, FakeLink(), clock=clock, sink=recorder
    )
    service = collector.cycle
    recorder.writer.start()
    recorder.tick(clock.now)

    def step_to(t: int) -> None:
        while True:
            wake = service.next_wakeup()
            tick_at = recorder.next_tick_at()
            due = min(x for x in (wake, tick_at, t) if x is not None)
            clock.now = max(clock.now, due)
            if wake is not None and wake <= clock.now:
                service.tick()
            recorder.tick(clock.now)
            if due >= t:
                return

    # Messages published at the same instant (the two gateways' health) form one batch, as the
    # collector's batcher would take them.
    i = 0
    while i < len(messages) and messages[i][0] <= until:
        at = messages[i][0]
        batch = []
        while i < len(messages) and messages[i][0] == at:
            _, topic, payload = messages[i]
            batch.append(
                Message(
                    topic=topic,
                    payload=payload,
                    qos=1,
                    mid=i,
                    generation=0,
                    received=at + NETWORK_MS,
                )
            )
            i += 1
        step_to(at + NETWORK_MS)
        service.ingest(batch)
        if on_message is not None:
            on_message(i)
    step_to(until)
    return collector, recorder


def build_street(workdir: Path, sensors: int, hours: float, start: str, seed: int) -> Street:
    sim = make_capture(workdir, sensors, hours, start, seed)
    truth = json.loads((sim / "truth.json").read_text())
    bays = write_site(workdir, truth)
    t0, t1 = parse_instant(truth["start"]), parse_instant(truth["end"])
    offline = (t0 + 125 * MIN + 20_000, t0 + 150 * MIN + 20_000)
    return Street(workdir, truth, t0, t1, bays, offline)


# -- ground truth, computed without the edge or collector code ---------------------------------

_FRAME = re.compile(
    rb"\$(KBS1,([A-Za-z0-9_-]+),(\d+),([0-9A-Fa-f]{2}),(-?\d+),(-?\d+),(-?\d+),"
    rb"(\d+),(-?\d+))\*([0-9A-Fa-f]{2})\r\n"
)


@functools.cache
def battery_readings(sim_dir: Path) -> dict[str, list[tuple[int, int]]]:
    """(receive time, battery_mv) of every checksum-valid KBS1 frame, per sensor."""
    streams: dict[str, list[tuple[int, bytes]]] = {}
    for line in (sim_dir / "capture.jsonl").read_text().splitlines():
        record = json.loads(line)
        if "data" in record:
            streams.setdefault(record["src"], []).append(
                (parse_instant(record["t"]), record["data"].encode("latin-1"))
            )
    readings: dict[str, list[tuple[int, int]]] = {}
    for chunks in streams.values():
        buffer = b"".join(data for _, data in chunks)
        ends = list(itertools.accumulate(len(data) for _, data in chunks))  # chunk end offsets
        for match in _FRAME.finditer(buffer):
            body, checksum = match.group(1), int(match.group(10), 16)
            xor = 0
            for byte in body:
                xor ^= byte
            if xor != checksum:
                continue
            t = chunks[bisect.bisect_left(ends, match.end())][0]  # the chunk completing it
            readings.setdefault(match.group(2).decode(), []).append((t, int(match.group(8))))
    for values in readings.values():
        values.sort()
    return readings


def record_spooled(monkeypatch: pytest.MonkeyPatch) -> tuple[list[str], list[SpoolWriter]]:
    """Every line the collector spools from now on, with its commits (the store's) or through
    the writer's buffer; and each writer started."""
    spooled: list[str] = []
    writers: list[SpoolWriter] = []
    original_submit = SpoolWriter.submit
    original_start = SpoolWriter.start
    original_commit = SqliteStore.commit

    def recording_submit(self: SpoolWriter, lines: Sequence[str]) -> None:
        spooled.extend(lines)
        original_submit(self, lines)

    def recording_start(self: SpoolWriter) -> None:
        writers.append(self)
        original_start(self)

    def recording_commit(self: SqliteStore, work: Work) -> Committed:
        committed = original_commit(self, work)
        spooled.extend(work.lines)
        return committed

    monkeypatch.setattr(SpoolWriter, "submit", recording_submit)
    monkeypatch.setattr(SpoolWriter, "start", recording_start)
    monkeypatch.setattr(SqliteStore, "commit", recording_commit)
    return spooled, writers
