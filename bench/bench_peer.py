"""Kerbside's collector against the do-it-yourself stack, on the same broker, InfluxDB and stream.

The peer is a Node-RED 4 flow doing the job by hand: ``mqtt in`` (QoS 1, persistent session,
auto-unsubscribe off) -> a function building one point per event -> ``join`` 500 (or 1 s) ->
``influxdb batch`` (node-red-contrib-influxdb 0.7) -> InfluxDB 1.x. Both get the same stream: 1,000
bays on 10 gateways, each event flipping its bay, from a publisher in a process of its own, into
one private Mosquitto with the production settings (docs/operations.md) and one private
``influxd``. The two systems alternate, and each figure is the better of two runs:

- live: 30,000 events published as fast as the publisher can, timed from the first publication
  to the last event's point counted in InfluxDB (each event is one ``bay_state`` point in both);
- drain: 200,000 events queued at the broker while the system was down, from its reconnection to
  the last point in InfluxDB;
- CPU seconds per 10,000 events in each (the whole process tree: the collector's MQTT link too),
  and peak RSS;
- what bounds each: the CPU per event that InfluxDB and the broker spent on its stream, and how
  busy the whole machine was (of 100 % a core), so a single-threaded bound (a core's worth busy
  in the system, the rest of the machine idle) shows apart from a machine that is simply full;
- points lost when the system is stopped mid-stream at 1,000 events/s by SIGTERM, and by SIGKILL,
  then started again: every event the broker accepted should end up a point.

Node-RED and the InfluxDB node are installed from the npm registry into a cache directory
(``$KERBSIDE_BENCH_CACHE`` or ``~/.cache/kerbside-bench``) on first use; without npm the bench says
so and measures nothing.

    python bench/run.py peer [--quick]
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple, Protocol

from bench_collector import _children, _peak_rss_kb, _write_site
from common import TICK_HZ, BenchError, Row, attempt, cpu_seconds, wait_exit, wait_until

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kerbside.core.instants import format_instant
from tests.helpers import Influxd, Mosquitto

NODE_RED = "node-red@4"
INFLUX_NODE = "node-red-contrib-influxdb@0.7"
ROOT = "bench/v1"
BAYS = 1000
GATEWAYS = 10
STEP_MS = 10  # between two events' instants
WINDOW = 2000  # the publisher's unacknowledged messages at most
# docs/operations.md's broker settings (the test helper's autosave and inflight replaced)
BROKER_CONF = (
    "autosave_interval 60\n"
    "max_queued_bytes 0\n"
    "max_inflight_messages 4000\n"
    "persistent_client_expiration 14d\n"
    "message_size_limit 1048576\n"
)
PER = 10_000  # CPU seconds are given per this many events


# -- the stream ---------------------------------------------------------------------------------


def event(i: int, base_ms: int) -> tuple[str, bytes]:
    """Event ``i`` of the stream: bay ``i % 1000`` flips with each round of 1,000."""
    bay = i % BAYS
    gateway = f"gw-{bay // (BAYS // GATEWAYS):04d}"
    per_gateway = BAYS // GATEWAYS
    seq = (i // BAYS) * per_gateway + i % per_gateway + 1
    ts = base_ms + i * STEP_MS
    body = {
        "v": 1,
        "event_id": f"{gateway}:peer:{seq}",
        "gateway_id": gateway,
        "seq": seq,
        "bay_id": f"B{bay:06d}",
        "sensor_id": f"S{bay:06d}",
        "state": "occupied" if (i // BAYS) % 2 == 0 else "vacant",
        "ts": format_instant(ts),
        "confirmed_ts": format_instant(ts + 10_000),
        "reason": None,
    }
    return f"{ROOT}/gw/{gateway}/events", json.dumps(body).encode()


def publish_main(argv: list[str]) -> int:
    """The publisher process: connect, say ``ready``, wait for ``go`` on stdin, publish events
    ``first`` .. ``first + count - 1`` (at ``rate``/s, or as fast as it can when 0), say
    ``done`` once the broker has acknowledged them all."""
    import paho.mqtt.client as mqtt  # noqa: PLC0415
    from paho.mqtt.enums import CallbackAPIVersion  # noqa: PLC0415

    port, first, count, rate, base_ms = (int(a) for a in argv)
    client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2)
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    acked = 0
    lock = threading.Lock()

    def on_publish(*_: Any) -> None:
        nonlocal acked
        with lock:
            acked += 1

    client.on_publish = on_publish
    client.connect("127.0.0.1", port)
    client.loop_start()
    print("ready", flush=True)
    if sys.stdin.readline().strip() != "go":
        return 1
    started = time.monotonic()
    for k in range(count):
        # paho walks its whole outgoing list on every PUBACK: keep it to a window
        while k - acked > WINDOW:
            time.sleep(0.0005)
        if rate:
            time.sleep(max(0.0, started + k / rate - time.monotonic()))
        topic, payload = event(first + k, base_ms)
        client.publish(topic, payload, qos=1)
    deadline = time.monotonic() + 120
    while acked < count and time.monotonic() < deadline:
        time.sleep(0.01)
    client.disconnect()
    client.loop_stop()
    print(f"done {acked}", flush=True)
    return 0 if acked == count else 1


class Publisher:
    """A publisher process, connected and waiting for ``go``."""

    def __init__(self, port: int, first: int, count: int, rate: int, base_ms: int) -> None:
        self.count = count
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "publish", *map(str, (port, first, count, rate, base_ms))],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        self._lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        wait_until(
            "the publisher to connect", lambda: "ready" in self._lines, 30, alive=[self.proc]
        )

    def _read(self) -> None:
        assert self.proc.stdout is not None
        self._lines.extend(line.strip() for line in self.proc.stdout)

    def go(self) -> float:
        assert self.proc.stdin is not None
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()
        return time.monotonic()

    def done(self) -> bool:
        return any(line.startswith("done") for line in self._lines)

    def finish(self, limit_s: float) -> None:
        if wait_exit(self.proc, f"the publisher to hand over {self.count} events", limit_s) != 0:
            raise BenchError(f"the publisher failed: {self._lines}")


# -- the two systems ------------------------------------------------------------------------------


class System(Protocol):
    name: str
    database: str

    def start(self) -> None: ...  # returns once connected and subscribed
    def stop(self, sig: int = signal.SIGTERM) -> None: ...
    def pids(self) -> list[int]: ...
    def close(self) -> None: ...


def rss_mb(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError, BenchError):
            total += _peak_rss_kb(pid)
    return total / 1024


class _Process:
    """A program started in ``workdir`` with its output in a log, ready when the log says so."""

    name = ""
    ready_text = ""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.log = workdir / f"{self.name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        raise NotImplementedError

    def start(self) -> None:
        mark = self.log.stat().st_size if self.log.exists() else 0
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                self.command(), cwd=self.workdir, stdout=out, stderr=subprocess.STDOUT
            )

        def ready() -> bool:
            with self.log.open("rb") as f:
                f.seek(mark)
                return self.ready_text.encode() in f.read()

        wait_until(f"{self.name} to log {self.ready_text!r}", ready, 120, alive=[self.proc])
        # the SUBSCRIBE follows the connection at once; on a reconnection the session has it
        time.sleep(0.3)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is None:
            return
        self.proc.send_signal(sig)
        code = wait_exit(self.proc, f"{self.name} to stop after signal {sig}", 60)
        if sig == signal.SIGTERM and code not in (0, -signal.SIGTERM):
            raise BenchError(f"{self.name} exited with code {code}: see {self.log}")
        self.proc = None

    def pids(self) -> list[int]:
        assert self.proc is not None
        return [self.proc.pid, *_children(self.proc.pid)]

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None


class Kerbside(_Process):
    name = "kerbside"
    ready_text = "connected to"

    def __init__(self, workdir: Path, port: int, influx_url: str, database: str) -> None:
        workdir.mkdir(parents=True)
        self.database = database
        super().__init__(workdir)
        _write_site(workdir / "site.yaml", BAYS)
        (workdir / "collector.yaml").write_text(
            "site: site.yaml\n"
            f"mqtt: {{host: 127.0.0.1, port: {port}, topic_root: {ROOT},"
            f" client_id: peer-kerbside-{workdir.name}}}\n"
            "store: {path: collector.db}\n"
            "http: null\n"
            "alert_delay_s: 15\n"
            f"influxdb: {{url: '{influx_url}', api: v1, database: {database}}}\n"
        )

    def command(self) -> list[str]:
        return [sys.executable, "-m", "kerbside.collector.cli", "run", "--config", "collector.yaml"]


FUNCTION = """
const e = msg.payload;
msg.payload = {
    measurement: "bay_state",
    tags: {bay_id: e.bay_id, gateway_id: e.gateway_id},
    fields: {occupied: e.state === "occupied" ? 1 : 0, state: e.state},
    timestamp: Date.parse(e.ts),
};
return msg;
"""


class NodeRed(_Process):
    name = "node-red"
    ready_text = "Connected to broker"

    def __init__(
        self, workdir: Path, red_js: Path, port: int, influx: Influxd, database: str
    ) -> None:
        workdir.mkdir(parents=True)
        self.database = database
        self.red_js = red_js
        super().__init__(workdir)
        influx_port = urllib.parse.urlsplit(influx.url).port
        flow: list[dict[str, Any]] = [
            {"id": "peer.tab", "type": "tab", "label": "bench"},
            {
                "id": "peer.broker",
                "type": "mqtt-broker",
                "broker": "127.0.0.1",
                "port": str(port),
                "clientid": f"peer-node-red-{workdir.name}",
                "autoConnect": True,
                "usetls": False,
                "protocolVersion": "4",
                "keepalive": "60",
                "cleansession": False,
                "autoUnsubscribe": False,
            },
            {
                "id": "peer.in",
                "type": "mqtt in",
                "z": "peer.tab",
                "topic": f"{ROOT}/gw/+/events",
                "qos": "1",
                "datatype": "json",
                "broker": "peer.broker",
                "nl": False,
                "rap": True,
                "rh": 0,
                "inputs": 0,
                "wires": [["peer.fn"]],
            },
            {
                "id": "peer.fn",
                "type": "function",
                "z": "peer.tab",
                "func": FUNCTION,
                "outputs": 1,
                "wires": [["peer.join"]],
            },
            {
                "id": "peer.join",
                "type": "join",
                "z": "peer.tab",
                "mode": "custom",
                "build": "array",
                "property": "payload",
                "propertyType": "msg",
                "key": "topic",
                "joiner": "\\n",
                "joinerType": "str",
                "accumulate": False,
                "timeout": "1",
                "count": "500",
                "wires": [["peer.out"]],
            },
            {
                "id": "peer.out",
                "type": "influxdb batch",
                "z": "peer.tab",
                "influxdb": "peer.db",
                "precision": "ms",
                "retentionPolicy": "",
                "wires": [],
            },
            {
                "id": "peer.db",
                "type": "influxdb",
                "hostname": "127.0.0.1",
                "port": str(influx_port),
                "protocol": "http",
                "database": database,
                "influxdbVersion": "1.x",
                "usetls": False,
            },
        ]
        # ids that no property's value can be mistaken for (Node-RED looks references up by
        # value), and a place on the canvas, or a node counts as a config node
        for x, node in enumerate(flow):
            if "z" in node:
                node.update(x=100 + 150 * x, y=100)
        (workdir / "flows.json").write_text(json.dumps(flow))
        nodes_dir = red_js.parents[1] / "node-red-contrib-influxdb"
        (workdir / "settings.js").write_text(
            "module.exports = {\n"
            f"  uiPort: {free_port()}, uiHost: '127.0.0.1',\n"
            "  httpAdminRoot: false, httpNodeRoot: false,\n"
            "  flowFile: 'flows.json', credentialSecret: false,\n"
            f"  nodesDir: [{json.dumps(str(nodes_dir))}],\n"
            "  logging: {console: {level: 'info', metrics: false, audit: false}},\n"
            "  diagnostics: {enabled: false}, runtimeState: {enabled: false},\n"
            "  telemetry: {enabled: false}, externalModules: {autoInstall: false},\n"
            "};\n"
        )

    def command(self) -> list[str]:
        node = shutil.which("node") or "node"
        return [node, str(self.red_js), "--settings", "settings.js", "--userDir", "."]


def free_port() -> int:
    from tests.helpers import free_port as pick  # noqa: PLC0415

    return pick()


def install_node_red(cache: Path) -> Path | None:
    """Node-RED's ``red.js`` from the cache, installed there first if need be; None without
    npm."""
    red_js = cache / "node_modules" / "node-red" / "red.js"
    influx_node = cache / "node_modules" / "node-red-contrib-influxdb" / "package.json"
    if red_js.exists() and influx_node.exists():
        return red_js
    npm = shutil.which("npm")
    if npm is None:
        return None
    cache.mkdir(parents=True, exist_ok=True)
    print(f"[bench] installing {NODE_RED} and {INFLUX_NODE} into {cache}", file=sys.stderr)
    subprocess.run(
        [npm, "install", "--no-audit", "--no-fund", "--prefix", str(cache), NODE_RED, INFLUX_NODE],
        check=True,
        stdout=sys.stderr,
    )
    return red_js


# -- measurements --------------------------------------------------------------------------------


def points(influx: Influxd, database: str) -> int:
    results = influx.query("SELECT count(occupied) FROM bay_state", db=database)
    series: list[dict[str, list[list[int]]]] = results[0].get("series") or []
    return int(series[0]["values"][0][1]) if series else 0


class Run(NamedTuple):  # run.py loads benches outside sys.modules, which dataclasses need
    rate: float  # events/s
    cpu_per: float  # CPU seconds per PER events
    rss: float  # MB
    shared_per: float  # CPU seconds per PER events in InfluxDB and the broker meanwhile
    busy: float  # the machine's CPU in use meanwhile, in cores


def machine_busy_s() -> float:
    """Seconds of CPU in use since boot, all cores together (``/proc/stat``)."""
    ticks = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(ticks) - ticks[3] - ticks[4]) / TICK_HZ  # less idle and waiting on I/O


def _measured(
    system: System,
    influx: Influxd,
    count: int,
    began: float,
    start: tuple[float, float, float],
    shared: list[int],
    *,
    limit_s: float,
    interval_s: float,
) -> Run:
    """Once InfluxDB holds all ``count`` points: the rate since ``began`` (monotonic), the CPU
    per event since ``start`` (``_counters``) and the memory held."""
    got = 0

    def arrived() -> bool:
        nonlocal got
        got = points(influx, system.database)
        return got >= count

    wait_until(
        f"{system.name}'s {count} points in InfluxDB",
        arrived,
        limit_s,
        detail=lambda: f"{got} there",
        interval_s=interval_s,
    )
    elapsed = time.monotonic() - began
    cpu, shared_cpu, busy = (b - a for a, b in zip(start, _counters(system, shared), strict=True))
    per = PER / count
    return Run(count / elapsed, cpu * per, rss_mb(system.pids()), shared_cpu * per, busy / elapsed)


def _counters(system: System, shared: list[int]) -> tuple[float, float, float]:
    """CPU seconds so far: the system's, those of the processes both share (InfluxDB's and the
    broker's: ``shared``, their pids), the whole machine's."""
    return cpu_seconds(system.pids()), cpu_seconds(shared), machine_busy_s()


def live(system: System, influx: Influxd, shared: list[int], port: int, count: int) -> Run:
    """``count`` events as fast as the publisher can, end to end into InfluxDB."""
    influx.query(f"CREATE DATABASE {system.database}")
    system.start()
    try:
        base = int(time.time() * 1000) - count * STEP_MS - 600_000
        publisher = Publisher(port, 0, count, 0, base)
        start = _counters(system, shared)
        began = publisher.go()
        run = _measured(system, influx, count, began, start, shared, limit_s=300, interval_s=0.1)
        publisher.finish(60)
        system.stop()
    finally:
        system.close()
    return run


def drain(
    make: Callable[[], System], influx: Influxd, shared: list[int], port: int, count: int
) -> Run:
    """``count`` events queued while the system was down, from its reconnection to the last
    point in InfluxDB."""
    system = make()
    influx.query(f"CREATE DATABASE {system.database}")
    system.start()  # its persistent session, subscribed
    system.stop()
    base = int(time.time() * 1000) - count * STEP_MS - 600_000
    publisher = Publisher(port, 0, count, 0, base)
    publisher.go()
    publisher.finish(900)
    try:
        system.start()
        began = time.monotonic()
        start = _counters(system, shared)
        run = _measured(system, influx, count, began, start, shared, limit_s=900, interval_s=0.2)
        system.stop()
    finally:
        system.close()
    return run


def lost_on(system: System, influx: Influxd, port: int, sig: int, count: int) -> int:
    """Points missing in InfluxDB after ``count`` events at 1,000/s during which the system was
    stopped by ``sig`` (at 40 %) and started again at once."""
    influx.query(f"CREATE DATABASE {system.database}")
    system.start()
    try:
        base = int(time.time() * 1000) - count * STEP_MS - 600_000
        publisher = Publisher(port, 0, count, 1000, base)
        publisher.go()
        time.sleep(count / 1000 * 0.4)
        system.stop(sig)
        system.start()
        publisher.finish(count / 1000 + 120)
        # settled: the count has not moved for 5 s
        last = (-1, time.monotonic())

        def settled() -> bool:
            nonlocal last
            got = points(influx, system.database)
            if got != last[0]:
                last = (got, time.monotonic())
            return got >= count or time.monotonic() - last[1] >= 5

        wait_until(f"{system.name}'s points to settle", settled, 180, interval_s=0.2)
        got = points(influx, system.database)
        system.stop()
    finally:
        system.close()
    return count - got


def _best(runs: list[Run]) -> Run:
    return max(runs, key=lambda r: r.rate)


def measure(work: Path, quick: bool) -> list[Row]:
    cache = Path(os.environ.get("KERBSIDE_BENCH_CACHE") or Path.home() / ".cache/kerbside-bench")
    red_js = install_node_red(cache / "node-red")
    if red_js is None:
        print("[bench] peer: npm is not on PATH, so Node-RED cannot be installed", file=sys.stderr)
        return [Row("peer (Node-RED 4): skipped, npm not on PATH", "-", "-", ok=True)]
    live_n, drain_n, kill_n = (5_000, 20_000, 5_000) if quick else (30_000, 200_000, 10_000)
    influx = Influxd(work / "influxd").start()
    broker = Mosquitto(work / "mosquitto", BROKER_CONF).start()
    assert influx.proc is not None
    assert broker.proc is not None
    shared = [influx.proc.pid, broker.proc.pid]  # InfluxDB and the broker: both systems'
    runs = 0

    def kerbside() -> System:
        nonlocal runs
        runs += 1
        return Kerbside(work / f"k{runs}", broker.port, influx.url, f"k{runs}")

    def node_red() -> System:
        nonlocal runs
        runs += 1
        return NodeRed(work / f"n{runs}", red_js, broker.port, influx, f"n{runs}")

    makers = {"kerbside": kerbside, "node-red": node_red}
    results: dict[tuple[str, str], list[Run]] = {}
    lost: dict[tuple[str, str], int] = {}
    try:
        for order in (("kerbside", "node-red"), ("node-red", "kerbside")):
            for name in order:
                run_ = live(makers[name](), influx, shared, broker.port, live_n)
                results.setdefault((name, "live"), []).append(run_)
                print(f"[bench] peer live {name}: {run_}", file=sys.stderr)
        for order in (("node-red", "kerbside"), ("kerbside", "node-red")):
            for name in order:
                run_ = drain(makers[name], influx, shared, broker.port, drain_n)
                results.setdefault((name, "drain"), []).append(run_)
                print(f"[bench] peer drain {name}: {run_}", file=sys.stderr)
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for name, make in makers.items():
                got = lost_on(make(), influx, broker.port, sig, kill_n)
                lost[(name, sig.name)] = got
                print(f"[bench] peer {sig.name} {name}: {got} points lost", file=sys.stderr)
    finally:
        broker.stop()
        influx.stop()
    return _rows(results, lost, live_n, drain_n, kill_n)


def _rows(
    results: dict[tuple[str, str], list[Run]],
    lost: dict[tuple[str, str], int],
    live_n: int,
    drain_n: int,
    kill_n: int,
) -> list[Row]:
    rows: list[Row] = []
    for phase, label in (("live", f"live, {live_n:,}"), ("drain", f"drain, {drain_n:,} queued")):
        k = _best(results[("kerbside", phase)])
        n = _best(results[("node-red", phase)])
        ratio = k.rate / n.rate
        each = " / ".join(f"{r.rate:,.0f}" for r in results[("kerbside", phase)])
        peer = " / ".join(f"{r.rate:,.0f}" for r in results[("node-red", phase)])
        rows.append(
            Row(
                f"peer {label} events into InfluxDB: Kerbside vs Node-RED "
                f"({each} vs {peer} events/s)",
                f"{ratio:.2f}x",
                ">= 1.0x",
                ratio >= 1.0,
            )
        )
        cpu = k.cpu_per / n.cpu_per
        rows.append(
            Row(
                f"  CPU per event, {phase}: Kerbside vs Node-RED ({k.cpu_per:.2f} vs "
                f"{n.cpu_per:.2f} s per {PER:,}); peak RSS {k.rss:.0f} vs {n.rss:.0f} MB",
                f"{cpu:.2f}x",
                "<= 1.5x",
                cpu <= 1.5,
            )
        )
        rows.append(
            Row(
                f"  what bounds the {phase}: CPU per event in InfluxDB and the broker, Kerbside's "
                f"stream vs Node-RED's ({k.shared_per:.2f} vs {n.shared_per:.2f} s per {PER:,}); "
                f"the machine busy meanwhile (of {os.cpu_count()} cores)",
                f"{k.busy:.2f} vs {n.busy:.2f} cores",
                "report",
                True,
            )
        )
    for sig in ("SIGTERM", "SIGKILL"):
        k_lost, n_lost = lost[("kerbside", sig)], lost[("node-red", sig)]
        rows.append(
            Row(
                f"peer {sig} mid-stream at 1,000 events/s, {kill_n:,} events: points lost, "
                f"Kerbside (Node-RED {n_lost})",
                f"{k_lost}",
                "0",
                k_lost == 0,
            )
        )
    return rows


def run(quick: bool) -> list[Row]:
    with tempfile.TemporaryDirectory(prefix="bench-peer-") as tmp:
        return attempt("peer (Node-RED 4)", lambda: measure(Path(tmp), quick))


if __name__ == "__main__":
    if sys.argv[1:2] == ["publish"]:
        sys.exit(publish_main(sys.argv[2:]))
    for row in run("--quick" in sys.argv):
        print(row)
