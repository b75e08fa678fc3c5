"""``kerbside site check FILE`` and ``kerbside site edge-config FILE --gateway G``
(docs/site-file.md)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

import yaml

from kerbside.core.checks import Problem
from kerbside.core.output import plural, print_lines, print_text
from kerbside.core.site import SiteError, check_site_file, load_site


def add_site_commands(subparsers: Any) -> None:
    """Register ``site`` and its actions on the umbrella ``kerbside`` parser."""
    site = subparsers.add_parser(
        "site",
        help="check a site file, or derive a gateway's edge config from it",
        description="Site file tools. The site file's format: docs/site-file.md.",
        epilog="examples:\n  kerbside site check site.yaml\n"
        "  kerbside site edge-config site.yaml --gateway gw-parkway-01 > edge.yaml",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = site.add_subparsers(dest="site_command", required=True, metavar="ACTION")
    check = actions.add_parser(
        "check",
        help="validate a site file: every error and warning with its line "
        "(exit 1 on errors, or on warnings with --strict)",
        epilog="example: kerbside site check --strict /etc/kerbside/site.yaml",
    )
    check.add_argument("file", help="site file (YAML)")
    check.add_argument(
        "--strict", action="store_true", help="warnings count as errors (exit 1 on any)"
    )
    check.set_defaults(func=check_main)
    edge = actions.add_parser(
        "edge-config",
        help="print the edge config of one gateway, with its gateway_id and sensors filled in",
        epilog="example: kerbside site edge-config site.yaml --gateway gw-parkway-01",
    )
    edge.add_argument("file", help="site file (YAML)")
    edge.add_argument("--gateway", required=True, help="gateway id, as in the bays' `gateway`")
    edge.add_argument("--mqtt-host", default="127.0.0.1", help="broker host (default 127.0.0.1)")
    edge.add_argument(
        "--mqtt-port", type=_port, default=1883, help="broker port, 1..65535 (default 1883)"
    )
    edge.add_argument("--serial-port", default="/dev/ttyUSB0", help="sensor UART for KBS1 sensors")
    edge.set_defaults(func=edge_config_main)


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from exc
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"must be 1..65535: {text!r}")
    return port


def check_main(args: argparse.Namespace) -> int:
    site, problems = check_site_file(args.file)
    problems = sorted(problems, key=lambda p: (p.line or 0, p.warning))
    for problem in problems:
        print(problem.render(args.file), file=sys.stderr)
    errors = sum(not p.warning for p in problems)
    warnings = len(problems) - errors
    if site is None:
        print(
            f"{args.file}: {plural(errors, 'error')}, {plural(warnings, 'warning')}",
            file=sys.stderr,
        )
        return 1
    note = f" ({plural(warnings, 'warning')})" if warnings else ""
    print_lines(
        [f"{args.file}: ok: site {site.name}, {len(site.zones)} zones, {len(site.bays)} bays{note}"]
    )
    return 1 if warnings and args.strict else 0


def edge_config(site_file: str, gateway: str, args: argparse.Namespace) -> dict[str, Any]:
    site = load_site(site_file)
    bays = site.bays_of_gateway(gateway)
    sensors = [{"id": bay.sensor, "bay": bay.id} for bay in bays if bay.sensor is not None]
    if not sensors:
        known = ", ".join(sorted({b.gateway for b in site.bays.values() if b.gateway})) or "none"
        raise SiteError(
            site_file,
            [Problem("", f"gateway {gateway}: no bays with sensors (gateways: {known})")],
        )
    ble = any(str(s["id"]).startswith("BLE-") for s in sensors)
    serial = any(not str(s["id"]).startswith("BLE-") for s in sensors)
    return {
        "gateway_id": gateway,
        "mqtt": {"host": args.mqtt_host, "port": args.mqtt_port, "topic_root": "kerbside/v1"},
        "outbox": {"path": "/var/lib/kerbside/outbox.db", "max_mb": 256},
        "detector": {"confirm_occupied_s": 10, "confirm_vacant_s": 10, "silence_s": 900},
        "health_interval_s": 60,
        "clock": {"require_sync": True},
        "serial": [{"port": args.serial_port, "baudrate": 115200}] if serial else [],
        "ble": {"enabled": ble, "company_id": 0xFFFF, "adapter": "hci0"},
        "sensors": sensors,
    }


def edge_config_main(args: argparse.Namespace) -> int:
    try:
        config = edge_config(args.file, args.gateway, args)
    except SiteError as exc:
        for line in exc.lines:
            print(line, file=sys.stderr)
        return 1
    print_text(
        f"# edge config for {args.gateway}, generated from {args.file}\n"
        + yaml.safe_dump(config, sort_keys=False, default_flow_style=None)
    )
    return 0
