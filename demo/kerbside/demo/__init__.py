"""``kerbside demo``: a live Camden-like street on this machine, end to end, with one command.

It writes a site file, starts an MQTT broker (Mosquitto if installed, else an embedded amqtt),
the collector (SQLite, HTTP API and officers' page on 127.0.0.1:PORT) and, per gateway, the
firmware simulator serving that gateway's bays on pseudo-terminals plus a real edge agent reading
them. Simulated drivers pay through the API as their planned payments start; some forget, some
overstay, so enforcement alerts appear about a minute and a half in. Every child runs in its own
process group and is stopped (SIGTERM, then SIGKILL) on Ctrl-C, SIGTERM or after ``--duration``.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import sys
import tempfile
import time
import urllib.error
from pathlib import Path
from types import FrameType
from typing import Any

import yaml

from kerbside.collector.rules.alerts import KINDS as ALERT_KINDS
from kerbside.core.arguments import number
from kerbside.core.instants import format_instant, parse_instant
from kerbside.core.output import OutputError, print_lines
from kerbside.demo.broker import find_mosquitto, start_broker
from kerbside.demo.collector import Api, collector_config, make_tokens
from kerbside.demo.processes import (
    Children,
    DemoError,
    free_port,
    last_line,
    module_argv,
    port_is_free,
)
from kerbside.demo.street import Street, planned_rights, start_edge, start_sim, write_site

__all__ = ["add_demo_command", "find_mosquitto", "port_is_free", "run_demo"]

PROGRESS_EVERY_S = 5.0
ENFORCEMENT_KINDS = frozenset(ALERT_KINDS)


def add_demo_command(subparsers: Any) -> None:
    """Register ``demo`` on the umbrella command's subparsers."""
    demo = subparsers.add_parser(
        "demo",
        help="run a live simulated street end to end (broker, collector, gateways, drivers)",
        description=(
            "Start a broker, the collector (API and officers' page on 127.0.0.1:PORT) and a\n"
            "Camden-like street of real edge agents reading simulated sensors; simulated\n"
            "drivers pay through the API, some forget, some overstay. Ctrl-C stops everything."
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
        type=number(0, above=True),  # not inf: leaving it out runs until Ctrl-C
        default=None,
        metavar="SECONDS",
        help="stop after this many seconds (run until Ctrl-C)",
    )
    demo.add_argument(
        "--gateways", type=int, default=3, metavar="N", help="gateways, one street each (3)"
    )
    demo.add_argument(
        "--bays-per-gateway", type=int, default=5, metavar="M", help="bays per gateway (5)"
    )
    demo.add_argument("--seed", type=int, default=1, help="drivers' plan and sensor noise seed (1)")
    demo.add_argument(
        "--workdir",
        type=Path,
        default=None,
        metavar="DIR",
        help="keep everything here (default: a temporary directory, removed at the end)",
    )
    demo.add_argument(
        "--broker",
        choices=("auto", "mosquitto", "embedded"),
        default="auto",
        help="auto: mosquitto if installed, else the embedded amqtt broker (auto)",
    )
    demo.set_defaults(func=run_demo)


class Stop:
    """Set by SIGINT / SIGTERM: the main loop ends and everything is stopped in order."""

    def __init__(self) -> None:
        self.signal: int | None = None

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        self.signal = signum


class _ReaderGoneError(Exception):
    """stdout's reader went away (``| head``): the demo stops quietly."""


def _print(text: str) -> None:
    """One line on stdout, through core's helper: a full disk is an ``OutputError``."""
    if not print_lines([text]):
        raise _ReaderGoneError


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
    except OutputError as exc:
        # stdout on a full disk: what was printed is incomplete
        print(f"kerbside demo: {exc}", file=sys.stderr, flush=True)
        return 1
    except _ReaderGoneError:  # piped into `head`: stop quietly (stdout is on /dev/null now)
        return 0
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
        "collector", [*module_argv("kerbside.collector.cli"), "run", "--config", str(config)]
    )
    api = Api(args.port, tokens)
    deadline = time.monotonic() + 60
    while not api.healthy():
        if collector.proc.poll() is not None:
            line = last_line(collector.log)
            hint = ": use --port" if "in use" in line or "Errno 98" in line else ""
            raise DemoError(f"the collector exited: {line}{hint} (see {collector.log})")
        if time.monotonic() > deadline:
            raise DemoError(f"the collector did not answer on {api.base} (see {collector.log})")
        if stop.signal is not None:
            return 0
        time.sleep(0.1)
    # The collector is subscribed: the gateways' first events will reach it. Each simulator's
    # street (its sensors and its drivers' clock) starts when its agent opens the ports: an
    # agent that starts over cars already parked cannot tell a parked car from an empty bay.
    sims = [
        start_sim(children, gateway, site, args.seed + index)
        for index, gateway in enumerate(street.gateways)
    ]
    edges = [
        start_edge(children, sim, gateway, mqtt_port)
        for sim, gateway in zip(sims, street.gateways, strict=True)
    ]
    for sim, edge, gateway in zip(sims, edges, street.gateways, strict=True):
        street.rights += planned_rights(children, sim, edge, gateway)
    street.rights.sort(key=lambda r: (r["start"], r["right_id"]))
    streets = sorted({b["street"] for b in yaml.safe_load(site.read_text())["bays"]})
    _print(
        f"kerbside demo: {street.bays} bays on {', '.join(streets)}; "
        f"{len(street.gateways)} gateway{'s' * (len(street.gateways) != 1)}; {broker}"
    )
    link = api.signin_link("demo-officer", minutes=24 * 60)
    _print(f"  officers' page: {api.base}/officer")
    _print(f"  sign-in link:   {link}   (works once; or sign in with the officer token)")
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
                f"{dead.name} stopped unexpectedly: {last_line(dead.log)} (see {dead.log})"
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
