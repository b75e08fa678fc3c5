"""Ingest through one collector on PostgreSQL, as a ratio of the same collector on SQLite,
measured in one run on one broker:

a backlog of N occupancy events is queued at a private Mosquitto for two persistent sessions
(a collector on a SQLite file, a collector on a PostgreSQL database), in four rounds of N/4:
in each, each collector is started alone and drains the round's events through the whole
collector (validate, de-duplicate, store, rules, bay states out), SQLite first in rounds 1 and
3, PostgreSQL first in 2 and 4, so that a change in the shared machine's load weighs on both.
The rate is events journaled per second, from the first to the last of each round, over the
rounds. The collector's own CPU per event meanwhile is printed beside it (SQLite's work is in
the collector's process, PostgreSQL's in the server's).

The PostgreSQL database is on a server of the bench's own (``initdb`` into a temporary
directory, default settings), as a collector's database would be on a server of its own: on a
server other work shares (other databases' checkpoints, a ``DROP DATABASE``'s forced one, their
WAL flushes) the commits wait for that work, which the SQLite file never does, and the ratio
measures the neighbours. ``KERBSIDE_BENCH_PG`` (an admin URL such as
``postgresql://postgres@db.internal:5432/postgres``) measures on that server instead, in a fresh
database dropped afterwards. ``synchronous_commit`` stays on, as in production.

    python bench/run.py pg [--quick]
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
from bench_collector import OFFSET_MS, ROOT, _Collector, _event, _now, _Publisher, _write_site
from common import Row, attempt, cpu_seconds, wait_until

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kerbside.collector.store.postgres import migrate
from tests.helpers import Mosquitto
from tests.pg import own_postgres

ADMIN_URL = os.environ.get("KERBSIDE_BENCH_PG")
ROUNDS = 4  # the backlog is queued and drained in this many rounds, the stores' order alternating


@contextlib.contextmanager
def _database() -> Iterator[str]:
    """A migrated database: on a server of the bench's own, or in ``ADMIN_URL``'s server."""
    if ADMIN_URL is None:
        with own_postgres() as server:
            yield server.url
        return
    name = f"kerbside_bench_{os.getpid()}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)".encode())
        admin.execute(f"CREATE DATABASE {name}".encode())
    url = urllib.parse.urlunsplit(urllib.parse.urlsplit(ADMIN_URL)._replace(path=f"/{name}"))
    try:
        migrate(url)
        yield url
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)".encode())


class _On(_Collector):
    """bench_collector's collector, on a store of the bench's choosing, with a session of its
    own at the broker."""

    def __init__(self, workdir: Path, port: int, store: str, client_id: str) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        super().__init__(workdir, port)
        self.config.write_text(
            "site: ../site.yaml\n"
            f"mqtt: {{host: 127.0.0.1, port: {port}, topic_root: {ROOT}, client_id: {client_id}}}\n"
            f"store: {store}\n"
            "http: null\n"
            "alert_delay_s: 15\n"
        )

    def start(self, behind_ms: int = 0) -> float:
        # a PostgreSQL collector's one file, its site cache: in the bench's directory
        before = os.environ.get("STATE_DIRECTORY")
        os.environ["STATE_DIRECTORY"] = str(self.workdir)
        try:
            return super().start(behind_ms)
        finally:
            if before is None:
                del os.environ["STATE_DIRECTORY"]
            else:
                os.environ["STATE_DIRECTORY"] = before


def _drain(
    coll: _On, after: int, upto: int, last_ts: int, progress: Callable[[], tuple[int, int]]
) -> tuple[float, float]:
    """The seconds the collector took to journal positions ``after`` + 1 to ``upto``, from the
    first to the last, and the CPU seconds it used meanwhile; ``progress`` reads (journal's last
    position, the rules' clock) from the store."""
    first = 0.0
    cpu = 0.0
    pos = 0

    def drained() -> bool:
        nonlocal first, cpu, pos
        pos, clock = progress()
        if pos > after and not first:
            first = time.monotonic()
            cpu = cpu_seconds([proc.pid])
        return pos >= upto and clock >= last_ts

    assert coll.proc is not None
    proc = coll.proc
    wait_until(
        f"the collector to journal up to position {upto}",
        drained,
        900,
        alive=[coll.proc],
        detail=lambda: f"journal at {pos}",
        interval_s=0.02,
    )
    return time.monotonic() - first, cpu_seconds([proc.pid]) - cpu


def _sqlite_progress(path: Path) -> Callable[[], tuple[int, int]]:
    db = sqlite3.connect(path, timeout=30)

    def read() -> tuple[int, int]:
        with contextlib.suppress(sqlite3.OperationalError):
            pos = db.execute("SELECT MAX(pos) FROM journal").fetchone()[0] or 0
            row = db.execute("SELECT value FROM kv WHERE key = 'watermark'").fetchone()
            return int(pos), 0 if row is None else int(row[0])
        return 0, 0

    return read


def _postgres_progress(url: str) -> Callable[[], tuple[int, int]]:
    db = psycopg.connect(url, autocommit=True)

    def read() -> tuple[int, int]:
        row = db.execute(
            "SELECT pos, (SELECT value FROM kv WHERE key = 'watermark') FROM commit_head"
        ).fetchone()
        assert row is not None
        return int(row[0]), 0 if row[1] is None else int(row[1])

    return read


def _rows(work: Path, broker: Mosquitto, bays: int, total: int) -> list[Row]:
    _write_site(work / "site.yaml", bays)
    with _database() as url:
        on_sqlite = _On(work / "sqlite", broker.port, "{path: collector.db}", "bench-pg-sqlite")
        on_pg = _On(work / "pg", broker.port, f"{{url: '{url}'}}", "bench-pg-postgres")
        try:
            for coll in (on_sqlite, on_pg):  # their sessions, on a clock before the backlog
                coll.start(OFFSET_MS)
                coll.stop()
            t0 = _now() - OFFSET_MS + 60_000
            step = 3_600_000 // total
            used = min(total // 5, bays)  # the bays the events go to, in turn
            per = total // ROUNDS
            stores = {
                "sqlite": (on_sqlite, _sqlite_progress(on_sqlite.workdir / "collector.db")),
                "postgres": (on_pg, _postgres_progress(url)),
            }
            took = dict.fromkeys(stores, 0.0)
            cpu = dict.fromkeys(stores, 0.0)
            for r in range(ROUNDS):
                pub = _Publisher(broker.port)
                for k in range(r * per, (r + 1) * per):
                    state = ("occupied", "vacant")[(k // used) % 2]
                    pub.publish(*_event(k + 1, k % used, state, t0 + k * step))
                pub.wait(per, limit_s=1800)
                pub.close()
                last_ts = t0 + ((r + 1) * per - 1) * step
                # one store first, then the other, then the other way round: a change in the
                # machine's load during the run weighs on both alike
                for name in ("sqlite", "postgres")[:: 1 if r % 2 == 0 else -1]:
                    coll, progress = stores[name]
                    coll.start()
                    seconds, used_cpu = _drain(coll, r * per, (r + 1) * per, last_ts, progress)
                    coll.stop()
                    took[name] += seconds
                    cpu[name] += used_cpu
                    print(
                        f"[bench] round {r + 1}, {name}: {per / seconds:.0f} events/s",
                        file=sys.stderr,
                    )
            total = per * ROUNDS
            rates = {name: total / took[name] for name in stores}
            cpu = {name: 1000 * cpu[name] / total for name in stores}
        finally:
            on_sqlite.kill()
            on_pg.kill()
    ratio = rates["postgres"] / rates["sqlite"]
    return [
        Row(
            f"ingest through one collector, PostgreSQL vs SQLite, {total} events "
            f"({rates['postgres']:.0f}/s vs {rates['sqlite']:.0f}/s)",
            f"{ratio:.2f}x",
            ">= 0.7x",
            ratio >= 0.7,
        ),
        Row(
            "the collector's own CPU per event meanwhile, on PostgreSQL / on SQLite (its store"
            " included: SQLite works in the collector's process, PostgreSQL in its own)",
            f"{cpu['postgres']:.3f} / {cpu['sqlite']:.3f} ms",
            "report",
            True,
        ),
    ]


def run(quick: bool) -> list[Row]:
    bays = 2_000 if quick else 10_000
    total = int(os.environ.get("BENCH_PG_EVENTS") or (20_000 if quick else 100_000))
    with tempfile.TemporaryDirectory(prefix="bench-pg-") as tmp:
        work = Path(tmp)
        broker = Mosquitto(work / "mosquitto", "autosave_interval 60\n").start()
        try:
            return attempt(
                "ingest through one collector, PostgreSQL vs SQLite",
                lambda: _rows(work, broker, bays, total),
            )
        finally:
            broker.stop()


if __name__ == "__main__":
    for row in run("--quick" in sys.argv):
        print(row)
