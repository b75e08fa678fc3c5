"""``kerbside demo``: a live Camden-like street on this machine, end to end, with one command.

It writes a site file, starts an MQTT broker (Mosquitto if installed, else an embedded amqtt),
the collector (SQLite, HTTP API and officers' page on 127.0.0.1:PORT) and, per gateway, the
firmware simulator serving that gateway's bays on pseudo-terminals plus a real edge agent reading
them. Simulated drivers pay through the API as their planned payments start; some forget, some
overstay, so enforcement alerts appear within about two minutes. Every child runs in its own
process group and is stopped (SIGTERM, then SIGKILL) on Ctrl-C, SIGTERM or after ``--duration``.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import IO, Any

import yaml

from kerbside.core.instants import format_instant, parse_instant

PROGRESS_EVERY_S = 5.0
STOP_TIMEOUT_S = 10.0
ENFORCEMENT_KINDS = frozenset({"overstay", "unpaid", "expired", "suspended"})


class DemoError(Exception):
    """A one-line reason the demo cannot go on, saying what to do."""


def add_demo_command(subparsers: Any) -> None:
    """Register ``demo`` on the umbrella command's subparsers."""
    demo = subparsers.add_parser(
        "demo",
        help="run a live simulated street end to end (broker, collector, gateways, drivers)",
        description=(
            "Start a broker, the collector (API and officers' page on 127.0.0.1:PORT) and a "
            "Camden-like street of real edge agents reading simulated sensors; simulated drivers "
            "pay through the API, some forget, some overstay. Ctrl-C stops everything."
        ),
        epilog=(
            "examples:\n"
            "  kerbside demo                       # then open the printed officers' page URL\n"
            "  kerbside demo --port 8080 --duration 300 --gateways 2 --bays-per-gateway 8\n"
            "  kerbside demo --workdir /tmp/demo   # keep site, configs, logs and the database"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    demo.add_argument(
        "--port", type=int, default=8000, help="HTTP port of the API on 127.0.0.1 (8000)"
    )
    demo.add_argument(
        "--duration",
        type=float,
        default=None,
        help="stop after this many seconds (run until Ctrl-C)",
    )
    demo.add_argument("--gateways", type=int, default=3, help="gateways, one street each (3)")
    demo.add_argument("--bays-per-gateway", type=int, default=5, help="bays per gateway (5)")
    demo.add_argument("--seed", type=int, default=1, help="drivers' plan and sensor noise seed (1)")
    demo.add_argument(
        "--workdir",
        type=Path,
        default=None,
        help="keep everything here (default: a temporary directory, removed at the end)",
    )
    demo.add_argument(
        "--broker",
        choices=("auto", "mosquitto", "embedded"),
        default="auto",
        help="auto: mosquitto if installed, else the embedded amqtt broker (auto)",
    )
    demo.set_defaults(func=run_demo)


# -- processes -------------------------------------------------------------------------------


@dataclass
class Child:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path


@dataclass
class Children:
    """Every process the demo started, each the leader of its own process group."""

    workdir: Path
    items: list[Child] = field(default_factory=list)
    _logs: list[IO[bytes]] = field(default_factory=list)

    def start(self, name: str, argv: list[str], stdout: Path | None = None) -> Child:
        log = self.workdir / "logs" / f"{name}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        err = log.open("ab")
        out = stdout.open("ab") if stdout is not None else err
        self._logs += [err] if out is err else [err, out]
        proc = subprocess.Popen(  # noqa: S603 - our own commands, no shell
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            cwd=self.workdir,
            start_new_session=True,  # own process group: Ctrl-C reaches us only, we stop them
            preexec_fn=_die_with_parent,  # noqa: PLW1509 - single-threaded here
        )
        child = Child(name, proc, log)
        self.items.append(child)
        return child

    def dead(self) -> Child | None:
        return next((c for c in self.items if c.proc.poll() is not None), None)

    def stop(self, names: tuple[str, ...] | None = None) -> None:
        """SIGTERM the process groups (in the order started unless ``names`` picks a stage),
        SIGKILL what is left after STOP_TIMEOUT_S, and wait for all."""
        chosen = [c for c in self.items if names is None or c.name.startswith(names)]
        for child in chosen:
            _signal_group(child.proc, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for child in chosen:
            try:
                child.proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal_group(child.proc, signal.SIGKILL)
                child.proc.wait()
            # A grandchild may outlive its leader: clear the whole group.
            _signal_group(child.proc, signal.SIGKILL)

    def close_logs(self) -> None:
        for f in self._logs:
            f.close()


def _die_with_parent() -> None:
    """In the child, before exec: SIGTERM it if the demo dies without cleaning up (SIGKILL)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG (Linux)
    except (OSError, AttributeError):
        pass


def _signal_group(proc: subprocess.Popen[bytes], signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signum)


def _module(name: str) -> list[str]:
    return [sys.executable, "-m", name]


def _last_line(path: Path) -> str:
    try:
        lines = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    return lines[-1].strip() if lines else ""


# -- ports and the broker --------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_is_free(port: int) -> bool:
    with socket.socket() as s:
        # As uvicorn binds: connections of a previous run in TIME_WAIT do not hold the port.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _wait_port(port: int, child: Child, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if child.proc.poll() is not None:
            raise DemoError(f"{child.name} exited: {_last_line(child.log)} (see {child.log})")
        with socket.socket() as s:
            s.settimeout(0.5)
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise DemoError(f"{child.name} did not listen on 127.0.0.1:{port} (see {child.log})")


def find_mosquitto(
    path: str | None = None, extra_dirs: tuple[str, ...] = ("/usr/sbin",)
) -> str | None:
    """A ``mosquitto`` on ``path`` (default $PATH), else in ``extra_dirs`` (Debian puts it in
    /usr/sbin, which is not on a normal user's PATH)."""
    found = shutil.which("mosquitto", path=path)
    if found is not None:
        return found
    for directory in extra_dirs:
        candidate = Path(directory) / "mosquitto"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def start_broker(children: Children, choice: str, port: int) -> tuple[str, str]:
    """Start the broker; return (description, the collector's MQTT protocol)."""
    mosquitto = find_mosquitto() if choice in ("auto", "mosquitto") else None
    if choice == "mosquitto" and mosquitto is None:
        raise DemoError("mosquitto is not installed: install it or use --broker embedded")
    if mosquitto is not None:
        conf = children.workdir / "mosquitto.conf"
        lines = [f"listener {port} 127.0.0.1", "allow_anonymous true", "persistence false"]
        if os.geteuid() == 0:
            lines.append("user root")  # else it drops to user `mosquitto` (may not exist)
        conf.write_text("\n".join(lines) + "\n")
        child = children.start("broker", [mosquitto, "-c", str(conf)])
        _wait_port(port, child, 10)
        return f"mosquitto on 127.0.0.1:{port}", "5"
    if importlib.util.find_spec("amqtt") is None:
        raise DemoError(
            "no mosquitto on the PATH and amqtt is not installed: pip install 'kerbside[sim]'"
        )
    child = children.start("broker", [*_module("kerbside.demo_broker"), "--port", str(port)])
    _wait_port(port, child, 15)
    return f"embedded amqtt broker (MQTT 3.1.1) on 127.0.0.1:{port}", "3.1.1"


# -- the API ---------------------------------------------------------------------------------


class Api:
    def __init__(self, port: int, tokens: dict[str, str]) -> None:
        self.base = f"http://127.0.0.1:{port}"
        self.tokens = tokens

    def call(self, method: str, path: str, role: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(  # noqa: S310 - http://127.0.0.1 only
            self.base + path, data=data, method=method
        )
        request.add_header("Authorization", f"Bearer {self.tokens[role]}")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            return json.loads(response.read() or b"null")

    def items(self, path: str, role: str) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        cursor: str | None = None
        sep = "&" if "?" in path else "?"
        while True:
            query = f"{sep}limit=500" + (f"&cursor={cursor}" if cursor else "")
            page = self.call("GET", path + query, role)
            out += page["items"]
            cursor = page.get("next_cursor")
            if not cursor:
                return out

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(self.base + "/healthz", timeout=2) as response:  # noqa: S310
                return bool(response.status == 200)
        except (OSError, urllib.error.URLError):
            return False


def make_tokens(workdir: Path) -> tuple[Path, dict[str, str]]:
    """A tokens file (hashes only, as the collector wants) and the demo's tokens themselves,
    also kept in ``demo-tokens.json`` (owner-only) so scripts and tests can use the API."""
    from kerbside.collector.tokens import (  # noqa: PLC0415 - the collector extra
        TokenHolder,
        hash_token,
        new_token,
        save_tokens,
    )

    tokens = {role: new_token() for role in ("officer", "provider", "analyst")}
    names = {"officer": "demo-officer", "provider": "demo-payments", "analyst": "demo-analyst"}
    path = workdir / "tokens.yaml"
    save_tokens(path, [TokenHolder(names[r], r, hash_token(t)) for r, t in tokens.items()])
    plain = workdir / "demo-tokens.json"
    plain.write_text(json.dumps(tokens, indent=1) + "\n")
    plain.chmod(0o600)
    return path, tokens


# -- the demo --------------------------------------------------------------------------------


@dataclass
class Street:
    gateways: list[str]
    rights: list[dict[str, Any]]  # journal `right` records of every gateway's plan, by start
    bays: int


def write_site(workdir: Path, gateways: int, bays_per_gateway: int) -> tuple[Path, Street]:
    from kerbside.collector.site import SiteError, load_site  # noqa: PLC0415
    from kerbside.demo_site import demo_site  # noqa: PLC0415

    try:
        data = demo_site(gateways, bays_per_gateway)
    except ValueError as exc:
        raise DemoError(str(exc)) from exc
    path = workdir / "site.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    try:
        site = load_site(path)
    except SiteError as exc:  # a bug here, not the user's: say where the file is
        raise DemoError(f"the demo's site file is invalid ({path}): {exc}") from exc
    ids = list(dict.fromkeys(b.gateway for b in site.bays.values() if b.gateway))
    return path, Street(ids, [], len(site.bays))


def collector_config(
    workdir: Path, site: Path, *, mqtt_port: int, protocol: str, http_port: int, tokens: Path
) -> Path:
    config = {
        "site": str(site),
        "mqtt": {
            "host": "127.0.0.1",
            "port": mqtt_port,
            "protocol": protocol,
            "client_id": "kerbside-demo-collector",
        },
        "store": {"path": str(workdir / "collector.db")},
        "http": {"host": "127.0.0.1", "port": http_port},
        "tokens_file": str(tokens),
        # Short, for a demo: alerts show a few seconds after they fall due.
        "alert_delay_s": 5,
        "maintenance": {"gateway_offline_after_s": 90, "low_battery_mv": 3300},
    }
    path = workdir / "collector.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


FIRST_ARRIVAL_S = ("4", "10")  # the drivers' first arrivals, seconds after the start


def start_sim(children: Children, gateway: str, site: Path, seed: int) -> Child:
    """The firmware simulator serving the gateway's bays on ptys with planned drivers. It goes
    first: drivers' times count from its start, and it needs nobody else to run."""
    gw_dir = children.workdir / gateway
    gw_dir.mkdir(parents=True, exist_ok=True)
    return children.start(
        f"sim-{gateway}",
        [
            *_module("kerbside.sim.cli"),
            "serial",
            "--site",
            str(site),
            "--gateway",
            gateway,
            "--seed",
            str(seed),
            "--quick",
            "--first-arrival-s",
            *FIRST_ARRIVAL_S,
            "--dir",
            str(gw_dir),
            "--config-out",
            str(gw_dir / "edge.yaml"),
            "--plan-out",
            str(gw_dir / "plan.json"),
        ],
        stdout=gw_dir / "ttys.txt",
    )


def start_edge(
    children: Children, sim: Child, gateway: str, mqtt_port: int
) -> list[dict[str, Any]]:
    """Once the simulator's ptys exist, a real edge agent reading them. Returns the plan's
    rights (what the drivers will pay)."""
    gw_dir = children.workdir / gateway
    ready, edge_yaml = gw_dir / "ttys.txt", gw_dir / "edge.yaml"
    deadline = time.monotonic() + 30
    while not (ready.exists() and ready.read_text().strip()):
        if sim.proc.poll() is not None:
            raise DemoError(f"{sim.name} exited: {_last_line(sim.log)} (see {sim.log})")
        if time.monotonic() > deadline:
            raise DemoError(f"{sim.name} did not open its ports (see {sim.log})")
        time.sleep(0.05)
    config = yaml.safe_load(edge_yaml.read_text())
    config["mqtt"] = {**config.get("mqtt", {}), "host": "127.0.0.1", "port": mqtt_port}
    config["health_interval_s"] = 15
    config["clock"] = {"require_sync": False}  # a laptop's clock: no NTP check in a demo
    edge_yaml.write_text(yaml.safe_dump(config, sort_keys=False))
    children.start(
        f"edge-{gateway}", [*_module("kerbside.edge.cli"), "run", "--config", str(edge_yaml)]
    )
    plan = json.loads((gw_dir / "plan.json").read_text())
    return [dict(r) for r in plan["rights"]]


class Stop:
    """Set by SIGINT / SIGTERM: the main loop ends and everything is stopped in order."""

    def __init__(self) -> None:
        self.signal: int | None = None

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        self.signal = signum


def _print(text: str) -> None:
    print(text, flush=True)


def check_args(args: argparse.Namespace) -> None:
    if args.duration is not None and args.duration <= 0:
        raise DemoError("--duration must be positive")
    if not 1 <= args.port <= 65535:
        raise DemoError("--port must be 1..65535")
    if args.workdir is not None and (args.workdir / "collector.db").exists():
        raise DemoError(f"{args.workdir} holds an earlier demo: remove it or use another --workdir")
    if not port_is_free(args.port):
        raise DemoError(f"port {args.port} is in use on 127.0.0.1: use --port")


def run_demo(args: argparse.Namespace) -> int:
    stop = Stop()
    previous = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
    keep = args.workdir is not None
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="kerbside-demo-"))
    children: Children | None = None
    try:
        check_args(args)
        workdir.mkdir(parents=True, exist_ok=True)
        workdir = workdir.resolve()
        children = Children(workdir)
        return _run(args, workdir, children, stop)
    except DemoError as exc:
        print(f"kerbside demo: {exc}", file=sys.stderr, flush=True)
        return 1
    finally:
        if children is not None:
            # Gateways first (they say offline while the broker is up), the broker last.
            children.stop(("edge-",))
            children.stop(("sim-",))
            children.stop(("collector",))
            children.stop()
            children.close_logs()
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _run(args: argparse.Namespace, workdir: Path, children: Children, stop: Stop) -> int:
    started = time.monotonic()
    site, street = write_site(workdir, args.gateways, args.bays_per_gateway)
    mqtt_port = free_port()
    broker, protocol = start_broker(children, args.broker, mqtt_port)
    sims = [
        start_sim(children, gateway, site, args.seed + index)
        for index, gateway in enumerate(street.gateways)
    ]
    tokens_file, tokens = make_tokens(workdir)
    config = collector_config(
        workdir,
        site,
        mqtt_port=mqtt_port,
        protocol=protocol,
        http_port=args.port,
        tokens=tokens_file,
    )
    collector = children.start(
        "collector", [*_module("kerbside.collector.cli"), "run", "--config", str(config)]
    )
    api = Api(args.port, tokens)
    deadline = time.monotonic() + 60
    while not api.healthy():
        if collector.proc.poll() is not None:
            line = _last_line(collector.log)
            hint = ": use --port" if "in use" in line or "Errno 98" in line else ""
            raise DemoError(f"the collector exited: {line}{hint} (see {collector.log})")
        if time.monotonic() > deadline:
            raise DemoError(f"the collector did not answer on {api.base} (see {collector.log})")
        if stop.signal is not None:
            return 0
        time.sleep(0.1)
    # The collector is subscribed: the gateways' first events will reach it.
    for sim, gateway in zip(sims, street.gateways, strict=True):
        street.rights += start_edge(children, sim, gateway, mqtt_port)
    street.rights.sort(key=lambda r: (r["start"], r["right_id"]))
    streets = sorted({b["street"] for b in yaml.safe_load(site.read_text())["bays"]})
    _print(
        f"kerbside demo: {street.bays} bays on {', '.join(streets)}; "
        f"{len(street.gateways)} gateways; {broker}"
    )
    _print(f"  officers' page: {api.base}/officer   (sign in with the officer token below)")
    _print(f"  officer token:  {tokens['officer']}")
    _print(f"  API docs:       {api.base}/docs   analyst token: {tokens['analyst']}")
    _print(f"  files and logs: {workdir}" + ("" if args.workdir else " (removed at the end)"))
    _print(
        "  Drivers arrive within seconds; the first alerts come about a minute later. Ctrl-C stops."
    )
    return _watch(args, api=api, street=street, children=children, stop=stop, started=started)


def _watch(
    args: argparse.Namespace,
    *,
    api: Api,
    street: Street,
    children: Children,
    stop: Stop,
    started: float,
) -> int:
    end = None if args.duration is None else started + args.duration
    posted = 0
    failed = 0
    seen_alerts: set[str] = set()
    next_progress = time.monotonic() + PROGRESS_EVERY_S
    while stop.signal is None and (end is None or time.monotonic() < end):
        dead = children.dead()
        if dead is not None:
            raise DemoError(
                f"{dead.name} stopped unexpectedly: {_last_line(dead.log)} (see {dead.log})"
            )
        now = int(time.time() * 1000)
        while posted < len(street.rights) and parse_instant(street.rights[posted]["start"]) <= now:
            right = {k: v for k, v in street.rights[posted].items() if k != "type"}
            posted += 1
            try:
                api.call("POST", "/api/v1/rights", "provider", right)
            except (OSError, urllib.error.URLError) as exc:
                failed += 1
                _print(f"  payment {right['right_id']} not accepted: {exc}")
                continue
            what = "permit" if right["kind"] == "permit" else "paid"
            _print(f"  {what}: {right['bay_id']} until {right['end'][11:19]} UTC")
        if time.monotonic() >= next_progress:
            next_progress += PROGRESS_EVERY_S
            try:
                _progress(api, street, time.monotonic() - started, posted - failed, seen_alerts)
            except (OSError, urllib.error.URLError, KeyError, ValueError) as exc:
                _print(f"  (progress unavailable: {exc})")
        time.sleep(0.2)
    reason = "stopped" if stop.signal is not None else f"{args.duration:g} s done"
    _print(f"kerbside demo: {reason}; stopping the gateways, collector and broker")
    return 0


def _progress(
    api: Api, street: Street, elapsed: float, payments: int, seen_alerts: set[str]
) -> None:
    bays = api.items("/api/v1/bays", "analyst")
    occupied = sum(1 for b in bays if b["state"] == "occupied")
    gateways = api.call("GET", "/api/v1/gateways", "analyst")
    events = sum(int(g["events"]) for g in gateways)
    online = sum(1 for g in gateways if g["online"])
    alerts = api.items("/api/v1/alerts?status=open", "analyst")
    for alert in api.items("/api/v1/alerts", "analyst"):
        if alert["alert_id"] not in seen_alerts and alert["kind"] in ENFORCEMENT_KINDS:
            seen_alerts.add(alert["alert_id"])
            raised = format_instant(parse_instant(alert["raised_at"]))[11:19]
            _print(
                f"  ALERT {alert['kind']}: {alert['bay_id']} on {alert.get('street')}"
                f" (raised {raised} UTC)"
            )
    enforcement = [a for a in alerts if a["kind"] in ENFORCEMENT_KINDS]
    _print(
        f"[{elapsed:4.0f}s] bays occupied {occupied}/{street.bays} | gateways online "
        f"{online}/{len(street.gateways)} | events {events} | payments {payments} | "
        f"open alerts {len(enforcement)}"
    )
