"""``kerbside-sim``: a simulated street of bay sensors, as capture files or live on ptys."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from kerbside.core.arguments import Parser, number
from kerbside.core.config import ConfigError
from kerbside.core.instants import Instant, InstantError, format_instant, parse_instant
from kerbside.core.output import OutputError
from kerbside.core.site import load_site
from kerbside.core.version import add_version_option
from kerbside.sim.capture import write_capture
from kerbside.sim.firmware import FIRMWARES, MAX_KEEPALIVE_MS
from kerbside.sim.parking import (
    QUICK,
    gateway_bays,
    plan_parking,
    site_gateways,
    visits_by_bay,
)
from kerbside.sim.scenario import SCENARIOS
from kerbside.sim.serial_server import serve_main
from kerbside.sim.street import DEFAULT_GATEWAY, DEFAULT_START, BaySpec, SimConfig, SimStreet
from kerbside.sim.traffic import MIXES

_EPILOG_CAPTURE = """example:
  kerbside-sim capture --scenario noisy --seed 3 --sensors 200 --hours 1 out/
  kerbside-edge replay out/capture.jsonl --config out/edge.yaml
"""
_EPILOG_STREET = """example:
  kerbside-sim street --site site.yaml --hours 8 out/
  -> out/plan.json (visits, rights, true contraventions), out/rights.jsonl (journal rights),
     out/journal.jsonl (ideal journal: true occupancy + rights), and per gateway
     out/<gateway>/capture.jsonl, edge.yaml, truth.json
  kerbside-collector replay out/journal.jsonl --site site.yaml   # alerts == contraventions
"""
_EPILOG_SERIAL = """example:
  kerbside-sim serial --sensors 20 --speed 10 --dir /tmp/street --config-out /tmp/street/edge.yaml
  (prints /tmp/street/tty0, one line per port; SIGUSR1 makes tty0 vanish for 2 s and return)
  kerbside-sim serial --site site.yaml --gateway gw-parkway-01 --plan-out plan.json
  kerbside-sim serial --wait-for-reader --visits visits.json --config-out edge.yaml
  (the sensors power up when an agent opens the ports: it hears each of them at once)
"""


def _instant(text: str) -> Instant:
    try:
        return parse_instant(text)
    except InstantError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


# Upper bounds: a huge but finite number overflows the whole milliseconds it becomes, or builds
# a street no machine holds.
MAX_COUNT = 100_000  # sensors, ports: a city's worth
MAX_HOURS = 10 * 8760  # ten years of simulated time (a year already takes hours to simulate)
MAX_SPEED = 3600  # an hour a second; faster, a street's frames outrun the ptys
MAX_FIRST_ARRIVAL_S = 86_400


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from exc
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0: {text!r}")
    if value > MAX_COUNT:
        raise argparse.ArgumentTypeError(f"must be at most {MAX_COUNT}: {text!r}")
    return value


_positive_float = number(0, above=True)
_hours = number(0, MAX_HOURS, above=True)
_speed = number(0, MAX_SPEED, above=True)
_first_arrival_s = number(0, MAX_FIRST_ARRIVAL_S)


def _keepalive_s(text: str) -> float:
    value = _positive_float(text)
    if not 1 <= value <= MAX_KEEPALIVE_MS / 1000:
        raise argparse.ArgumentTypeError(f"must be 1..60 s: {text!r}")
    return value


def _add_firmware_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--firmware",
        choices=sorted(FIRMWARES),
        default="repeating",
        help="sensor firmware: 'basic' sends only on a change and a keep-alive; 'repeating' "
        "also repeats a changed reading 1, 2, 4 and 8 s later (default repeating)",
    )
    p.add_argument(
        "--keepalive-s",
        type=_keepalive_s,
        default=None,
        help="the firmware's keep-alive period, 1..60 s (default 60; basic firmware sends "
        "each keep-alive up to a sixth of it, plus 2 s, early)",
    )


def _add_street_args(p: argparse.ArgumentParser, sensors_default: int) -> None:
    p.add_argument("--scenario", choices=sorted(SCENARIOS), default="clean")
    p.add_argument("--seed", type=int, default=1)
    _add_firmware_args(p)
    p.add_argument(
        "--traffic",
        choices=sorted(MIXES),
        default="standard",
        help="'short-stays': half the stays last 20-75 s (drop-offs, deliveries); default standard",
    )
    p.add_argument(
        "--sensors",
        type=_positive_int,
        default=sensors_default,
        help=f"KBS1 sensors on serial ports (default {sensors_default})",
    )
    p.add_argument(
        "--ble-sensors",
        type=_positive_int,
        default=0,
        help="BLE sensors advertising beside the serial ones (default 0)",
    )
    p.add_argument(
        "--start",
        type=_instant,
        default=None,
        help=f"simulated start instant (capture default {format_instant(DEFAULT_START)}; "
        "serial default: now)",
    )
    p.add_argument(
        "--gateway",
        default=None,
        help=f"gateway id (default {DEFAULT_GATEWAY}; with --site: that gateway's bays)",
    )
    p.add_argument("--sensors-per-port", type=_positive_int, default=50)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="kerbside-sim",
        description="Simulated magnetometer bay sensors on a street, with ground truth.",
        epilog="examples:\n"
        "  kerbside-sim capture --scenario noisy --seed 1 --sensors 20 --hours 1 out/\n"
        "  kerbside-sim capture --firmware basic --traffic short-stays --hours 1 out/\n"
        "  kerbside-sim serial --sensors 20 --dir /tmp/street --config-out /tmp/street/edge.yaml\n"
        "  kerbside-sim street --site site.yaml --quick out/",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_version_option(parser)
    sub = parser.add_subparsers(dest="command", required=True)
    cap = sub.add_parser(
        "capture",
        help="write OUT/capture.jsonl, OUT/edge.yaml and OUT/truth.json",
        epilog=_EPILOG_CAPTURE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_street_args(cap, 10)
    cap.add_argument(
        "--hours", type=_hours, default=1.0, help="simulated time, up to 87600 (default 1)"
    )
    cap.add_argument(
        "--ble", action="store_true", help="every sensor advertises over BLE instead of KBS1"
    )
    cap.add_argument("--quiet", action="store_true", help="no progress on stderr")
    cap.add_argument("out", type=Path, help="output directory")

    ser = sub.add_parser(
        "serial",
        help="serve the street live on pseudo-terminals",
        epilog=_EPILOG_SERIAL,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_street_args(ser, 10)
    ser.add_argument(
        "--speed",
        type=_speed,
        default=1.0,
        help="simulated seconds per wall second, up to 3600 (default 1)",
    )
    ser.add_argument(
        "--ports",
        type=_positive_int,
        default=None,
        help="number of ptys (default: one per --sensors-per-port sensors)",
    )
    ser.add_argument(
        "--dir",
        type=Path,
        default=None,
        help="where the tty<p> symlinks go (default: a new temporary directory)",
    )
    ser.add_argument("--config-out", type=Path, default=None, help="write an edge config here")
    ser.add_argument(
        "--truth-out",
        type=Path,
        default=None,
        help="write ground truth here on exit (and every 30 s)",
    )
    ser.add_argument(
        "--hours",
        type=_hours,
        default=None,
        help="stop after this much simulated time, up to 87600 (default: run until signalled)",
    )
    ser.add_argument(
        "--site",
        type=Path,
        default=None,
        help="serve one gateway's bays of this site file, with planned drivers (not --sensors)",
    )
    ser.add_argument(
        "--visits",
        type=Path,
        default=None,
        help="the vehicles' visits instead of random traffic: a JSON object of bay id -> list "
        'of [arrival, departure] in seconds after the start, e.g. {"SIM-BAY-0001": [[20, 45]]}',
    )
    ser.add_argument(
        "--quick",
        action="store_true",
        help="with --site: drivers arrive within a minute and come back soon (for demos)",
    )
    ser.add_argument(
        "--first-arrival-s",
        type=_first_arrival_s,
        nargs=2,
        metavar=("MIN", "MAX"),
        default=None,
        help="with --site: each bay's first driver arrives MIN..MAX s after the start (0..86400)",
    )
    ser.add_argument(
        "--plan-out",
        type=Path,
        default=None,
        help="with --site: write the drivers' plan (rights to post, true contraventions) here",
    )
    ser.add_argument(
        "--ble-socket",
        type=Path,
        default=None,
        help="serve BLE adverts as JSON lines on this unix socket",
    )
    ser.add_argument(
        "--wait-for-reader",
        action="store_true",
        help="start the street (its sensors, and the times of --visits and --site drivers) only "
        "once a reader has opened every port (and connected to --ble-socket); --plan-out is "
        "written then",
    )
    st = sub.add_parser(
        "street",
        help="drivers on a site's bays: rights, true contraventions, and each gateway's capture",
        epilog=_EPILOG_STREET,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    st.add_argument("--site", type=Path, required=True, help="site file (docs/site-file.md)")
    st.add_argument("--gateway", default=None, help="only this gateway's bays (default: all)")
    st.add_argument("--scenario", choices=sorted(SCENARIOS), default="clean")
    st.add_argument("--seed", type=int, default=1)
    _add_firmware_args(st)
    st.add_argument(
        "--start",
        type=_instant,
        default=None,
        help=f"simulated start instant (default {format_instant(DEFAULT_START)})",
    )
    st.add_argument(
        "--hours", type=_hours, default=8.0, help="simulated time, up to 87600 (default 8)"
    )
    st.add_argument(
        "--no-capture", action="store_true", help="only the plan and journals, no sensor captures"
    )
    st.add_argument(
        "--quick", action="store_true", help="drivers arrive within a minute (for demos)"
    )
    st.add_argument("--quiet", action="store_true", help="no progress on stderr")
    st.add_argument("out", type=Path, help="output directory")
    return parser


def _progress(end: Instant, quiet: bool) -> Callable[[Instant], None] | None:
    if quiet:
        return None
    started = time.monotonic()

    def report(t: Instant) -> None:
        left = max(0, end - t) / 60_000
        print(
            f"kerbside-sim: {format_instant(t)} ({left:.0f} min of simulated time left, "
            f"{time.monotonic() - started:.1f} s)",
            file=sys.stderr,
        )

    return report


def _capture(args: argparse.Namespace) -> int:
    start = DEFAULT_START if args.start is None else args.start
    serial_n, ble_n = (
        (0, args.sensors + args.ble_sensors) if args.ble else (args.sensors, args.ble_sensors)
    )
    street = SimStreet(
        SimConfig(
            scenario=args.scenario,
            seed=args.seed,
            sensors=serial_n,
            ble_sensors=ble_n,
            start=start,
            hours=args.hours,
            sensors_per_port=max(1, args.sensors_per_port),
            gateway_id=args.gateway or DEFAULT_GATEWAY,
            firmware=args.firmware,
            keepalive_s=args.keepalive_s,
            traffic=args.traffic,
        )
    )
    end = start + round(args.hours * 3_600_000)
    count, _ = write_capture(street, args.hours, args.out, _progress(end, args.quiet))
    if not args.quiet:
        print(f"kerbside-sim: {count} records in {args.out / 'capture.jsonl'}", file=sys.stderr)
    return 0


def _street(args: argparse.Namespace) -> int:
    site = load_site(args.site)
    start = DEFAULT_START if args.start is None else args.start
    gateways = [args.gateway] if args.gateway else site_gateways(site)
    bay_ids = [b.id for g in gateways for b in gateway_bays(site, g)]
    if not bay_ids:
        raise ValueError(f"{args.site}: no bays with a sensor and a gateway")
    plan = plan_parking(
        site,
        seed=args.seed,
        start=start,
        hours=args.hours,
        bay_ids=bay_ids,
        mix=QUICK if args.quick else None,
    )
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    (out / "plan.json").write_text(json.dumps(plan.to_json(), indent=1) + "\n", encoding="utf-8")
    (out / "rights.jsonl").write_text(
        "".join(json.dumps(r.to_journal()) + "\n" for r in plan.rights), encoding="utf-8"
    )
    (out / "journal.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in plan.journal()), encoding="utf-8"
    )
    if not args.no_capture:
        visits = visits_by_bay(plan)
        for gateway in gateways:
            bays = gateway_bays(site, gateway)
            street = SimStreet(
                SimConfig(
                    scenario=args.scenario,
                    seed=args.seed,
                    start=start,
                    hours=args.hours,
                    gateway_id=gateway,
                    layout=tuple(BaySpec(b.id, b.sensor or "", b.zone_id) for b in bays),
                    visits=visits,
                    incidents=False,
                    firmware=args.firmware,
                    keepalive_s=args.keepalive_s,
                )
            )
            end = start + round(args.hours * 3_600_000)
            write_capture(street, args.hours, out / gateway, _progress(end, args.quiet))
    if not args.quiet:
        print(
            f"kerbside-sim: {len(plan.visits)} visits, {len(plan.rights)} rights, "
            f"{len(plan.contraventions)} true contraventions in {out}",
            file=sys.stderr,
        )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    out = getattr(args, "out", None)
    if out is not None and out.exists() and not out.is_dir():
        print(f"kerbside-sim: error: {out}: not a directory", file=sys.stderr)
        return 1
    try:
        if args.command == "serial":
            return serve_main(args)
        if args.command == "street":
            return _street(args)
        return _capture(args)
    except ConfigError as exc:
        print(f"kerbside-sim: error: {exc}", file=sys.stderr)
        return 1
    except OutputError as exc:
        # `serial`'s lines (where its ports are) on a full disk: whoever waits for them never
        # gets them
        print(f"kerbside-sim: {exc}", file=sys.stderr)
        return 1
    except ValueError as exc:
        print(f"kerbside-sim: error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"kerbside-sim: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
