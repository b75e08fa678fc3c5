"""The HTTP API under load, against a real ``kerbside-collector run`` (10,000 bays).

    python bench/run.py api [--quick]

1. GET /api/v1/bays (default page), 50 concurrent keep-alive clients for a fixed time: p99
   latency. Target <= 100 ms.
2. SSE fan-out: 500 clients on /api/v1/alerts/stream; an officer acknowledges an alert; the
   time from sending the ack until each client has the change: p99. Target <= 1 s.
3. Collector ingest rate (occupancy events over MQTT, QoS 1, until /metrics counts them all)
   while the 50 clients of (1) run, against the rate with no API load, same run. Target >= 0.8.

Load generators are separate processes with bare asyncio sockets (HTTP/1.1), so the client's
own cost stays small next to the server's. Everything runs on this machine (127.0.0.1).
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing as mp
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import httpx
import paho.mqtt.client as mqtt
from common import BenchError, Row, receive, wait_exit, wait_until
from paho.mqtt.enums import CallbackAPIVersion

from kerbside.collector.tokens import TokenHolder, hash_token, save_tokens
from kerbside.core.instants import format_instant
from tests.helpers import Mosquitto, free_port, wait_for_port

TOKEN = "bench-admin-token"
FANOUT_LIMIT_S = 20
TOPIC_ROOT = "bench/api"
GATEWAY = "gw-bench"


def _p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


# --- a tiny HTTP/1.1 client ------------------------------------------------------------------


async def _read_response(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    return await reader.readexactly(length)


async def _bays_client(
    port: int, until: float, out: list[float], busy: asyncio.Event, clients: int
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    request = (
        f"GET /api/v1/bays HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TOKEN}\r\n\r\n"
    ).encode()
    try:
        while time.monotonic() < until:
            started = time.monotonic()
            writer.write(request)
            await _read_response(reader)
            out.append(time.monotonic() - started)
            if len(out) >= clients:
                busy.set()
    finally:
        writer.close()


def _report(result: Any, work: Callable[[], object]) -> None:
    """Child process side: put ``("ok", work())`` or ``("error", what went wrong)``."""
    try:
        result.put(("ok", work()))
    except Exception as exc:
        result.put(("error", f"{type(exc).__name__}: {exc}"))


def _result(result: Any, what: str, timeout_s: float) -> Any:
    """Parent side: a child's result, or ``BenchError`` with the child's own reason."""
    status, value = receive(result, what, timeout_s)
    if status != "ok":
        raise BenchError(f"{what}: {value}")
    return value


def bays_load(port: int, clients: int, seconds: float, result: Any, running: Any = None) -> None:
    """Child process: ``clients`` keep-alive clients GET /api/v1/bays for ``seconds``; puts
    ``"running"`` in ``running`` once there have been as many responses as clients."""

    async def main() -> list[float]:
        out: list[float] = []
        until = time.monotonic() + seconds
        busy = asyncio.Event()
        load = asyncio.gather(
            *(_bays_client(port, until, out, busy, clients) for _ in range(clients))
        )
        if running is not None:
            try:
                await asyncio.wait_for(busy.wait(), 60)
                running.put(("ok", "running"))
            except TimeoutError:
                running.put(("error", f"fewer than {clients} responses in 60 s"))
        await load
        return out

    _report(result, lambda: asyncio.run(main()))


async def _sse_client(port: int, ready: asyncio.Queue[None], got: list[float]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        (
            "GET /api/v1/alerts/stream HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Authorization: Bearer {TOKEN}\r\nAccept: text/event-stream\r\n\r\n"
        ).encode()
    )
    await reader.readuntil(b"\r\n\r\n")
    await reader.readuntil(b"retry:")
    ready.put_nowait(None)
    while True:
        line = await reader.readline()
        if not line:
            return
        if b"event: alert" in line:
            got.append(time.monotonic())
            writer.close()
            return


def sse_fanout(port: int, clients: int, status: Any, result: Any) -> None:
    """Child process: ``clients`` streams; says when all are connected; reports arrival times."""

    async def main() -> list[float]:
        ready: asyncio.Queue[None] = asyncio.Queue()
        got: list[float] = []
        tasks = []
        for _ in range(clients):
            tasks.append(asyncio.create_task(_sse_client(port, ready, got)))
            await asyncio.sleep(0.002)
        for n in range(clients):
            try:
                await asyncio.wait_for(ready.get(), 60)
            except TimeoutError:
                status.put(("error", f"only {n} of {clients} streams open after 60 s"))
                raise
        status.put(("ok", "ready"))
        _, waiting = await asyncio.wait(tasks, timeout=FANOUT_LIMIT_S)
        if waiting:
            raise BenchError(
                f"gave up after {FANOUT_LIMIT_S} s waiting for the alert change at "
                f"{len(waiting)} of {clients} streams"
            )
        if len(got) < clients:
            raise BenchError(f"{clients - len(got)} streams ended without the alert change")
        return got

    _report(result, lambda: asyncio.run(main()))


# --- the collector under test ----------------------------------------------------------------


def _write_setup(workdir: Path, bays: int, mqtt_port: int, http_port: int) -> Path:
    lines = [
        "site: bench",
        "timezone: Europe/London",
        "defaults: {grace_minutes: 0, observation_minutes: 0}",
        "zones:",
        "  - {id: Z1, name: Bench, controlled_hours: any}",
        "bays:",
    ]
    for i in range(bays):
        kind = "paid" if i == 0 else "free"  # one bay that raises an alert, for the fan-out
        lines.append(
            f"  - {{id: B{i:05d}, zone: Z1, street: Bench St, kind: {kind},"
            f" location: {{lat: 51.5, lon: -0.14}}, sensor: S{i:05d}, gateway: {GATEWAY}}}"
        )
    (workdir / "site.yaml").write_text("\n".join(lines) + "\n")
    save_tokens(workdir / "tokens.yaml", [TokenHolder("bench", "admin", hash_token(TOKEN))])
    config = workdir / "collector.yaml"
    config.write_text(
        "site: site.yaml\n"
        f"mqtt: {{host: 127.0.0.1, port: {mqtt_port}, topic_root: {TOPIC_ROOT},"
        f" client_id: bench-collector-{os.getpid()}}}\n"
        "store: {path: collector.db}\n"
        f"http: {{host: 127.0.0.1, port: {http_port}}}\n"
        "tokens_file: tokens.yaml\n"
        "alert_delay_s: 3\n"
    )
    return config


class _Publisher:
    def __init__(self, port: int) -> None:
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-gw-{os.getpid()}")
        # No in-flight limit: with one, paho rescans its queue on every PUBACK and publishes
        # half as fast, and the ingest rate would be this publisher's more than the collector's.
        self.client.max_inflight_messages_set(0)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self.seq = 0

    def events(self, bays: list[str], state: str) -> None:
        infos = []
        now = int(time.time() * 1000)
        for bay in bays:
            self.seq += 1
            body = {
                "v": 1, "event_id": f"{GATEWAY}:bench:{self.seq}", "gateway_id": GATEWAY,
                "seq": self.seq, "bay_id": bay, "sensor_id": "S" + bay[1:], "state": state,
                "ts": format_instant(now - 200), "confirmed_ts": format_instant(now),
                "reason": None,
            }  # fmt: skip
            topic = f"{TOPIC_ROOT}/gw/{GATEWAY}/events"
            infos.append(self.client.publish(topic, json.dumps(body), qos=1))
        wait_until(
            f"the broker to acknowledge {len(infos)} events",
            lambda: all(info.is_published() for info in infos),
            60,
        )

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def _events_in(client: httpx.Client) -> float:
    for line in client.get("/metrics").text.splitlines():
        if line.startswith("kerbside_events_in_total "):
            return float(line.split()[1])
    return 0.0


def _ingest_rate(publisher: _Publisher, client: httpx.Client, bays: list[str], state: str) -> float:
    """Events/s from the first publish until /metrics has counted them all."""
    target = _events_in(client) + len(bays)
    started = time.monotonic()
    publisher.events(bays, state)
    wait_until(
        f"the collector's /metrics to count {len(bays)} more events",
        lambda: _events_in(client) >= target,
        300,
    )
    return len(bays) / (time.monotonic() - started)


def run(quick: bool) -> list[Row]:
    n_bays = 10_000
    seconds = 4.0 if quick else 10.0
    sse_clients = 100 if quick else 500
    n_events = 2_000 if quick else 10_000
    ctx = mp.get_context("fork")  # the loaders are functions of this file, loaded by path
    with tempfile.TemporaryDirectory(prefix="bench-api-") as tmp:
        work = Path(tmp)
        broker = Mosquitto(work / "mosquitto").start()
        http_port = free_port()
        config = _write_setup(work, n_bays, broker.port, http_port)
        log = (work / "collector.log").open("wb")
        proc = subprocess.Popen(
            [sys.executable, "-m", "kerbside.collector.cli", "--log-level", "WARNING", "run",
             "--config", str(config)],
            stdout=log, stderr=subprocess.STDOUT, cwd=work,
        )  # fmt: skip
        try:
            wait_for_port(http_port, timeout=120)
            client = httpx.Client(
                base_url=f"http://127.0.0.1:{http_port}",
                headers={"Authorization": f"Bearer {TOKEN}"},
                timeout=30,
            )
            wait_until(
                "the collector's /healthz to report its broker ok",
                lambda: client.get("/healthz").json().get("broker") == "ok",
                60,
                alive=[proc],
                interval_s=0.2,
            )
            publisher = _Publisher(broker.port)
            bays = [f"B{i:05d}" for i in range(1, n_bays)][:n_events]

            # (1) GET /api/v1/bays, 50 clients.
            result = ctx.Queue()
            loader = ctx.Process(target=bays_load, args=(http_port, 50, seconds, result))
            loader.start()
            latencies: list[float] = _result(result, "the GET /api/v1/bays load", seconds + 120)
            loader.join()
            p99_bays = _p99(latencies)

            # (3) ingest without, then with, that load.
            rate_alone = _ingest_rate(publisher, client, bays, "occupied")
            running = ctx.Queue()
            loader = ctx.Process(target=bays_load, args=(http_port, 50, 600.0, result, running))
            loader.start()
            _result(running, "the GET /api/v1/bays load to be running", 60)
            rate_loaded = _ingest_rate(publisher, client, bays, "vacant")
            loader.terminate()
            loader.join()
            ratio = rate_loaded / rate_alone

            # (2) SSE fan-out of one alert change.
            publisher.events(["B00000"], "occupied")
            open_alerts: list[dict[str, Any]] = []

            def alert_raised() -> bool:
                reply = client.get("/api/v1/alerts", params={"status": "open"})
                open_alerts[:] = reply.json()["items"]
                return bool(open_alerts)

            wait_until("an alert on B00000 for the fan-out", alert_raised, 20, interval_s=0.1)
            alert_id = open_alerts[0]["alert_id"]
            status, arrivals = ctx.Queue(), ctx.Queue()
            fan = ctx.Process(target=sse_fanout, args=(http_port, sse_clients, status, arrivals))
            fan.start()
            # A stream's cursor is fixed before its "retry:", so every client is sure to get
            # the change from here on.
            _result(status, f"{sse_clients} SSE streams to open", 180)
            sent = time.monotonic()
            client.post(f"/api/v1/alerts/{alert_id}/ack", json={"officer": "bench"})
            got: list[float] = _result(arrivals, "the SSE clients' arrival times", 120)
            fan.join()
            delays = [t - sent for t in got]
            delivered = len(delays)
            p99_sse = _p99(delays)
            publisher.close()
            client.close()
        finally:
            proc.terminate()
            wait_exit(proc, "the collector to stop", 30)
            log.close()
            broker.stop()
    suffix = " (quick)" if quick else ""
    return [
        Row(
            f"GET /api/v1/bays, {n_bays} bays, 50 clients, p99 ({len(latencies)} requests){suffix}",
            f"{p99_bays * 1000:.1f} ms",
            "<= 100 ms",
            p99_bays <= 0.100,
        ),
        Row(
            f"SSE fan-out to {sse_clients} clients, p99 ({delivered} delivered){suffix}",
            f"{p99_sse:.3f} s",
            "<= 1 s",
            p99_sse <= 1.0,
        ),
        Row(
            f"ingest rate under API load / alone ({rate_loaded:.0f} / {rate_alone:.0f} ev/s)"
            + suffix,
            f"{ratio:.2f}",
            ">= 0.8",
            ratio >= 0.8,
        ),
    ]
