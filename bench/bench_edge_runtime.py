"""Edge runtime figures: the real agent's memory with 200 sensors, how fast an on-disk backlog
drains to a local Mosquitto, and what a broker outage plus a SIGKILL lose or duplicate.

    python bench/run.py edge_runtime            # full (about 2 minutes)
    python bench/run.py edge_runtime --quick    # smaller backlog, shorter runs
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import signal
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
from common import BenchError, Row, attempt, read_outbox, wait_exit, wait_until
from paho.mqtt.enums import CallbackAPIVersion

from kerbside.core.instants import parse_instant
from kerbside.edge.model import OccupancyChange
from kerbside.edge.outbox import Outbox
from tests.helpers import Mosquitto

BIN = Path(sys.executable).parent
FENCE_TOPIC = "bench/fence"
PROBE_TOPIC = "bench/probe"
# An agent retries its broker after 1 s, doubling up to 30 s (jittered): one that has failed
# several times while a loaded machine restarted the broker may wait up to that cap before its
# next attempt, so the limit is the cap plus as much again for a loaded machine; a quiet one
# reconnects within a second or two. Reaching a limit fails the bench.
RECONNECT_LIMIT_S = 60
DRAIN_LIMIT_S = 60


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
    """A paho subscriber (persistent session) that keeps every event, the agent's status
    messages and its last health record."""

    def __init__(self, port: int, topic: str, *, persistent: bool = True) -> None:
        self.events: list[dict[str, Any]] = []
        self.online_at: list[int] = []  # ts of each online:true status seen
        self.frames: dict[str, int] = {}  # sensor -> frames, from the latest health
        self.fences: set[str] = set()
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
        wait_until(f"the bench's subscription to {topic}", ready.is_set, 10)

    def _message(self, client: Any, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        leaf = msg.topic.rsplit("/", 1)[-1]
        with self.lock:
            if leaf == "events":
                self.events.append(json.loads(msg.payload))
            elif leaf == "status":
                body = json.loads(msg.payload)
                if body["online"]:
                    self.online_at.append(parse_instant(body["ts"]))
            elif leaf == "health":  # a big sensor list comes in several messages
                for sensor in json.loads(msg.payload)["sensors"]:
                    self.frames[sensor["sensor_id"]] = sensor["frames"]
            elif msg.topic.startswith(FENCE_TOPIC):
                self.fences.add(msg.payload.decode())

    def distinct(self) -> int:
        with self.lock:
            return len({e["event_id"] for e in self.events})

    def online_since(self, instant: int) -> int | None:
        """The stamp of the first online:true status at or after ``instant`` (the agent
        connected since then), or None."""
        with self.lock:
            return min((ts for ts in self.online_at if ts >= instant), default=None)

    def sensors_heard(self) -> int:
        with self.lock:
            return sum(1 for frames in self.frames.values() if frames > 0)

    def fence(self, port: int) -> None:
        """Publish a marker through the broker and wait until it comes back: the broker delivers
        a subscriber's messages in the order it took them, so everything the agent handed the
        broker before now has reached this subscriber."""
        token = uuid.uuid4().hex
        marker = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-fence-{token[:8]}")
        marker.connect("127.0.0.1", port)
        marker.loop_start()
        try:
            marker.publish(f"{FENCE_TOPIC}/{token}", token, qos=1)

            def arrived() -> bool:
                with self.lock:
                    return token in self.fences

            wait_until("a marker sent through the broker to reach the subscriber", arrived, 30)
        finally:
            marker.disconnect()
            marker.loop_stop()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _agent(config: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [str(BIN / "kerbside-edge"), "run", "--config", str(config)], stdout=out, stderr=out
        )


def _stop(proc: subprocess.Popen[bytes], what: str) -> None:
    """SIGTERM and wait for a clean exit; anything else is the bench's failure, loudly."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        code = wait_exit(proc, f"{what} to stop after SIGTERM", 30)
    else:
        code = proc.returncode
    if code != 0:
        raise BenchError(f"{what} exited with code {code}")


def _stop_broker(broker: Mosquitto) -> None:
    """Stop the broker cleanly (it saves its sessions and queues on the way out), or fail: a
    killed broker could lose messages it had acknowledged, which would count as lost here."""
    assert broker.proc is not None
    broker.proc.send_signal(signal.SIGTERM)
    if wait_exit(broker.proc, "mosquitto to stop after SIGTERM", 10) != 0:
        raise BenchError(f"mosquitto exited with code {broker.proc.returncode}")
    broker.proc = None


def _quietly_stop(proc: subprocess.Popen[Any]) -> None:
    """Cleanup after a failure: stop it, kill it if it will not go, raise nothing."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class _Sim:
    """``kerbside-sim serial`` on ptys; ready once it has printed every port."""

    def __init__(self, workdir: Path, sensors: int, speed: float) -> None:
        self.config = workdir / "sim-edge.yaml"
        self.proc = subprocess.Popen(
            [str(BIN / "kerbside-sim"), "serial", "--sensors", str(sensors), "--speed",
             str(speed), "--seed", "11", "--dir", str(workdir / "ttys"), "--config-out",
             str(self.config)],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )  # fmt: skip
        stdout = self.proc.stdout
        assert stdout is not None
        ports = -(-sensors // 50)
        printed: list[str] = []
        self._reader = threading.Thread(target=lambda: printed.extend(stdout), daemon=True)
        self._reader.start()
        try:
            wait_until(
                f"kerbside-sim serial to open its {ports} ports",
                lambda: len(printed) >= ports,
                60,
                alive=[self.proc],
            )
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        _quietly_stop(self.proc)
        self._reader.join(5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


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


def bench_rss(quick: bool) -> list[Row]:
    """Peak RSS of the real agent reading 200 simulated sensors on 4 ptys (10x real time),
    measured ``seconds`` after its health says it has heard every one of them."""
    seconds = 10 if quick else 30
    sensors = 200
    with _workdir() as work:
        broker = Mosquitto(work / "mosquitto").start()
        sub = _Subscriber(broker.port, "bench/gw/+/health", persistent=False)
        sim = _Sim(work, sensors, speed=10)
        config = _edge_config(
            sim.config, broker.port, work / "outbox.db", work / "edge.yaml", health_interval_s=2
        )
        agent = _agent(config, work / "agent.log")
        try:
            wait_until(
                f"the agent's health to report all {sensors} sensors heard",
                lambda: sub.sensors_heard() >= sensors,
                60,
                alive=[agent, sim.proc],
                detail=lambda: f"{sub.sensors_heard()} heard",
            )
            time.sleep(seconds)  # the measurement window, not a wait for something
            if agent.poll() is not None:
                raise BenchError(f"the agent exited with code {agent.returncode}")
            peak = _peak_rss_mb(agent.pid)
            _stop(agent, "the agent")
        finally:
            _quietly_stop(agent)
            sim.stop()
            sub.close()
            broker.stop()
    label = f"edge agent peak RSS, {sensors} sensors, {seconds} s after all heard (MB)"
    return [Row(label, f"{peak:.1f}", "<= 60", peak <= 60)]


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def bench_drain(quick: bool) -> list[Row]:
    """A backlog already in the outbox (on disk) drained by the real agent to a local broker.

    The subscriber is ``mosquitto_sub`` (C), so that counting does not eat the CPU the agent
    and the broker need; each line's arrival is timed, the JSON checked afterwards. It is known
    to be subscribed when a probe published on a second topic comes back through it.
    """
    total = 10_000 if quick else 50_000
    topic = "bench/gw/gw-bench/events"
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
            ["mosquitto_sub", "-h", "127.0.0.1", "-p", str(broker.port), "-q", "1", "-v",
             "-t", topic, "-t", PROBE_TOPIC],
            stdout=subprocess.PIPE,
        )  # fmt: skip
        assert sub.stdout is not None
        lines: list[bytes] = []
        times: list[float] = []
        probed = threading.Event()

        def read() -> None:
            assert sub.stdout is not None
            for line in sub.stdout:
                at = time.monotonic()
                name, _, payload = line.partition(b" ")
                if name == PROBE_TOPIC.encode():
                    probed.set()
                else:
                    times.append(at)
                    lines.append(payload)

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        agent: subprocess.Popen[bytes] | None = None
        probe = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-probe-{os.getpid()}")
        try:
            probe.connect("127.0.0.1", broker.port)
            probe.loop_start()

            def probe_back() -> bool:
                probe.publish(PROBE_TOPIC, b"probe", qos=0)
                return probed.wait(0.2)

            wait_until("mosquitto_sub to be subscribed", probe_back, 10, alive=[sub])
            probe.disconnect()
            probe.loop_stop()
            config = _edge_config(None, broker.port, outbox_path, work / "edge.yaml")
            started = time.monotonic()
            agent = _agent(config, work / "agent.log")
            wait_until(
                f"all {total} events at mosquitto_sub",
                lambda: len(lines) >= total,
                300,
                alive=[agent, sub],
                detail=lambda: f"{len(lines)} arrived",
            )
            cpu = _cpu_seconds(agent.pid)
            _stop(agent, "the agent")
        finally:
            if agent is not None:
                _quietly_stop(agent)
            _quietly_stop(sub)
            reader.join(5)
            sub.stdout.close()
            broker.stop()
        left = len(read_outbox(outbox_path)[1])
    seqs = [json.loads(line)["seq"] for line in lines]
    if len(seqs) != total or sorted(set(seqs)) != list(range(1, total + 1)):
        raise BenchError(f"{len(seqs)} lines arrived, not seqs 1..{total} once each")
    in_order = seqs == sorted(seqs)
    first, last = times[0], times[-1]
    rate = total / (last - first)
    print(
        f"[bench] drain: {total} events, first after {first - started:.2f}s from process start, "
        f"{rate:.0f}/s first to last, in seq order: {in_order}, {left} left in outbox after stop; "
        f"agent CPU {cpu:.1f}s ({total / cpu:.0f} events per CPU-second, incl. start-up); "
        f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs",
        file=sys.stderr,
    )
    label = f"outbox backlog drain, {total // 1000}k events on disk (events/s)"
    return [Row(label, f"{rate:.0f}", ">= 2000", in_order and left == 0 and rate >= 2000)]


class _Round:
    """What one outage round measured, for the log line."""

    def __init__(self) -> None:
        self.reconnect_s = 0.0  # broker back -> the agent's online status (its own stamp)
        self.drain_s = 0.0  # broker back -> the bench saw the outbox drained
        self.backlog = 0


def bench_fault(quick: bool) -> list[Row]:
    """Broker outages and agent SIGKILLs mid-stream, repeated; then every seq is accounted for.

    Each round: the broker stops; once the agent has put five more events in its outbox it is
    SIGKILLed, a new agent is started while the broker is still down (it has said it is
    connecting), and the broker comes back. The bench then waits, with limits, for the agent to
    say it is online again (its retained status, stamped after the broker's return) and to have
    the broker acknowledge everything detected before that return (those rows gone from the
    outbox), so every agent gets a fair window before the next kill. At the end it drains the
    outbox the same way, stops the agent cleanly, and fences the subscriber (a marker sent
    through the broker comes back) before counting:

    - lost: seqs 1..last_seq neither delivered nor still in the outbox;
    - still in the outbox at the end (not lost: the next start sends them);
    - duplicated under a new event_id: one detection published twice as two events, which the
      collector cannot recognise;
    - delivered more than once under the same event_id: QoS 1 resends (after a SIGKILL, events
      the broker had but whose deletion the agent had not committed yet); the collector drops
      them by event_id, so they are reported, not judged.
    """
    rounds = 2 if quick else 4
    with _workdir() as work:
        broker = Mosquitto(work / "mosquitto").start()
        sub = _Subscriber(broker.port, "bench/#")
        sim = _Sim(work, 100, speed=60)
        outbox_path = work / "outbox.db"
        config = _edge_config(
            sim.config, broker.port, outbox_path, work / "edge.yaml",
            detector={"confirm_occupied_s": 1.5, "confirm_vacant_s": 1.5, "silence_s": 120},
        )  # fmt: skip
        log = work / "agent.log"
        agent = _agent(config, log)
        done: list[_Round] = []

        def last_seq() -> int:
            return read_outbox(outbox_path)[0]

        def held() -> list[int]:
            return read_outbox(outbox_path)[1]

        def connecting() -> int:
            return log.read_text(errors="replace").count("connecting to mqtt")

        # Conditions for the waits below, each bound to its own round's figures.
        def seq_reached(target: int) -> Callable[[], bool]:
            return lambda: last_seq() >= target

        def drained_to(mark: int) -> Callable[[], bool]:
            def drained() -> bool:
                seqs = held()
                return not seqs or seqs[0] > mark

            return drained

        def tried_again(attempts: int) -> Callable[[], bool]:
            return lambda: connecting() > attempts

        def online_since(instant: int) -> Callable[[], bool]:
            return lambda: sub.online_since(instant) is not None

        try:
            wait_until(
                "the first 5 events at the subscriber",
                lambda: sub.distinct() >= 5,
                60,
                alive=[agent, sim.proc],
            )
            for n in range(1, rounds + 1):
                measured = _Round()
                _stop_broker(broker)
                before = last_seq()
                wait_until(
                    f"round {n}: 5 more events in the outbox while the broker is down",
                    seq_reached(before + 5),
                    30,
                    alive=[agent, sim.proc],
                )
                agent.kill()
                agent.wait()
                attempts = connecting()
                agent = _agent(config, log)
                wait_until(
                    f"round {n}: the new agent to try the broker (still down)",
                    tried_again(attempts),
                    30,
                    alive=[agent],
                )
                broker.start()
                back = int(time.time() * 1000)
                back_mono = time.monotonic()
                mark = last_seq()
                measured.backlog = len(held())
                wait_until(
                    f"round {n}: the agent online again (a status stamped after the broker's "
                    "return)",
                    online_since(back),
                    RECONNECT_LIMIT_S,
                    alive=[agent],
                )
                online = sub.online_since(back)
                assert online is not None
                measured.reconnect_s = (online - back) / 1000
                wait_until(
                    f"round {n}: the broker to acknowledge every event up to seq {mark}",
                    drained_to(mark),
                    DRAIN_LIMIT_S,
                    alive=[agent],
                    detail=lambda: f"outbox holds {len(held())} events",
                )
                measured.drain_s = time.monotonic() - back_mono
                done.append(measured)
            mark = last_seq()
            wait_until(
                f"the end: the broker to acknowledge every event up to seq {mark}",
                drained_to(mark),
                DRAIN_LIMIT_S,
                alive=[agent],
            )
            _stop(agent, "the last agent")
            sub.fence(broker.port)
        finally:
            _quietly_stop(agent)
            sim.stop()
            sub.close()
            broker.stop()
        final, still = read_outbox(outbox_path)
        kept = set(still)
    with sub.lock:
        events = list(sub.events)
    return _fault_rows(rounds, done, events, final, kept)


def _fault_rows(
    rounds: int, done: list[_Round], events: list[dict[str, Any]], final: int, kept: set[int]
) -> list[Row]:
    epochs = {e["event_id"].split(":")[1] for e in events}
    if len(epochs) != 1:
        raise BenchError(f"events from {len(epochs)} outbox epochs, expected one: {epochs}")
    if final == 0:
        raise BenchError("the agents detected nothing")
    first_seqs: list[int] = []
    copies: dict[str, int] = {}
    for e in events:
        copies[e["event_id"]] = copies.get(e["event_id"], 0) + 1
        if copies[e["event_id"]] == 1:
            first_seqs.append(e["seq"])
    delivered = set(first_seqs)
    lost = set(range(1, final + 1)) - delivered - kept
    resent = sum(1 for n in copies.values() if n > 1)
    # The same detection under two ids would be a duplicate the collector cannot catch.
    by_body: dict[tuple[str, ...], set[str]] = {}
    for e in events:
        body = (e["bay_id"], e["state"], e["ts"], e["confirmed_ts"])
        by_body.setdefault(body, set()).add(e["event_id"])
    new_id = sum(len(ids) - 1 for ids in by_body.values())
    overtaken = sum(1 for a, b in itertools.pairwise(first_seqs) if b < a)
    per_round = ", ".join(
        f"{r.backlog} queued, online after {r.reconnect_s:.1f}s, drained within {r.drain_s:.1f}s"
        for r in done
    )
    print(
        f"[bench] fault: {rounds} outage+SIGKILL rounds ({per_round}); seqs 1..{final}: "
        f"{len(delivered)} delivered, {len(kept)} still in the outbox, {len(lost)} lost "
        f"{sorted(lost)[:10]}; {resent} delivered more than once (same id), {new_id} under a "
        f"new id; {overtaken} first arrivals after a higher seq",
        file=sys.stderr,
    )
    head = f"edge fault test ({rounds} outages + SIGKILLs, seqs 1..{final})"
    return [
        Row(f"{head}: events lost", str(len(lost)), "0", not lost),
        Row("edge fault test: events still in the outbox at the end", str(len(kept)), "0",
            not kept),
        Row("edge fault test: events duplicated under a new event_id", str(new_id), "0",
            new_id == 0),
        Row("edge fault test: events delivered before a lower seq", str(overtaken), "0",
            overtaken == 0),
        Row("edge fault test: events delivered more than once (same event_id, QoS 1)",
            str(resent), "- (dropped by event_id)", True),
    ]  # fmt: skip


def run(quick: bool) -> list[Row]:
    return [
        *attempt("edge agent peak RSS", lambda: bench_rss(quick)),
        *attempt("outbox backlog drain", lambda: bench_drain(quick)),
        *attempt("edge fault test", lambda: bench_fault(quick)),
    ]


if __name__ == "__main__":
    for row in run("--quick" in sys.argv):
        print(row)
