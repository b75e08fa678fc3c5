"""Shared builders for the tests: free ports, private Mosquitto brokers, per-test topic roots."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import itertools
import json
import os
import queue
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from kerbside.collector.link import LinkEvents, Message
from kerbside.core.backoff import Backoff
from kerbside.core.instants import format_instant


def buffered_env() -> dict[str, str]:
    """This environment without PYTHONUNBUFFERED: a program's stdout into a file is
    block-buffered, as when a user runs it (what stays in the buffer is flushed at exit)."""
    return {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}


def run_on_full_disk(
    command: list[str], *, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """``command`` with its stdout on /dev/full (a full disk) and its stderr taken as text;
    ``env`` is the whole environment (``buffered_env()`` unless told: stdout block-buffered, as
    for a user, so that what stays in its buffer is written again at exit)."""
    with Path("/dev/full").open("w") as full:
        return subprocess.run(
            command,
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
            env=buffered_env() if env is None else env,
            check=False,
            timeout=timeout,
        )


def run_with_reader_gone(
    command: list[str], *, env: dict[str, str] | None = None, timeout: float = 60
) -> tuple[int, str]:
    """``command | head -c0``: its stdout a pipe closed before it writes (its first write finds
    no reader); its exit status and stderr (text). ``env``: the whole environment (this one
    unless told)."""
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    ) as program:
        assert program.stdout is not None
        program.stdout.close()
        try:
            _, err = program.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            program.kill()
            raise
        return program.returncode, err


def _port_slice() -> range:
    """The ports this process hands out: below the kernel's ephemeral range (so no outgoing
    connection, and no other program's bind to port 0, takes one between ``free_port`` and the
    server's own bind), and a slice of its own for each pytest-xdist worker (so two workers
    never hand out the same one)."""
    try:
        first_ephemeral = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        first_ephemeral = 32768
    low, high = 10000, max(first_ephemeral, 12000)
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    worker = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
    size = (high - low) // max(workers, 1)
    return range(low + worker * size, low + (worker + 1) * size)


_PORTS = _port_slice()
# Each process (a test worker, or a program a test starts) begins at its own place in the
# slice, so that two of them in one worker seldom offer the same port.
_next_port = itertools.count(random.Random(os.getpid()).randrange(len(_PORTS)))


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on, for a server a test starts."""
    for _ in range(len(_PORTS)):
        port = _PORTS[next(_next_port) % len(_PORTS)]
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {_PORTS.start}-{_PORTS.stop - 1}")


def wait_for_port(port: int, host: str = "127.0.0.1", timeout: float = 10.0) -> None:
    """Until something listens on ``host:port``; TimeoutError (a server that did not start)."""

    def listening() -> bool:
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.2):
            return True
        return False

    try:
        wait_until(listening, timeout, f"{host}:{port} listening")
    except AssertionError as exc:
        raise TimeoutError(f"nothing listening on {host}:{port}: {exc}") from None


T = TypeVar("T")

# The one limit of every wait (seconds), scaled on a slow or loaded machine by
# KERBSIDE_TEST_TIMEOUT_SCALE (e.g. 2): a wait that runs out fails, naming what it waited for.
TIMEOUT_SCALE = float(os.environ.get("KERBSIDE_TEST_TIMEOUT_SCALE", "1"))
WAIT_S = 10.0
POLL_S = 0.05


def limit(timeout: float | None) -> float:
    """``timeout`` (or the default wait), scaled for the machine."""
    return (WAIT_S if timeout is None else timeout) * TIMEOUT_SCALE


def describe(condition: Callable[[], object]) -> str:
    """A condition in words for a failed wait: its source line, or its name."""
    with contextlib.suppress(OSError, TypeError):
        source = inspect.getsource(condition).strip()
        if "\n" not in source:
            return source
    return getattr(condition, "__qualname__", repr(condition))


def wait_until(
    condition: Callable[[], object],
    timeout: float | None = None,
    what: str | None = None,
    *,
    every: float = POLL_S,
) -> None:
    """Poll ``condition`` until it is true; AssertionError naming ``what`` (or the condition's
    source) after ``timeout`` seconds (the default wait, scaled)."""
    seconds = limit(timeout)
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() >= deadline:
            raise AssertionError(f"waited {seconds:g} s for: {what or describe(condition)}")
        time.sleep(every)


async def wait_until_async(
    condition: Callable[[], object],
    timeout: float | None = None,  # noqa: ASYNC109 (wait_until's signature; a poll, not an await)
    what: str | None = None,
    *,
    every: float = POLL_S,
) -> None:
    """``wait_until`` inside an event loop: the loop runs while the condition is polled."""
    seconds = limit(timeout)
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() >= deadline:
            raise AssertionError(f"waited {seconds:g} s for: {what or describe(condition)}")
        await asyncio.sleep(every)


def present(value: T | None) -> T:
    """``value``, asserting it is there (a bay, an alert, a row the test knows exists)."""
    assert value is not None
    return value


class RecordingBackoff(Backoff):
    """Core's Backoff without jitter, noting each delay it hands out and when, so that a test
    can check a user waits what it was given between two attempts."""

    def __init__(self, first_s: float, cap_s: float) -> None:
        super().__init__(first_s, cap_s, jitter=0.0)
        self.given: list[tuple[float, float]] = []  # (time.monotonic() handed out, delay)
        self.resets = 0

    def next(self) -> float:
        delay = super().next()
        self.given.append((time.monotonic(), delay))
        return delay

    def reset(self) -> None:
        self.resets += 1
        super().reset()

    def spaced(self, attempts: list[float]) -> bool:
        """Whether each attempt (its time.monotonic()) after the first came no sooner than the
        delay handed out after the one before it."""
        assert len(self.given) >= len(attempts) - 1, (self.given, attempts)
        return all(
            later >= at + delay - 0.01
            for (at, delay), later in zip(self.given, attempts[1:], strict=False)
        )


def stop_process(proc: subprocess.Popen[bytes] | None, sig: int, timeout: float) -> None:
    """Send ``sig`` to a still-running server and wait for it; kill it if it will not go."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def topic_root_for(test_name: str) -> str:
    """A topic root of its own for each test, so retained messages never leak between tests."""
    return "test/" + re.sub(r"[^A-Za-z0-9_-]", "_", test_name)[:60] + f"-{os.getpid()}"


class Mosquitto:
    """A private Mosquitto on a free port, with its own config and data dir, that a test can
    stop, kill and restart (persistence on, so a restart keeps queued QoS 1 messages)."""

    def __init__(self, workdir: Path, extra_conf: str = "", port: int | None = None) -> None:
        self.workdir = workdir
        self.port = port or free_port()
        self.conf = workdir / "mosquitto.conf"
        workdir.mkdir(parents=True, exist_ok=True)
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\n"
            "allow_anonymous true\n"
            "persistence true\n"
            f"persistence_location {workdir}/\n"
            "autosave_interval 1\n"
            "max_queued_messages 0\n"
            "max_inflight_messages 0\n"
            f"log_dest file {workdir}/mosquitto.log\n"
            # Started as root, mosquitto drops to user "mosquitto", which cannot write the
            # test's private dirs: no persistence, no log. Stay root there.
            + ("user root\n" if os.geteuid() == 0 else "")
            + extra_conf
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Mosquitto:
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        self.proc = subprocess.Popen(
            [binary, "-c", str(self.conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        wait_for_port(self.port)
        return self

    def stop(self, sig: int = signal.SIGTERM) -> None:
        stop_process(self.proc, sig, timeout=10)
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def disconnections(self, client_id: str) -> int:
        """How many times ``client_id`` has left with a DISCONNECT (the broker has then read
        everything it sent before it: its acks are taken)."""
        log = self.workdir / "mosquitto.log"
        text = log.read_text(errors="replace") if log.exists() else ""
        return text.count(f"Client {client_id} disconnected.")


class Influxd:
    """A private InfluxDB 1.x (Debian ``influxd``) on free ports with its data in ``workdir``;
    a test can stop it, kill it and start it again on the same port and data."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.rpc_port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        workdir.mkdir(parents=True, exist_ok=True)
        self.conf = workdir / "influxdb.conf"
        self.conf.write_text(
            "reporting-disabled = true\n"
            f'bind-address = "127.0.0.1:{self.rpc_port}"\n'
            f'[meta]\n  dir = "{workdir}/meta"\n'
            f'[data]\n  dir = "{workdir}/data"\n  wal-dir = "{workdir}/wal"\n'
            "  query-log-enabled = false\n"
            f'[http]\n  bind-address = "127.0.0.1:{self.port}"\n  log-enabled = false\n'
            "[monitor]\n  store-enabled = false\n"
            "[continuous_queries]\n  enabled = false\n"
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Influxd:
        binary = shutil.which("influxd") or "/usr/bin/influxd"
        with (self.workdir / "influxd.log").open("ab") as log:  # closed if influxd is missing
            self.proc = subprocess.Popen(
                [binary, "-config", str(self.conf)], stdout=log, stderr=subprocess.STDOUT
            )
        wait_for_port(self.port, timeout=30)
        return self

    def stop(self, sig: int = signal.SIGTERM) -> None:
        stop_process(self.proc, sig, timeout=20)
        self.proc = None

    def query(self, q: str, db: str | None = None, epoch: str = "ms") -> list[dict[str, Any]]:
        """Run InfluxQL through ``/query``; returns the ``results`` list (raises on an error)."""
        params = {"q": q, "epoch": epoch}
        if db:
            params["db"] = db
        data = urllib.parse.urlencode(params).encode()
        with urllib.request.urlopen(f"{self.url}/query", data=data, timeout=30) as resp:
            body = json.loads(resp.read())
        results: list[dict[str, Any]] = body["results"]
        for result in results:
            if "error" in result:
                raise RuntimeError(f"InfluxQL error: {result['error']} in {q}")
        return results


class VictoriaMetrics:
    """A private victoria-metrics (accepts ``/api/v2/write`` line protocol) on a free port."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        workdir.mkdir(parents=True, exist_ok=True)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> VictoriaMetrics:
        binary = shutil.which("victoria-metrics") or "/usr/bin/victoria-metrics"
        # closed whether or not the binary starts (a file left open is a ResourceWarning, an
        # error in this suite, reported far from here)
        with (self.workdir / "vm.log").open("ab") as log:
            self.proc = subprocess.Popen(
                [
                    binary,
                    f"-httpListenAddr=127.0.0.1:{self.port}",
                    f"-storageDataPath={self.workdir}/data",
                    "-retentionPeriod=100y",
                    "-search.latencyOffset=0s",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        wait_for_port(self.port, timeout=30)
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


def write_collector_setup(
    workdir: Path,
    *,
    port: int,
    topic_root: str,
    bays: int = 4,
    gateway: str = "gw-1",
    alert_delay_s: float = 1.0,
    extra: str = "",
    store: str = "{path: collector.db}",
    protocol: str = "5",
) -> Path:
    """A site (zone Z1 controlled all the time; paid bays B001.. on ``gateway``; grace 0,
    observation 1 min, max stay 2 min) and a collector config beside it (``store``: the store's
    YAML, a SQLite file beside it unless told); returns the config."""
    workdir.mkdir(parents=True, exist_ok=True)
    lines = [
        "site: test",
        "timezone: Europe/London",
        "defaults: {grace_minutes: 0, observation_minutes: 1}",
        "zones:",
        "  - {id: Z1, name: Test, controlled_hours: any}",
        "bays:",
    ]
    lines.extend(
        f"  - {{id: B{i:03d}, zone: Z1, street: Test St, kind: paid, max_stay_minutes: 2,"
        f" location: {{lat: 51.5, lon: -0.14}}, sensor: S{i:03d}, gateway: {gateway}}}"
        for i in range(1, bays + 1)
    )
    (workdir / "site.yaml").write_text("\n".join(lines) + "\n")
    config = workdir / "collector.yaml"
    config.write_text(
        "site: site.yaml\n"
        f"mqtt: {{host: 127.0.0.1, port: {port}, topic_root: {topic_root},"
        f" client_id: collector-{workdir.name}-{os.getpid()}, protocol: '{protocol}'}}\n"
        f"store: {store}\n"
        "http: null\n"
        f"alert_delay_s: {alert_delay_s}\n" + extra
    )
    return config


def occupancy_event(n: int, bay: str, state: str, at: int, /, **over: Any) -> dict[str, Any]:
    """Gateway ``gw-1``'s event number ``n`` (the wire shape): bay ``bay`` (sensor ``S`` + its
    digits) in ``state`` from ``at``; ``over`` replaces any field (``ts`` too), for bad ones."""
    body: dict[str, Any] = {
        "v": 1,
        "event_id": f"gw-1:ep:{n}",
        "gateway_id": "gw-1",
        "seq": n,
        "bay_id": bay,
        "sensor_id": "S" + bay[1:],
        "state": state,
        "ts": format_instant(at),
        "confirmed_ts": format_instant(at + 10_000),
        "reason": None,
    }
    body.update(over)
    return body


def start_collector(
    config: Path, log: Path, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """``kerbside-collector run`` as its own process, its output appended to ``log``; ``env``
    adds to the environment."""
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "kerbside.collector.cli", "run", "--config", str(config)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=None if env is None else {**os.environ, **env},
        )


def wait_for_log(
    log: Path, text: str, proc: subprocess.Popen[bytes] | None = None, timeout_s: float = 30
) -> None:
    """Until ``text`` is in ``log``; fails (with the log) on timeout or if ``proc`` exits."""

    def logged() -> bool:
        assert proc is None or proc.poll() is None, f"exited ({proc.poll()}) before {text!r}"
        return text in log.read_text(errors="replace")

    try:
        wait_until(logged, timeout_s, f"{text!r} logged")
    except AssertionError as exc:
        raise AssertionError(f"{exc}: {log.read_text(errors='replace')}") from None


class MqttRecorder:
    """A paho client (MQTT 3.1.1) on 127.0.0.1 that records what it receives and whether the
    broker dropped it; ``persistent`` keeps its session (and the broker's queue for it) while it
    is away, as the collector's does."""

    def __init__(
        self,
        port: int,
        client_id: str,
        *,
        username: str | None = None,
        password: str | None = None,
        persistent: bool = False,
    ) -> None:
        import paho.mqtt.client as mqtt  # noqa: PLC0415 - only the MQTT tests need it
        from paho.mqtt.enums import CallbackAPIVersion  # noqa: PLC0415

        self.messages: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self.connected = threading.Event()
        self.dropped = threading.Event()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=not persistent
        )
        if username is not None:
            self.client.username_pw_set(username, password)
        self.client.on_connect = lambda *_: self.connected.set()
        self.client.on_message = lambda _c, _u, m: self.messages.put((m.topic, bytes(m.payload)))
        self._acked: set[int] = set()
        self._change = threading.Condition()

        def on_publish(_c: object, _u: object, mid: int, *_: object) -> None:
            with self._change:
                self._acked.add(mid)
                self._change.notify_all()

        def on_disconnect(*_: object) -> None:
            with self._change:
                self.dropped.set()
                self._change.notify_all()

        self.client.on_publish = on_publish
        self.client.on_disconnect = on_disconnect
        self.client.connect("127.0.0.1", port, keepalive=30)
        self.client.loop_start()
        if not self.connected.wait(10):
            self.close()
            raise TimeoutError(f"no CONNACK from 127.0.0.1:{port}")

    def subscribe(self, topic: str) -> None:
        done = threading.Event()
        self.client.on_subscribe = lambda *_: done.set()
        self.client.subscribe(topic, qos=1)
        assert done.wait(10), f"no SUBACK for {topic}"

    def publish(self, topic: str, payload: bytes, timeout: float = 30) -> bool:
        """QoS 1; True once the broker acknowledged it, False if it dropped the connection."""
        info = self.client.publish(topic, payload, qos=1)
        with self._change:
            settled = self._change.wait_for(
                lambda: info.mid in self._acked or self.dropped.is_set(), timeout
            )
            if not settled:
                raise TimeoutError(f"no PUBACK for {len(payload)} bytes on {topic}")
            return info.mid in self._acked

    def received(self, quiet_s: float = 1.5) -> list[tuple[str, bytes]]:
        """Everything that arrives until nothing has for ``quiet_s``."""
        out = []
        while True:
            try:
                out.append(self.messages.get(timeout=quiet_s))
            except queue.Empty:
                return out

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class FakeLink:
    """The collector link's seam (``link.Transport``) without a broker: records what it is asked
    to acknowledge and publish."""

    connected = True

    def __init__(self) -> None:
        self.acked: list[int] = []
        self.published: list[tuple[str, Any, int, bool]] = []
        self._mid = 0

    def start(self, events: LinkEvents) -> None:
        pass

    def stop(self) -> None:
        pass

    def ack(self, message: Message) -> None:
        self.acked.append(message.mid)

    def publish(self, topic: str, payload: str | bytes, qos: int, retain: bool = False) -> int:
        self._mid += 1
        self.published.append((topic, payload, qos, retain))
        return self._mid

    def topics(self, part: str) -> list[dict[str, Any]]:
        """The payloads published on topics that contain ``part``, in order."""
        return [json.loads(p) for t, p, _, _ in self.published if part in t]
