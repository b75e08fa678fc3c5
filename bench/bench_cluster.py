"""Several collectors on one PostgreSQL store, measured in one run on one broker and one
PostgreSQL server of the bench's own (``initdb``; ``synchronous_commit`` on):

- ingest, two collectors vs one: one backlog of N occupancy events is queued at a private
  Mosquitto for two shared groups (``mqtt.shared_group``: one collector alone, two sharing), each
  on a database of its own; each group is then started alone and drains it through the whole
  cluster path (events journaled by whichever collector the broker hands them to, then followed
  by each zone's owner: rules, bay states, sessions, publications). The rate is events per
  second from the first journaled to the last one's bay state stored. The CPU seconds the
  collectors and the PostgreSQL server spent meanwhile, the WAL written, the database's growth
  and the WAL flushes (fsync), per event, are the capacity model's per-event costs
  (docs/scaling.md);
- the same costs live: two collectors, the gateways publishing 1,000 events/s for 30 s, so
  that each commit holds the few events that arrived since the last (a backlog's commits hold
  ``ingest.batch_max``);
- ``commit_head`` held: the time a commit of 100, and of 1,000 events holds the row that
  hands out journal positions (its ``UPDATE`` to the end of its ``COMMIT``), with the store's
  own statements; such commits take turns, so this bounds the events per second one database
  journals, however many collectors share it;
- failover: two collectors live, a zone whose unpaid alerts fall due one every 200 ms; the
  zone's owner is SIGKILLed, and the figure is the time from the kill to the zone's first alert
  published by the collector that took it over (target ``lease_s`` + 2 s).

    python bench/run.py cluster [--quick]

The machine has 2 cores: two collectors and PostgreSQL share them, so two collectors cannot
double one's rate here; the ratio says what the second one costs or gives on this machine.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import paho.mqtt.client as mqtt
import psycopg
from bench_collector import OFFSET_MS, ROOT, _event, _now, _Publisher, _write_site, queue_backlog
from common import BenchError, Row, attempt, cpu_seconds, wait_exit, wait_until
from paho.mqtt.enums import CallbackAPIVersion

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kerbside.collector.store.pgconn import columns
from kerbside.collector.store.postgres import _INSERT_EVENTS, _INSERT_JOURNAL, _TAKE_IDS, migrate
from kerbside.core.instants import format_instant
from tests.helpers import Mosquitto, start_collector
from tests.pg import OwnPostgres

LEASE_S = 5.0
BATCH_MAX = 1000  # a backlog commit's events, for the hold measured (up to ingest.batch_max)
HOLD_BATCHES = (100, BATCH_MAX)  # commits of these many events hold commit_head...
HOLD_ROUNDS = 21  # ...this many times each
LIVE_RATE = 1000  # events/s the gateways send in the live measurement


def _server_pids(server: OwnPostgres) -> list[int]:
    """The PostgreSQL server's processes: the postmaster and its children."""
    postmaster = int((server.data / "postmaster.pid").read_text().split()[0])
    pids = [postmaster]
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                if int(stat[1]) == postmaster:
                    pids.append(int(entry.name))
    return pids


@contextlib.contextmanager
def _server(work: Path) -> Iterator[OwnPostgres]:
    server = OwnPostgres()
    try:
        server.init()
        yield server
    finally:
        server.remove()


def _database(server: OwnPostgres, name: str) -> str:
    with psycopg.connect(server.url.replace("/kerbside", "/postgres"), autocommit=True) as db:
        db.execute(f"CREATE DATABASE {name}".encode())
    url = server.url.replace("/kerbside", f"/{name}")
    migrate(url)
    return url


class _Node:
    """One ``kerbside-collector run`` of a cluster."""

    def __init__(self, workdir: Path, name: str, port: int, url: str, group: str, root: str):
        self.workdir = workdir / name
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.config = self.workdir / "collector.yaml"
        self.config.write_text(
            f"site: {workdir / 'site.yaml'}\n"
            f"mqtt: {{host: 127.0.0.1, port: {port}, topic_root: {root},"
            f" client_id: bench-{group}, shared_group: {group}}}\n"
            f"store: {{url: '{url}'}}\n"
            "http: null\n"
            "alert_delay_s: 1\n"
            f"cluster: {{node_id: {name}, lease_s: {LEASE_S}}}\n"
        )
        self.log = self.workdir / "collector.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, behind_ms: int = 0) -> None:
        env = {"STATE_DIRECTORY": str(self.workdir)}
        if behind_ms:
            anchor = _now()
            env["KERBSIDE_COLLECTOR_CLOCK"] = f"{format_instant(anchor - behind_ms)},1,{anchor}"
        mark = self.log.stat().st_size if self.log.exists() else 0
        self.proc = start_collector(self.config, self.log, env)
        proc = self.proc

        def logged() -> bool:
            with self.log.open("rb") as f:
                f.seek(mark)
                return b"connected to" in f.read()

        wait_until(f"collector {self.name} to connect", logged, 120, alive=[proc])

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            code = wait_exit(self.proc, f"collector {self.name} to stop", 120)
            if code != 0:
                raise BenchError(f"collector {self.name} exited with code {code}: see {self.log}")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


class Costs(NamedTuple):  # (run.py loads benches outside sys.modules: no dataclass)
    """What a run of events cost, per event."""

    collector_ms: float  # the collectors' CPU
    postgres_ms: float  # the PostgreSQL server's CPU
    wal_bytes: float  # WAL written
    stored_bytes: float  # the database's growth (tables and indexes)
    flushes: float  # WAL flushes to disk (fsync) per 1,000 events: the commits' IOPS
    flushes_per_s: float  # the same per second of the run


class Drain(NamedTuple):
    nodes: int
    rate: float  # events/s, first journaled to last followed
    costs: Costs


Db = psycopg.Connection[tuple[object, ...]]
_SIZES = "SELECT pg_current_wal_lsn() - '0/0'::pg_lsn, pg_database_size(current_database())"
# WAL flushes (fdatasync) the server made, every process's (commits' own, the WAL writer's)
_FLUSHES = "SELECT wal_sync FROM pg_stat_wal"
# The server's processes report their I/O counts at most once a second (and when they exit)
STATS_LAG_S = 1.5


def _flushes(db: Db) -> int:
    time.sleep(STATS_LAG_S)  # lets the counts made until now be reported
    row = db.execute(_FLUSHES).fetchone()
    assert row is not None
    return int(str(row[0]))


class _Meter:
    """The CPU the collectors and the server use, the WAL written, the database's growth and the
    WAL flushes, from its start to ``read``."""

    def __init__(self, db: Db, server: OwnPostgres) -> None:
        self._db = db
        self._server = server
        self._flushes = _flushes(db)
        self._postgres = cpu_seconds(_server_pids(server))
        self._sizes = self._read_sizes()
        self._began = time.monotonic()
        self._pids: list[int] = []
        self._collectors = 0.0

    def _read_sizes(self) -> tuple[int, int]:
        row = self._db.execute(_SIZES).fetchone()
        assert row is not None
        return int(str(row[0])), int(str(row[1]))

    def watch(self, nodes: list[_Node]) -> None:
        """Count these collectors' CPU from now."""
        self._pids = [n.proc.pid for n in nodes if n.proc is not None]
        self._collectors = cpu_seconds(self._pids)

    def read(self, events: int) -> Costs:
        collectors = cpu_seconds(self._pids) - self._collectors
        postgres = cpu_seconds(_server_pids(self._server)) - self._postgres
        (wal, stored), (wal0, stored0) = self._read_sizes(), self._sizes
        flushes = _flushes(self._db) - self._flushes
        took = time.monotonic() - self._began
        return Costs(
            1000 * collectors / events,
            1000 * postgres / events,
            (wal - wal0) / events,
            (stored - stored0) / events,
            1000 * flushes / events,
            flushes / took,
        )


def _drain(
    nodes: list[_Node], url: str, server: OwnPostgres, total: int, settled_after: int, used: int
) -> Drain:
    db = psycopg.connect(url, autocommit=True)
    first = 0.0
    journaled = 0
    followed = 0

    def done() -> bool:
        nonlocal first, journaled, followed
        row = db.execute(
            "SELECT (SELECT pos FROM commit_head), (SELECT count(*) FROM bays WHERE since >= %s)",
            (settled_after,),
        ).fetchone()
        assert row is not None
        journaled, followed = int(row[0]), int(row[1])
        if journaled and not first:
            first = time.monotonic()
        return journaled >= total and followed >= used

    meter = _Meter(db, server)
    for node in nodes:
        node.start()
    meter.watch(nodes)
    wait_until(
        f"{len(nodes)} collector(s) to journal and follow {total} events",
        done,
        1800,
        alive=[n.proc for n in nodes if n.proc is not None],
        detail=lambda: f"journal at {journaled}, {followed}/{used} bays settled",
        interval_s=0.05,
    )
    took = time.monotonic() - first
    costs = meter.read(total)
    for node in nodes:
        node.stop()
    db.close()
    return Drain(len(nodes), total / took, costs)


def _live(
    work: Path, broker: Mosquitto, server: OwnPostgres, bays: int, rate: int, seconds: int
) -> tuple[Costs, float]:
    """Two collectors live, the gateways publishing ``rate`` events/s for ``seconds``: what an
    event costs when batches are as small as the traffic makes them, and the rate the gateways
    kept."""
    url = _database(server, "live")
    nodes = [_Node(work, f"live-{name}", broker.port, url, "live", ROOT) for name in "ab"]
    db = psycopg.connect(url, autocommit=True)
    total = rate * seconds
    used = min(total // 4, bays)
    try:
        for node in nodes:
            node.start()
        wait_until(
            "the collectors to share their leases",
            lambda: len({r[0] for r in db.execute("SELECT node_id FROM zone_leases")}) == 2,
            60,
        )
        meter = _Meter(db, server)
        meter.watch(nodes)
        pub = _Publisher(broker.port)
        began = time.monotonic()
        burst = max(1, rate // 20)  # a burst every 50 ms
        settled_after = 0
        for k in range(total):
            if k % burst == 0:
                # paces the gateways: the next burst's moment
                time.sleep(max(0.0, began + k / rate - time.monotonic()))
            if k == total - used:
                settled_after = _now() - 10_000
            state = ("occupied", "vacant")[(k // used) % 2]
            pub.publish(*_event(k + 1, k % used, state, _now() - 10_000))
        kept = total / (time.monotonic() - began)
        pub.wait(total)
        pub.close()

        def done() -> bool:
            row = db.execute(
                "SELECT (SELECT pos FROM commit_head),"
                " (SELECT count(*) FROM bays WHERE since >= %s)",
                (settled_after,),
            ).fetchone()
            assert row is not None
            return int(str(row[0])) >= total and int(str(row[1])) >= used

        wait_until(
            f"the collectors to journal and follow {total} live events",
            done,
            300,
            alive=[n.proc for n in nodes if n.proc is not None],
        )
        costs = meter.read(total)
        for node in nodes:
            node.stop()
    finally:
        db.close()
        for node in nodes:
            node.kill()
    return costs, kept


def _head_hold_ms(url: str, batch: int) -> float:
    """The median time, in ms, a commit of ``batch`` events holds ``commit_head``: from its
    ``UPDATE`` of the head row (sent last, as the store does) to the end of its ``COMMIT``, with
    the store's own statements and rows like the drain's. Commits that write the journal take
    their turns through that one row: ``batch`` / this time is the most events per second one
    database can journal, however many collectors send them."""
    db = psycopg.connect(url, autocommit=True)
    rows = db.execute(
        "SELECT j.type, j.time, j.watermark, j.body, j.zone_id, e.event_id, e.digest"
        " FROM journal j JOIN events e ON e.pos = j.pos ORDER BY j.pos LIMIT %s",
        (batch,),
    ).fetchall()
    if len(rows) < batch:
        raise BenchError(f"{len(rows)} journaled events to copy, {batch} wanted")
    held = []
    for k in range(HOLD_ROUNDS):
        types, times, marks, bodies, zones, events, digests = columns(rows)
        events = [f"{e}:hold{batch}:{k}" for e in events]
        with db.pipeline(), db.transaction(), db.cursor() as cur:
            began = time.monotonic()
            cur.execute(_TAKE_IDS.encode(), (batch, 0))
            cur.execute(_INSERT_JOURNAL.encode(), (batch, types, times, marks, bodies, zones))
            cur.execute(
                _INSERT_EVENTS.encode(), (batch, events, list(range(1, batch + 1)), digests)
            )
        held.append(time.monotonic() - began)
    db.close()
    return 1000 * sorted(held)[HOLD_ROUNDS // 2]


def _ingest_rows(
    work: Path, broker: Mosquitto, server: OwnPostgres, bays: int, total: int
) -> list[Row]:
    _write_site(work / "site.yaml", bays)
    url_one, url_two = _database(server, "one"), _database(server, "two")
    one = [_Node(work, "solo", broker.port, url_one, "one", ROOT)]
    two = [_Node(work, name, broker.port, url_two, "two", ROOT) for name in ("a", "b")]
    try:
        for node in one + two:  # their sessions (and shared groups), on a clock before the backlog
            node.start(OFFSET_MS)
        for node in one + two:
            node.stop()
        used = total // 5
        t0, step = queue_backlog(broker.port, total, used)
        print(f"[bench] {total} events queued for both groups", file=sys.stderr)
        settled_after = t0 + (total - used) * step
        solo = _drain(one, url_one, server, total, settled_after, used)
        print(f"[bench] one collector: {solo}", file=sys.stderr)
        pair = _drain(two, url_two, server, total, settled_after, used)
        print(f"[bench] two collectors: {pair}", file=sys.stderr)
        holds = {n: _head_hold_ms(url_one, n) for n in HOLD_BATCHES}
        print(f"[bench] commit_head held (ms by events): {holds}", file=sys.stderr)
    finally:
        for node in one + two:
            node.kill()
    ratio = pair.rate / solo.rate
    return [
        Row(
            f"ingest, two collectors vs one on PostgreSQL, {total} events, 2 cores "
            f"({pair.rate:.0f}/s vs {solo.rate:.0f}/s)",
            f"{ratio:.2f}x",
            "report",
            True,
        ),
        *_cost_rows("draining a backlog, one / two collectors", [solo.costs, pair.costs]),
        _hold_row(holds),
    ]


def _hold_row(holds: dict[int, float]) -> Row:
    """commit_head's hold by a commit of n events, as fixed + n x per event, and the most events
    per second one database journals in commits of ``BATCH_MAX``."""
    (small, at_small), (big, at_big) = sorted(holds.items())
    per_event = (at_big - at_small) / (big - small)
    fixed = at_small - small * per_event
    return Row(
        f"commit_head held by a commit of {small:,} / {big:,} events (median of"
        f" {HOLD_ROUNDS}): fixed + per event; the most events/s one database journals",
        f"{at_small:.1f} / {at_big:.1f} ms: {fixed:.2f} ms + {1000 * per_event:.1f} us;"
        f" {big / at_big * 1000:,.0f}/s",
        "report",
        True,
    )


def _cost_rows(what: str, runs: list[Costs]) -> list[Row]:
    """The per-event costs of ``runs`` (docs/scaling.md's capacity model takes them)."""

    def figures(pattern: str, field: str) -> str:
        return " / ".join(pattern.format(getattr(c, field)) for c in runs)

    return [
        Row(
            f"{what}: CPU per event, collectors ms; PostgreSQL ms",
            f"{figures('{:.3f}', 'collector_ms')}; {figures('{:.3f}', 'postgres_ms')}",
            "report",
            True,
        ),
        Row(
            f"{what}: per event, WAL bytes; database growth bytes",
            f"{figures('{:.0f}', 'wal_bytes')}; {figures('{:.0f}', 'stored_bytes')}",
            "report",
            True,
        ),
        Row(
            f"{what}: WAL flushes (fsync) per 1,000 events; per second",
            f"{figures('{:.1f}', 'flushes')}; {figures('{:.0f}', 'flushes_per_s')}",
            "report",
            True,
        ),
    ]


def _live_rows(
    work: Path, broker: Mosquitto, server: OwnPostgres, bays: int, seconds: int
) -> list[Row]:
    costs, kept = _live(work, broker, server, bays, LIVE_RATE, seconds)
    print(f"[bench] live at {kept:.0f} events/s: {costs}", file=sys.stderr)
    return _cost_rows(f"live at {kept:,.0f} events/s, two collectors", [costs])


def _failover_rows(work: Path, broker: Mosquitto, server: OwnPostgres) -> list[Row]:
    """Kill a zone's owner while its alerts fall due one every 200 ms; the time to the zone's
    first alert published by the new owner."""
    root = "failover/v1"
    url = _database(server, "failover")
    site = work / "failover"
    site.mkdir()
    _write_site(site / "site.yaml", 1000)  # one zone, Z000; bay 0 of every ten is paid
    nodes = [_Node(site, name, broker.port, url, "fo", root) for name in ("a", "b")]
    arrivals: list[tuple[float, dict[str, object]]] = []
    watcher = mqtt.Client(CallbackAPIVersion.VERSION2)
    watcher.on_message = lambda _c, _u, m: arrivals.append((time.time(), json.loads(m.payload)))
    watcher.connect("127.0.0.1", broker.port)
    watcher.subscribe(f"{root}/alerts/Z000", 1)
    watcher.loop_start()
    gateway = mqtt.Client(CallbackAPIVersion.VERSION2)
    gateway.connect("127.0.0.1", broker.port)
    gateway.loop_start()
    try:
        for node in nodes:
            node.start()
        db = psycopg.connect(url, autocommit=True)

        def owner() -> str | None:
            row = db.execute(
                "SELECT node_id FROM zone_leases WHERE zone_id = 'Z000' AND expires > now()"
            ).fetchone()
            return None if row is None else str(row[0])

        wait_until("a zone owner", lambda: owner() is not None, 60)
        wait_until(
            "the collectors to share their leases",
            lambda: len({r[0] for r in db.execute("SELECT node_id FROM zone_leases")}) == 2,
            60,
        )
        # sixty paid bays (0, 10, ...) occupied a minute ago, 200 ms apart: their unpaid alerts
        # fall due one every 200 ms from 4 s on
        start = _now()
        for k in range(60):
            at = start - 60_000 + 4_000 + k * 200
            topic, text = _event(k + 1, k * 10, "occupied", at)
            body = json.loads(text)
            body["event_id"] = f"{body['gateway_id']}:failover:{k + 1}"
            body["ts"] = body["confirmed_ts"] = format_instant(at)
            published = gateway.publish(topic.replace(ROOT, root), json.dumps(body), qos=1)
            published.wait_for_publish(10)
        victim = next(n for n in nodes if n.name == owner())
        wait_until(
            "the owner's first alerts",
            lambda: sum(1 for _, r in arrivals if r.get("status") == "open") >= 3,
            30,
        )
        killed = time.time()
        victim.kill()
        wait_until(
            "the zone's first alert on its new owner",
            lambda: any(at > killed and r.get("status") == "open" for at, r in arrivals),
            LEASE_S * 4,
        )
        first = min(at for at, r in arrivals if at > killed and r.get("status") == "open")
        db.close()
    finally:
        for node in nodes:
            node.kill()
        watcher.loop_stop()
        gateway.loop_stop()
    took = first - killed
    return [
        Row(
            f"failover: SIGKILL of a zone's owner to its first alert on the new owner "
            f"(lease_s {LEASE_S:g})",
            f"{took:.2f} s",
            f"<= {LEASE_S + 2:g} s",
            took <= LEASE_S + 2,
        )
    ]


def run(quick: bool) -> list[Row]:
    bays = 2_000 if quick else 10_000
    total = int(os.environ.get("BENCH_CLUSTER_EVENTS") or (10_000 if quick else 40_000))
    with tempfile.TemporaryDirectory(prefix="bench-cluster-") as tmp:
        work = Path(tmp)
        broker = Mosquitto(work / "mosquitto", "autosave_interval 60\n").start()
        try:
            with _server(work) as server:
                rows = attempt(
                    "ingest, two collectors vs one on PostgreSQL",
                    lambda: _ingest_rows(work, broker, server, bays, total),
                )
                rows += attempt(
                    f"live at {LIVE_RATE:,} events/s, two collectors",
                    lambda: _live_rows(work, broker, server, bays, 10 if quick else 30),
                )
                rows += attempt(
                    "failover to the zone's first alert",
                    lambda: _failover_rows(work, broker, server),
                )
                return rows
        finally:
            broker.stop()


if __name__ == "__main__":
    for row in run("--quick" in sys.argv):
        print(row)
