"""Time series into InfluxDB 1.x: the spool's throughput and the collector's cost of writing.

    python bench/run.py influx [--quick]

1. points/s from the spool to InfluxDB 1.x (SpoolWriter: SQLite spool, 5,000-line batches,
   delete on success) against a plain ``/write`` of the same lines in 5,000-line batches, in the
   same run, on the same private ``influxd`` (separate databases, alternating rounds, best of
   each). Target >= 0.5.
2. The whole collector's backlog-drain rate (``runtime.serve`` in-process: MQTT link, batcher,
   rules, SQLite store; events queued at a private Mosquitto while it was down) with the
   InfluxDB sink on against off, median of back-to-back pairs. Target >= 0.9.
3. Alert latency p99 ((due + alert_delay_s) to the alert on MQTT) of the live collector while
   events flow and InfluxDB is stopped half way: target <= 1 s (the collector's own target),
   with the spool taking the points meanwhile.
"""

from __future__ import annotations

import asyncio
import json
import logging
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import BenchError, Row, WaitTimeoutError, attempt, wait_until

from kerbside.collector.config import load_config
from kerbside.collector.runtime import Collector, serve
from kerbside.collector.timeseries import InfluxV1Sink, Spool, SpoolWriter
from kerbside.collector.timeseries import lines as lp
from kerbside.core.instants import format_instant, parse_instant
from kerbside.core.site import load_site
from tests.helpers import Influxd, Mosquitto, write_collector_setup

logging.getLogger("kerbside").setLevel(logging.ERROR)

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
    if not writer.wait_drained(600):
        raise WaitTimeoutError(f"the spool of {len(lines)} points to drain", 600)
    elapsed = time.perf_counter() - started
    writer.close()
    written = writer.stats().points_written
    if written != len(lines):
        raise BenchError(f"the spool wrote {written} of {len(lines)} points")
    return elapsed


def bench_spool(influx: Influxd, workdir: Path, quick: bool) -> Row:
    lines = street_lines(60_000 if quick else 300_000)
    plain: list[float] = []
    spooled: list[float] = []
    for round_ in range(2):
        for name in (f"plain{round_}", f"spool{round_}"):
            influx.query(f"CREATE DATABASE {name}")
        # Alternate which goes first, so neither always meets a warmer server.
        for which in ("plain", "spool") if round_ % 2 == 0 else ("spool", "plain"):
            if which == "plain":
                plain.append(len(lines) / plain_write(influx.url, f"plain{round_}", lines))
            else:
                seconds = spool_drain(influx.url, f"spool{round_}", lines, workdir)
                spooled.append(len(lines) / seconds)
    ratio = max(spooled) / max(plain)
    return Row(
        f"spool -> InfluxDB 1.x vs plain /write, 5k batches ({max(spooled):,.0f} vs "
        f"{max(plain):,.0f} points/s, {len(lines):,} points)",
        f"{ratio:.2f}",
        ">= 0.5",
        ratio >= 0.5,
    )


class LiveCollector:
    """``kerbside.collector.runtime.serve`` (the whole collector: MQTT link, batcher, rules,
    store, sink) on its own thread and event loop, stopped on request."""

    def __init__(self, config_path: Path) -> None:
        self.config = load_config(config_path)
        self.site = load_site(self.config.site)
        self.services: list[Collector] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> Collector:
        ready = threading.Event()

        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            started = asyncio.Event()
            task = asyncio.create_task(
                serve(
                    self.config,
                    self.site,
                    started=started,
                    stop=self._stop,
                    collector_out=self.services,
                )
            )
            await started.wait()
            ready.set()
            await task

        thread = threading.Thread(target=asyncio.run, args=(main(),), daemon=True)
        self._thread = thread
        thread.start()
        wait_until(
            "the collector to start",
            lambda: ready.is_set() or not thread.is_alive(),
            60,
        )
        if not ready.is_set():
            raise BenchError("the collector's thread ended before it started")
        return self.services[-1]

    def stop(self) -> None:
        assert self._loop is not None
        assert self._stop is not None
        thread = self._thread
        assert thread is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        wait_until("the collector to stop", lambda: not thread.is_alive(), 60)


def wait_connected(service: Collector) -> None:
    wait_until(
        "the collector to connect to the broker",
        lambda: service.link.connected,
        30,
        interval_s=0.02,
    )
    # Its SUBSCRIBE goes right after the CONNACK, and nothing tells us when the SUBACK is back:
    # a pause. Should it ever be too short, events published meanwhile never reach it and the
    # wait that counts them (the drain, the alerts) fails loudly.
    time.sleep(0.5)


def event(i: int, bay: int, state: str, ts: int, epoch: str = "bench") -> bytes:
    body = {
        "v": 1,
        "event_id": f"gw-1:{epoch}:{i}",
        "gateway_id": "gw-1",
        "seq": i,
        "bay_id": f"B{bay:03d}",
        "sensor_id": f"S{bay:03d}",
        "state": state,
        "ts": format_instant(ts),
        "confirmed_ts": format_instant(ts + 10_000),
        "reason": None,
    }
    return json.dumps(body).encode()


def publisher(port: int) -> mqtt.Client:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-gw-{time.time_ns()}")
    client.connect("127.0.0.1", port)
    client.loop_start()
    return client


def setup(workdir: Path, broker: Mosquitto, bays: int, influx: Influxd | None) -> Path:
    extra = ""
    if influx is not None:
        extra = (
            f"influxdb: {{url: '{influx.url}', api: v1, database: live, flush_interval_ms: 200}}\n"
        )
    return write_collector_setup(
        workdir, port=broker.port, topic_root="bench", bays=bays, alert_delay_s=1.0, extra=extra
    )


def drain_rate(workdir: Path, broker: Mosquitto, influx: Influxd | None, n: int) -> float:
    """Events/s of the whole collector draining ``n`` events queued at the broker meanwhile it
    was down (its persistent session), with or without the InfluxDB sink, from the first event
    it takes to the last."""
    collector = LiveCollector(setup(workdir, broker, 200, influx))
    service = collector.start()  # once, so the broker keeps a session with its subscription
    wait_connected(service)
    collector.stop()
    client = publisher(broker.port)
    base = time.time_ns() // 1_000_000 - 2 * n * 1000
    infos = [
        client.publish(
            "bench/gw/gw-1/events",
            event(
                i + 1, i % 200 + 1, "occupied" if (i // 200) % 2 == 0 else "vacant", base + i * 1000
            ),
            qos=1,
        )
        for i in range(n)
    ]
    wait_until(
        f"the broker to acknowledge {n} events",
        lambda: all(info.is_published() for info in infos),
        60,
    )
    client.loop_stop()
    client.disconnect()
    collector = LiveCollector(setup(workdir, broker, 200, influx))
    service = collector.start()

    # From its first event taken to its last: the start-up (the same with and without the
    # sink) is left out, or it would pull the ratio towards 1.
    def taken() -> int:
        return service.telemetry.counters.get("events_in", 0)

    wait_until("the collector to take its first event", lambda: taken() >= 1, 60, interval_s=0.005)
    started = time.perf_counter()
    first = taken()
    wait_until(
        f"the collector to take {n} events from the broker",
        lambda: taken() >= n,
        300,
        detail=lambda: f"{taken()} taken",
        interval_s=0.005,
    )
    elapsed = time.perf_counter() - started
    collector.stop()
    return (n - first) / elapsed


def bench_drain(influx: Influxd, broker: Mosquitto, workdir: Path, quick: bool) -> Row:
    influx.query("CREATE DATABASE live")
    n = 3_000 if quick else 10_000
    ratios: list[float] = []
    on_rates: list[float] = []
    off_rates: list[float] = []
    # Off and on back to back, several times, alternating which goes first: the median of the
    # pairs' ratios, so a busy neighbour on the machine moves both sides of a pair alike.
    for round_ in range(2 if quick else 6):
        if round_ % 2 == 0:
            off = drain_rate(workdir / f"off{round_}", broker, None, n)
            on = drain_rate(workdir / f"on{round_}", broker, influx, n)
        else:
            on = drain_rate(workdir / f"on{round_}", broker, influx, n)
            off = drain_rate(workdir / f"off{round_}", broker, None, n)
        ratios.append(on / off)
        on_rates.append(on)
        off_rates.append(off)
    ratio = statistics.median(ratios)
    return Row(
        f"collector backlog drain ({n:,} events at the broker), InfluxDB sink on vs off "
        f"(median {statistics.median(on_rates):,.0f} vs {statistics.median(off_rates):,.0f} "
        "events/s)",
        f"{ratio:.2f}",
        ">= 0.9",
        ratio >= 0.9,
    )


ALERTS_PER_S = 20
REUSE_S = 64  # a backdated arrival must be later than the bay's last departure


def latencies(
    workdir: Path,
    broker: Mosquitto,
    influx: Influxd,
    seconds: float,
    rate: float,
    with_sink: bool = True,
) -> tuple[list[float], list[float], int, float]:
    """Alert latency (MQTT receipt - (due + alert_delay_s)) of a live collector while events
    flow at ``rate``/s, with InfluxDB up for the first half and stopped for the second; also
    the deepest spool seen and the event rate achieved.

    ALERTS_PER_S arrivals a second are backdated 58 s (observation is 1 min) so each one's
    unpaid alert is due 2 s later; each leaves 4 s later, which clears it. The rest of the rate
    is background: bays flipping between vacant and occupied, stamped now (their alerts would
    be due in a minute; they leave first)."""
    alert_bays = int(ALERTS_PER_S * REUSE_S * 1.1)
    background = 1000
    config = setup(workdir, broker, alert_bays + background, influx if with_sink else None)
    collector = LiveCollector(config)
    service = collector.start()
    wait_connected(service)
    received: list[tuple[float, dict[str, object]]] = []
    listener = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-l-{time.time_ns()}")
    listener.on_message = lambda c, u, m: received.append((time.time(), json.loads(m.payload)))
    subscribed = threading.Event()
    listener.on_subscribe = lambda *a: subscribed.set()
    listener.connect("127.0.0.1", broker.port)
    listener.subscribe("bench/alerts/#", qos=1)
    listener.loop_start()
    wait_until("the alert listener's subscription", subscribed.is_set, 10)
    client = publisher(broker.port)
    topic = "bench/gw/gw-1/events"
    depth = 0
    outage_at = time.time() + seconds / 2
    stopper: threading.Thread | None = None
    i = arrivals = flips = 0
    started = time.time()
    while time.time() - started < seconds:
        now = time.time()
        if stopper is None and now >= outage_at:
            # influxd may take seconds to shut down: stop it beside the publishing, not in it.
            stopper = threading.Thread(target=influx.stop)
            stopper.start()
        if arrivals < (now - started) * ALERTS_PER_S:
            bay = 1 + arrivals % alert_bays
            arrivals += 1
            arrival = int(now * 1000) - 58_000
            i += 1
            client.publish(topic, event(i, bay, "occupied", arrival, "lat"), 1)
            i += 1
            client.publish(topic, event(i, bay, "vacant", arrival + 62_000, "lat"), 1)
        else:
            bay = alert_bays + 1 + flips % background
            state = "occupied" if (flips // background) % 2 == 0 else "vacant"
            flips += 1
            i += 1
            client.publish(topic, event(i, bay, state, int(now * 1000), "lat"), 1)
        if i % 50 == 0 and service.sink is not None:
            depth = max(depth, int(str(service.sink.stats().get("spool_depth") or 0)))
        time.sleep(max(0.0, started + i / rate - time.time()))
    sent_rate = i / (time.time() - started)

    def opened() -> int:
        return len({r["alert_id"] for _, r in list(received) if r.get("status") == "open"})

    try:
        # Each arrival owes exactly one alert (due 2 s after it was sent); all must come.
        wait_until(
            f"the {arrivals} alerts owed by the arrivals",
            lambda: opened() >= arrivals,
            60,
            detail=lambda: f"{opened()} came",
        )
    finally:
        client.loop_stop()
        listener.loop_stop()
        collector.stop()
        if stopper is not None:
            stopper.join()
        influx.start()
    up: list[float] = []
    down: list[float] = []
    for at, record in received:
        if record.get("status") != "open":
            continue
        due = parse_instant(str(record["raised_at"])) / 1000 + 1.0
        (down if due >= outage_at else up).append(at - due)
    return up, down, depth, sent_rate


def p99(values: list[float]) -> float:
    return sorted(values)[min(len(values) - 1, int(len(values) * 0.99))]


def bench_latency(influx: Influxd, broker: Mosquitto, workdir: Path, quick: bool) -> list[Row]:
    influx.query("CREATE DATABASE live")
    seconds, rate = (10, 300) if quick else (30, 300)
    up, down, depth, sent = latencies(workdir / "latency", broker, influx, seconds, rate)
    # The same load on a collector without the sink (InfluxDB is stopped half way all the
    # same): what the second half costs anyway (a larger store, influxd shutting down).
    base_up, base_down, _, _ = latencies(workdir / "baseline", broker, influx, seconds, rate, False)
    if not (up and down and base_up and base_down):
        raise BenchError("no alerts fell due in one half of a run")
    return [
        Row(
            f"alert latency p99 while InfluxDB is DOWN ({len(down)} alerts, {sent:.0f} events/s,"
            f" spool up to {depth:,} points)",
            f"{p99(down):.2f}s",
            "<= 1 s",
            p99(down) <= 1.0,
        ),
        Row(
            f"  same while InfluxDB is up ({len(up)} alerts)",
            f"{p99(up):.2f}s",
            "<= 1 s",
            p99(up) <= 1.0,
        ),
        Row(
            f"  same load, collector without the sink: second half / first half "
            f"({len(base_down)}, {len(base_up)} alerts)",
            f"{p99(base_down):.2f}s / {p99(base_up):.2f}s",
            "-",
            True,
        ),
    ]


def run(quick: bool) -> list[Row]:
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        influx = Influxd(workdir / "influxd").start()
        broker = Mosquitto(workdir / "mosquitto").start()
        try:
            return [
                *attempt("spool -> InfluxDB 1.x", lambda: [bench_spool(influx, workdir, quick)]),
                *attempt(
                    "collector backlog drain, InfluxDB sink on vs off",
                    lambda: [bench_drain(influx, broker, workdir, quick)],
                ),
                *attempt(
                    "alert latency while InfluxDB is down",
                    lambda: bench_latency(influx, broker, workdir, quick),
                ),
            ]
        finally:
            broker.stop()
            influx.stop()


if __name__ == "__main__":
    for row in run("--quick" in sys.argv):
        print(row)
