"""``kerbside demo``: a simulated street through the edge detector, events printed as they confirm.

A stand-in until the whole platform runs end to end: the firmware simulator's KBS1 bytes (with
their faults) go through the gateway's parser and detector, and each confirmed occupancy event is
printed as its SPEC section 5 payload, one JSON object per line.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from kerbside.core.instants import parse_instant


def add_demo_command(subparsers: Any) -> None:
    """Register ``demo`` on the umbrella command's subparsers."""
    demo = subparsers.add_parser(
        "demo",
        help="run a simulated street through the edge detector and print its events",
        epilog="example: kerbside demo --duration 3600 --scenario drifting --sensors 20",
    )
    demo.add_argument("--scenario", default="noisy", help="clean, noisy or drifting (noisy)")
    demo.add_argument("--seed", type=int, default=1, help="simulator seed (1)")
    demo.add_argument("--sensors", type=int, default=10, help="bay sensors on the street (10)")
    demo.add_argument(
        "--duration", type=float, default=3600, help="simulated seconds to run (3600)"
    )
    demo.add_argument(
        "--start", default="2026-11-26T08:00:00Z", help="simulated start (2026-11-26T08:00:00Z)"
    )
    demo.set_defaults(func=run_demo)


def run_demo(args: argparse.Namespace) -> int:
    from kerbside.edge.config import DetectorConfig  # noqa: PLC0415 - keep `kerbside --help` light
    from kerbside.edge.detector import Detector  # noqa: PLC0415
    from kerbside.edge.kbs1 import Kbs1Parser  # noqa: PLC0415
    from kerbside.edge.model import Frame, event_payload  # noqa: PLC0415
    from kerbside.sim.street import SimConfig, SimStreet  # noqa: PLC0415

    if args.sensors < 1 or args.duration <= 0:
        print("kerbside demo: --sensors and --duration must be positive", file=sys.stderr)
        return 2
    try:
        start = parse_instant(args.start)
        street = SimStreet(
            SimConfig(scenario=args.scenario, seed=args.seed, sensors=args.sensors, start=start)
        )
    except (ValueError, KeyError) as exc:
        print(f"kerbside demo: {exc}", file=sys.stderr)
        return 2
    gateway = street.config.gateway_id
    detector = Detector(DetectorConfig(), {s.sensor_id: s.bay_id for s in street.sensors})
    parsers: dict[int, Kbs1Parser] = {}
    seq = 0
    end = start + round(args.duration * 1000)
    t = start
    try:
        while t < end:
            t = min(end, t + 60_000)
            serial, _ = street.advance(t)
            changes = []
            for emission in serial:
                parser = parsers.setdefault(emission.port, Kbs1Parser())
                for item in parser.feed(emission.data):
                    if isinstance(item, Frame):
                        changes += detector.observe(item, emission.t)
            changes += detector.tick(t)
            for change in changes:
                seq += 1
                payload = event_payload(change, gateway, "demo", seq)
                print(json.dumps(payload, separators=(",", ":")), flush=True)
    except (BrokenPipeError, KeyboardInterrupt):
        return 0
    print(f"kerbside demo: {seq} events from {args.sensors} bays", file=sys.stderr)
    return 0
