"""What the collector spends deciding and committing an event, without a broker or InfluxDB.

    python tools/decide_cost.py                     # CPU per event (this checkout's code)
    python tools/decide_cost.py --instructions      # instructions per event, under valgrind
    python tools/decide_cost.py --events 200000 --every 20000   # how the cost moves as the
                                                    # store grows, a line a slice on stderr

For comparing two versions of the collector's hot path where a drain's rate (``bench/run.py
peer``) moves by a third from one run to the next, as it does on a shared virtual machine: the
instruction count of the same code on the same stream is the same to the instruction from run
to run (the hash seed fixed, no clock deciding what is done), so a change of half a per cent
shows. Run it from each checkout and compare.

It feeds ``--events`` events of the peer bench's stream (1,000 bays on 10 gateways, each event
flipping its bay) to the collector's unit of work as a backlog drains (``CommitCycle``, batches
of 2,000, the rules' clock held), into a SQLite store on a file, with each point's InfluxDB line
made and spooled in the commit but not sent. Not in it: the MQTT link, sending to InfluxDB, and
the rules' periodic save (every 5 s of wall time: under valgrind it would come 50 times as
often). The instruction count is the whole process's (the commit thread too), less that of a run
that stops once the events are made.

With ``--every N``, a line on stderr for each N events: the CPU per event in that slice (the
event loop's and the process's), the bytes the process wrote per event (the write-ahead log and
its checkpoints into the database file), and the store's size. The cost of a
commit grows with the store's tables: an index kept in bay order takes each new row on its bay's
page, so a batch marks a page a bay changed, until there are more pages than bays.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SOURCES = ("collector", "core", "demo", "edge", "firmware-sim")
BATCH = 2000
# the peer bench's stream and site, and the tests' broker link with no broker
sys.path[:0] = [str(REPO), str(REPO / "bench")]

from bench_collector import _write_site  # noqa: E402
from bench_peer import BAYS, ROOT, STEP_MS, event  # noqa: E402

from kerbside.collector import cycle as cycle_module  # noqa: E402
from kerbside.collector.config import load_config  # noqa: E402
from kerbside.collector.link import Message  # noqa: E402
from kerbside.collector.runtime import Collector, SinkView, assemble, wall_ms  # noqa: E402
from kerbside.collector.store.opening import open_store  # noqa: E402
from kerbside.collector.timeseries import create_sink  # noqa: E402
from kerbside.core.site import load_site  # noqa: E402
from kerbside.core.version import VERSION  # noqa: E402
from tests.helpers import FakeLink  # noqa: E402


def _write_setup(work: Path) -> Path:
    _write_site(work / "site.yaml", BAYS)
    config = work / "collector.yaml"
    config.write_text(
        "site: site.yaml\n"
        f"mqtt: {{host: 127.0.0.1, port: 1883, topic_root: {ROOT}, client_id: cost}}\n"
        "store: {path: collector.db}\n"
        "http: null\n"
        "alert_delay_s: 15\n"
        "influxdb: {url: 'http://127.0.0.1:9', api: v1, database: cost}\n"
    )
    return config


def _messages(count: int, now: int) -> list[Message]:
    """The peer bench's stream (event ``i`` flips bay ``i % 1000``), as the link hands it over."""
    base = now - count * STEP_MS - 600_000
    return [Message(*event(i, base), 1, i % 65535 + 1, 1, now) for i in range(count)]


def _written_bytes() -> int:
    """Bytes this process has had written to storage so far (``/proc/self/io``)."""
    fields = dict(line.split(": ") for line in Path("/proc/self/io").read_text().splitlines())
    return int(fields["write_bytes"])


class _Slices:
    """A line on stderr every ``every`` events: what that slice cost (see ``--every``)."""

    def __init__(self, every: int, loop_thread: int, store_path: Path) -> None:
        self.every, self._loop, self._path = every, loop_thread, store_path
        self._done = 0
        self._mark = self._now()

    def _now(self) -> tuple[float, float, int]:
        return (_thread_cpu_s(self._loop), time.process_time(), _written_bytes())

    def passed(self, done: int) -> None:
        """``done`` events decided so far: a line if that ends a slice."""
        if not self.every or done // self.every == self._done // self.every:
            return
        now = self._now()
        n = done - self._done
        loop, process, wrote = (b - a for a, b in zip(self._mark, now, strict=True))
        size = sum(p.stat().st_size for p in self._path.parent.glob(self._path.name + "*"))
        print(
            f"{done:,} events: CPU {process / n * 1e6:.1f} us an event (event loop"
            f" {loop / n * 1e6:.1f}), {wrote / n:,.0f} bytes written an event,"
            f" store {size / 2**20:,.0f} MiB",
            file=sys.stderr,
            flush=True,
        )
        self._mark, self._done = now, done


def _thread_cpu_s(native_id: int) -> float:
    fields = Path(f"/proc/self/task/{native_id}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _measure(count: int, *, setup_only: bool, every: int = 0) -> str:
    work = Path(tempfile.mkdtemp(prefix="kerbside-decide-cost-"))
    every_s = cycle_module.SNAPSHOT_EVERY_S
    cycle_module.SNAPSHOT_EVERY_S = float("inf")  # no periodic save: see the module's docstring
    try:
        os.chdir(work)
        config = load_config(_write_setup(work))
        assert config.influxdb is not None
        site = load_site(config.site)
        store = open_store(config.store)
        built: list[Collector] = []
        sink = create_sink(
            config.influxdb,
            SinkView(lambda: built[0].queries, wall_ms),
            store_path=config.store.path,
            delay_s=config.alert_delay_s,
            store=store,
        )
        link = FakeLink()
        built.append(assemble(config, site, store, link, clock=wall_ms, sink=sink))
        cycle = built[0].cycle
        cycle.hold()  # a backlog: the rules' clock held, bay states published once it is in
        messages = _messages(count, wall_ms())
        if setup_only:
            return "events made"
        loop_thread = threading.get_native_id()
        loop0, process0, wall0 = (
            _thread_cpu_s(loop_thread),
            time.process_time(),
            time.perf_counter(),
        )
        slices = _Slices(every, loop_thread, work / config.store.path)
        for k in range(0, count, BATCH):
            await cycle.ingest_next(messages[k : k + BATCH])
            slices.passed(min(k + BATCH, count))
        await cycle.settle()
        wall = time.perf_counter() - wall0
        loop, process = _thread_cpu_s(loop_thread) - loop0, time.process_time() - process0
        if len(link.acked) != count:
            raise RuntimeError(f"{len(link.acked)} of {count} events acknowledged")
        store.close()
        return (
            f"{count} events: CPU {process / count * 1e6:.1f} us an event"
            f" (event loop {loop / count * 1e6:.1f}), {count / wall:,.0f} events/s"
        )
    finally:
        cycle_module.SNAPSHOT_EVERY_S = every_s
        os.chdir(REPO)
        shutil.rmtree(work, ignore_errors=True)


def _instructions(count: int) -> str:
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        raise SystemExit("decide_cost: valgrind not found (Debian: apt-get install valgrind)")
    env = {
        **os.environ,
        "PYTHONHASHSEED": "0",
        "PYTHONPATH": os.pathsep.join(
            [*(str(REPO / s) for s in SOURCES), os.environ.get("PYTHONPATH", "")]
        ),
    }

    def refs(*extra: str) -> int:
        what = "making the events only" if extra else "the events"
        print(f"decide_cost: under valgrind, {what} ...", file=sys.stderr)
        done = subprocess.run(  # noqa: S603 (valgrind from PATH, running this very file)
            [
                valgrind,
                "--tool=cachegrind",
                "--cache-sim=no",
                "--cachegrind-out-file=/dev/null",
                sys.executable,
                __file__,
                "--events",
                str(count),
                *extra,
            ],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        found = re.search(r"I\s+refs:\s+([\d,]+)", done.stderr)
        if done.returncode != 0 or found is None:
            tail = done.stderr.strip().splitlines()[-1:] or ["no output"]
            raise SystemExit(f"decide_cost: the run under valgrind failed: {tail[0]}")
        return int(found.group(1).replace(",", ""))

    with ThreadPoolExecutor(2) as pool:  # the two runs side by side: a core each
        full, setup = pool.map(lambda extra: refs(*extra), [(), ("--setup-only",)])
    return (
        f"{count} events: {(full - setup) / count:,.0f} instructions an event"
        f" ({full:,} in all, {setup:,} of them making the events)"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="decide_cost",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        epilog="Compare two checkouts by running each one's copy of this tool.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {VERSION}")
    parser.add_argument(
        "--events",
        type=int,
        default=20_000,
        help="events to decide and commit (default 20,000; at least 2,000; under valgrind"
        " 6,000 take about a minute)",
    )
    parser.add_argument(
        "--instructions",
        action="store_true",
        help="count instructions under valgrind's cachegrind instead of timing",
    )
    parser.add_argument(
        "--every",
        type=int,
        default=0,
        metavar="N",
        help="also a line on stderr for each N events: that slice's CPU, bytes written,"
        " the store's size (not with --instructions)",
    )
    parser.add_argument("--setup-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if not 2000 <= args.events <= 10_000_000:
        parser.error("--events: between 2,000 and 10,000,000")
    if args.every < 0 or (args.every and args.instructions):
        parser.error("--every: a number of events >= 1, and not with --instructions")
    if args.instructions:
        print(_instructions(args.events))
    else:
        print(asyncio.run(_measure(args.events, setup_only=args.setup_only, every=args.every)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
