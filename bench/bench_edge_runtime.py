"""Edge runtime figures: the real agent's memory with 200 sensors, how fast an on-disk backlog
drains to a local Mosquitto, and what a broker outage plus a SIGKILL lose or duplicate.

    python bench/run.py edge_runtime            # full (about 2 minutes)
    python bench/run.py edge_runtime --quick    # smaller backlog, shorter runs
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import paho.mqtt.client as mqtt
import yaml
from common import Row
from paho.mqtt.enums import CallbackAPIVersion

from kerbside.edge.model import OccupancyChange
from kerbside.edge.outbox import Outbox
from tests.helpers import Mosquitto

BIN = Path(sys.executable).parent


def _disk_dir() -> Path:
    """A scratch dir on a real disk (not tmpfs), as a gateway's SD card would be."""
    for base in (Path("/var/tmp"), ROOT):
        fs = subprocess.run(
            ["df", "--output=fstype", str(base)], capture_output=True, text=True, check=False
        ).stdout.split()
        if fs and fs[-1] not in ("tmpfs", "ramfs"):
            return Path(tempfile.mkdtemp(prefix="kerbside-bench-", dir=base))
    raise RuntimeError("no disk-backed directory found for the outbox")


@contextmanager
def _workdir() -> Iterator[Path]:
    path = _disk_dir()
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


class _Subscriber:
    def __init__(self, port: int, topic: str, *, persistent: bool = True) -> None:
        self.events: list[dict[str, Any]] = []
        self.times: list[float] = []
        self.lock = threading.Lock()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"bench-{uuid.uuid4().hex[:8]}",
            clean_session=not persistent,
        )  # fmt: skip
        self.client.reconnect_delay_set(min_delay=1, max_delay=2)
        ready = threading.Event()
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(topic, qos=1)
        self.client.on_subscribe = lambda c, u, m, rc, p: ready.set()
        self.client.on_message = self._message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        if not ready.wait(10):
            raise RuntimeError("subscriber not subscribed")

    def _message(self, client: Any, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        if msg.topic.endswith("/events"):
            with self.lock:
                self.events.append(json.loads(msg.payload))
                self.times.append(time.monotonic())

    def distinct(self) -> int:
        with self.lock:
            return len({e["event_id"] for e in self.events})

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _wait(predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def _agent(config: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [str(BIN / "kerbside-edge"), "run", "--config", str(config)], stdout=out, stderr=out
        )


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _sim(workdir: Path, sensors: int, speed: float) -> tuple[subprocess.Popen[str], Path]:
    config = workdir / "sim-edge.yaml"
    proc = subprocess.Popen(
        [str(BIN / "kerbside-sim"), "serial", "--sensors", str(sensors), "--speed", str(speed),
         "--seed", "11", "--dir", str(workdir / "ttys"), "--config-out", str(config)],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    for _ in range(-(-sensors // 50)):
        if not proc.stdout.readline():
            raise RuntimeError("kerbside-sim serial exited early")
    return proc, config


def _edge_config(base: Path | None, port: int, outbox: Path, path: Path, **extra: Any) -> Path:
    config: dict[str, Any] = {"gateway_id": "gw-bench", "sensors": []}
    if base is not None:
        config = yaml.safe_load(base.read_text())
    config["mqtt"] = {"host": "127.0.0.1", "port": port, "topic_root": "bench"}
    config["outbox"] = {"path": str(outbox), "max_mb": 256}
    config["clock"] = {"require_sync": False}
    config.update(extra)
    path.write_text(yaml.safe_dump(config))
    return path


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM")


def bench_rss(quick: bool) -> Row:
    """Peak RSS of the real agent reading 200 simulated sensors on 4 ptys (10x real time)."""
    seconds = 10 if quick else 30
    with _workdir() as work:
        broker = Mosquitto(work / "mosquitto").start()
        sim, sim_config = _sim(work, 200, speed=10)
        config = _edge_config(sim_config, broker.port, work / "outbox.db", work / "edge.yaml")
        agent = _agent(config, work / "agent.log")
        try:
            time.sleep(seconds)
            peak = _peak_rss_mb(agent.pid)
            alive = agent.poll() is None
        finally:
            _stop(agent)
            sim.terminate()
            sim.wait()
            if sim.stdout is not None:
                sim.stdout.close()
            broker.stop()
    return Row(
        "edge agent peak RSS, 200 sensors (MB)", f"{peak:.1f}", "<= 60", alive and peak <= 60
    )


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def bench_drain(quick: bool) -> Row:
    """A backlog already in the outbox (on disk) drained by the real agent to a local broker.

    The subscriber is ``mosquitto_sub`` (C), so that counting does not eat the CPU the agent
    and the broker need; each line's arrival is timed, the JSON checked afterwards.
    """
    total = 10_000 if quick else 50_000
    with _workdir() as work:
        outbox_path = work / "outbox.db"
        outbox = Outbox(outbox_path, "gw-bench")
        for start in range(0, total, 1000):
            outbox.append(
                [OccupancyChange(f"BAY-{i % 200:03d}", f"S-{i % 200:03d}", "occupied",
                                 i * 1000, i * 1000 + 10_000) for i in range(start, start + 1000)]
            )  # fmt: skip
        outbox.close()
        broker = Mosquitto(work / "mosquitto").start()
        sub = subprocess.Popen(
            ["mosquitto_sub", "-h", "127.0.0.1", "-p", str(broker.port), "-q", "1",
             "-t", "bench/gw/gw-bench/events", "-C", str(total)],
            stdout=subprocess.PIPE,
        )  # fmt: skip
        assert sub.stdout is not None
        lines: list[bytes] = []
        times: list[float] = []

        def read() -> None:
            assert sub.stdout is not None
            for line in sub.stdout:
                times.append(time.monotonic())
                lines.append(line)

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        time.sleep(0.5)  # subscribed before the agent starts
        config = _edge_config(None, broker.port, outbox_path, work / "edge.yaml")
        started = time.monotonic()
        agent = _agent(config, work / "agent.log")
        try:
            done = _wait(lambda: len(lines) >= total, 300)
            cpu = _cpu_seconds(agent.pid)
        finally:
            _stop(agent)
            if sub.poll() is None:
                sub.kill()
            sub.wait()
            reader.join(5)
            sub.stdout.close()
            broker.stop()
        conn = sqlite3.connect(outbox_path)
        left = conn.execute("SELECT COUNT(*) FROM events").fetchone()[0]
        conn.close()
    seqs = [json.loads(line)["seq"] for line in lines]
    in_order = seqs == sorted(seqs) and len(set(seqs)) == total
    first, last = times[0], times[-1]
    rate = total / (last - first) if done else 0.0
    print(
        f"[bench] drain: {total} events, first after {first - started:.2f}s from process start, "
        f"{rate:.0f}/s first to last, in seq order: {in_order}, {left} left in outbox after stop; "
        f"agent CPU {cpu:.1f}s ({total / cpu:.0f} events per CPU-second, incl. start-up); "
        f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs",
        file=sys.stderr,
    )
    label = f"outbox backlog drain, {total // 1000}k events on disk (events/s)"
    return Row(label, f"{rate:.0f}", ">= 2000", done and in_order and left == 0 and rate >= 2000)


def bench_fault(quick: bool) -> list[Row]:
    """Broker outages and agent SIGKILLs mid-stream, repeated; then every event is checked."""
    rounds = 2 if quick else 4
    with _workdir() as work:
        broker = Mosquitto(work / "mosquitto").start()
        sub = _Subscriber(broker.port, "bench/#")
        sim, sim_config = _sim(work, 100, speed=60)
        outbox_path = work / "outbox.db"
        config = _edge_config(
            sim_config, broker.port, outbox_path, work / "edge.yaml",
            detector={"confirm_occupied_s": 1.5, "confirm_vacant_s": 1.5, "silence_s": 120},
        )  # fmt: skip
        log = work / "agent.log"
        agent = _agent(config, log)

        def last_seq() -> int:
            conn = sqlite3.connect(f"{outbox_path.as_uri()}?mode=ro", uri=True)
            try:
                return int(
                    conn.execute("SELECT value FROM meta WHERE key='last_seq'").fetchone()[0]
                )
            finally:
                conn.close()

        try:
            _wait(lambda: sub.distinct() >= 5, 60)
            for _ in range(rounds):
                broker.stop()
                before = last_seq()
                _wait(lambda b=before: last_seq() >= b + 5, 30)  # type: ignore[misc]
                agent.kill()
                agent.wait()
                agent = _agent(config, log)
                time.sleep(1.0)
                broker.start()
                before = last_seq()
                _wait(lambda b=before: last_seq() >= b + 5, 30)  # type: ignore[misc]
            _stop(agent)
            final = last_seq()
            _wait(lambda: sub.distinct() >= final, 30)
        finally:
            _stop(agent)
            sim.terminate()
            sim.wait()
            if sim.stdout is not None:
                sim.stdout.close()
            sub.close()
            broker.stop()
    with sub.lock:
        events = list(sub.events)
    ids = {e["event_id"] for e in events}
    seqs_first: list[int] = []
    seen: set[str] = set()
    for e in events:
        if e["event_id"] not in seen:
            seen.add(e["event_id"])
            seqs_first.append(e["seq"])
    lost = len(set(range(1, final + 1)) - set(seqs_first))
    # The same detection under two ids would be a duplicate the collector cannot catch.
    bodies = [(e["bay_id"], e["state"], e["ts"], e["confirmed_ts"]) for e in events]
    by_body: dict[tuple[str, ...], set[str]] = {}
    for body, e in zip(bodies, events, strict=True):
        by_body.setdefault(body, set()).add(e["event_id"])
    duplicated = sum(len(v) - 1 for v in by_body.values())
    in_order = seqs_first == sorted(seqs_first)
    redelivered = len(events) - len(ids)
    print(
        f"[bench] fault: {rounds} outage+SIGKILL rounds, {final} events, {lost} lost, "
        f"{duplicated} duplicated, in seq order: {in_order}, QoS 1 redeliveries of an id: "
        f"{redelivered}",
        file=sys.stderr,
    )
    return [
        Row(f"edge fault test ({rounds} outages + SIGKILLs): events lost", str(lost), "0",
            lost == 0 and in_order and final > 0),
        Row("edge fault test: events duplicated (new id)", str(duplicated), "0", duplicated == 0),
    ]  # fmt: skip


def run(quick: bool) -> list[Row]:
    return [bench_rss(quick), bench_drain(quick), *bench_fault(quick)]


if __name__ == "__main__":
    for row in run("--quick" in sys.argv):
        print(row)
