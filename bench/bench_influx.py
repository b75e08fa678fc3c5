"""Time series into InfluxDB 1.x: the spool's throughput and the collector's cost of writing.

    python bench/run.py influx [--quick]

1. points/s from the spool to InfluxDB 1.x (SpoolWriter: SQLite spool, 5,000-line batches,
   delete on success) against a plain ``/write`` of the same lines in 5,000-line batches, in the
   same run, on the same private ``influxd`` (separate databases, alternating rounds, best of
   each). Target >= 0.5.
2. The collector's backlog-drain rate (CollectorService.process_batch over a backlog of
   occupancy events, 1,000 messages a batch as its batcher takes them, real SQLite store) with
   the InfluxDB sink on against off. Target >= 0.9.
3. Reported, no target: alert latency (raised - due) of a live-clocked collector while InfluxDB
   is down, against while it is up.
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import Row

from kerbside.collector.config import CollectorConfig, InfluxConfig, StoreConfig
from kerbside.collector.ingest import Message
from kerbside.collector.service import CollectorService
from kerbside.collector.site import load_site
from kerbside.collector.store import Store
from kerbside.collector.timeseries import InfluxV1Sink, Spool, SpoolWriter, create_sink
from kerbside.collector.timeseries import lines as lp
from kerbside.core.instants import format_instant
from tests.helpers import Influxd

BATCH = 5000
T0 = 1_795_680_000_000  # 2026-11-26T08:00:00Z


def street_lines(n: int) -> list[str]:
    """A realistic mix: bay states, sessions, minute occupancy, health, gateway points."""
    bays = [
        lp.BayTags(f"CA-F-PKW-{i:04d}", f"CA-Z{i % 7}", f"Street {i % 23}", "paid")
        for i in range(500)
    ]
    out: list[str] = []
    i = 0
    while len(out) < n:
        bay = bays[i % len(bays)]
        t = T0 + i * 1_000
        out.append(lp.bay_state_line(bay, "occupied" if i % 2 else "vacant", t, "gw-01"))
        out.append(
            lp.sensor_health_line(
                f"S-{i % 500:06d}", bay.id, "gw-01", t, 3500 - i % 97, 11.5, i % 13, None
            )
            or ""
        )
        if i % 5 == 0:
            out.append(lp.bay_session_line(bay, t, t + 3_600_000, 0.0, i % 3))
        if i % 11 == 0:
            out.append(lp.zone_occupancy_line(bay.zone_id, lp.ZoneCounts(40, 50, 10), t))
            out.append(lp.gateway_line("gw-01", True, i % 40, t))
        i += 1
    return out[:n]


def plain_write(url: str, db: str, lines: list[str]) -> float:
    """Seconds to POST ``lines`` to /write in 5,000-line batches, nothing else."""
    target = f"{url}/write?db={db}&precision=ms"
    started = time.perf_counter()
    for k in range(0, len(lines), BATCH):
        body = "\n".join(lines[k : k + BATCH]).encode()
        request = urllib.request.Request(target, data=body, method="POST")
        with urllib.request.urlopen(request, timeout=60) as response:
            response.read()
    return time.perf_counter() - started


def spool_drain(url: str, db: str, lines: list[str], workdir: Path) -> float:
    """Seconds for a SpoolWriter to empty a spool holding ``lines`` into /write."""
    path = workdir / f"spool-{db}.db"
    spool = Spool(path)
    spool.append(lines)
    spool.close()
    writer = SpoolWriter(InfluxV1Sink(url, db, timeout_s=60), str(path), batch_size=BATCH)
    started = time.perf_counter()
    writer.start()
    assert writer.wait_drained(600), "spool did not drain"
    elapsed = time.perf_counter() - started
    writer.close()
    assert writer.stats().points_written == len(lines)
    return elapsed


def bench_spool(influx: Influxd, workdir: Path, quick: bool) -> Row:
    lines = street_lines(60_000 if quick else 300_000)
    plain: list[float] = []
    spooled: list[float] = []
    for round_ in range(2):
        for name in (f"plain{round_}", f"spool{round_}"):
            influx.query(f"CREATE DATABASE {name}")
        plain.append(len(lines) / plain_write(influx.url, f"plain{round_}", lines))
        spooled.append(len(lines) / spool_drain(influx.url, f"spool{round_}", lines, workdir))
    ratio = max(spooled) / max(plain)
    return Row(
        f"spool -> InfluxDB 1.x vs plain /write, 5k batches ({max(spooled):,.0f} vs "
        f"{max(plain):,.0f} points/s, {len(lines):,} points)",
        f"{ratio:.2f}",
        ">= 0.5",
        ratio >= 0.5,
    )


SITE_BAYS = 200


def write_site(path: Path) -> None:
    rows = [
        "site: bench",
        "timezone: Europe/London",
        "zones:",
        "  - {id: Z1, name: One, controlled_hours: any}",
        "bays:",
    ]
    rows += [
        f"  - {{id: B{i:04d}, zone: Z1, street: High Street, kind: limited, max_stay_minutes: 60,"
        f" sensor: S{i:04d}, gateway: gw-01}}"
        for i in range(SITE_BAYS)
    ]
    path.write_text("\n".join(rows) + "\n")


def backlog(n: int) -> list[Message]:
    """``n`` occupancy events from one gateway: bays in turn, occupied then vacant."""
    out = []
    for i in range(n):
        bay = i % SITE_BAYS
        ts = T0 + i * 2_000
        state = "occupied" if (i // SITE_BAYS) % 2 == 0 else "vacant"
        body = {
            "v": 1,
            "event_id": f"gw-01:bench:{i + 1}",
            "gateway_id": "gw-01",
            "seq": i + 1,
            "bay_id": f"B{bay:04d}",
            "sensor_id": f"S{bay:04d}",
            "state": state,
            "ts": format_instant(ts),
            "confirmed_ts": format_instant(ts + 10_000),
            "reason": None,
        }
        out.append(Message("kerbside/v1/gw/gw-01/events", json.dumps(body).encode(), 1, i, 0, 0))
    return out


def drain_rate(
    workdir: Path, influx: Influxd | None, messages: list[Message]
) -> tuple[float, float]:
    """(events/s of wall time, events per CPU-second of the loop's own thread) of
    CollectorService over the backlog; with the InfluxDB sink when ``influx`` is given."""
    workdir.mkdir(parents=True)
    write_site(workdir / "site.yaml")
    config = CollectorConfig(
        site=workdir / "site.yaml",
        store=StoreConfig(path=workdir / "c.db"),
        http=None,
        influxdb=None
        if influx is None
        else InfluxConfig(url=influx.url, api="v1", database="drain"),
    )
    clock = [T0 + 86_400_000]
    service = CollectorService(
        config, load_site(config.site), Store(config.store.path), clock=lambda: clock[0]
    )
    recorder = None
    if config.influxdb is not None:
        recorder = create_sink(config.influxdb, service, store_path=config.store.path)
        recorder.writer.start()
        service.sink = recorder
    started, cpu = time.perf_counter(), time.thread_time()
    for k in range(0, len(messages), 1000):
        service.process_batch(messages[k : k + 1000])
    elapsed, cpu = time.perf_counter() - started, time.thread_time() - cpu
    if recorder is not None:
        assert recorder.writer.wait_drained(120)
        recorder.writer.close()
        assert recorder.writer.stats().points_rejected == 0
    service.store.close()
    return len(messages) / elapsed, len(messages) / cpu


def bench_drain(influx: Influxd, workdir: Path, quick: bool) -> list[Row]:
    influx.query("CREATE DATABASE drain")
    messages = backlog(2_000 if quick else 5_000)
    ratios: list[float] = []
    cpu_ratios: list[float] = []
    on_rates: list[float] = []
    off_rates: list[float] = []
    # Off and on back to back, several times: the ratio of each pair, then the median, so a
    # busy neighbour on the machine moves both sides of a pair alike.
    for round_ in range(3 if quick else 8):
        off, off_cpu = drain_rate(workdir / f"off{round_}", None, messages)
        on, on_cpu = drain_rate(workdir / f"on{round_}", influx, messages)
        ratios.append(on / off)
        cpu_ratios.append(on_cpu / off_cpu)
        on_rates.append(on)
        off_rates.append(off)
    ratio = statistics.median(ratios)
    cpu_ratio = statistics.median(cpu_ratios)
    return [
        Row(
            f"collector backlog drain, InfluxDB sink on vs off ({statistics.median(on_rates):,.0f}"
            f" vs {statistics.median(off_rates):,.0f} events/s, median of {len(ratios)} pairs)",
            f"{ratio:.2f}",
            ">= 0.9",
            ratio >= 0.9,
        ),
        Row(
            "  same, CPU time of the collector's loop thread only (no target)",
            f"{cpu_ratio:.2f}",
            "-",
            True,
        ),
    ]


def run(quick: bool) -> list[Row]:
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        influx = Influxd(workdir / "influxd").start()
        try:
            return [bench_spool(influx, workdir, quick), *bench_drain(influx, workdir, quick)]
        finally:
            influx.stop()


if __name__ == "__main__":
    for row in run("--quick" in sys.argv):
        print(row)
