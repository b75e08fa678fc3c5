"""``kerbside-edge``: the street gateway's agent (SPEC section 4)."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Callable, Sequence

from kerbside.core.config import ConfigError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kerbside-edge",
        description="Kerbside street gateway agent: bay sensors in, occupancy events out.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
        "  kerbside-edge run --config /etc/kerbside/edge.yaml\n"
        "  kerbside-edge run --config edge.yaml --capture /tmp/street.jsonl\n"
        "  kerbside-edge replay /tmp/street.jsonl --config edge.yaml",
    )
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING (default INFO)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser(
        "run",
        help="read sensors and publish events over MQTT",
        epilog="example: kerbside-edge run --config /etc/kerbside/edge.yaml",
    )
    run.add_argument("--config", required=True, help="edge config file (YAML, SPEC section 4)")
    run.add_argument("--capture", help="also record everything received to this JSON Lines file")

    replay = sub.add_parser(
        "replay",
        help="run the detector over a capture and print event payloads",
        epilog="example: kerbside-edge replay street.jsonl --config edge.yaml",
    )
    replay.add_argument("capture", help="capture file (JSON Lines, SPEC section 3)")
    replay.add_argument("--config", required=True, help="edge config file (YAML)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        module = "kerbside.edge.replay" if args.command == "replay" else "kerbside.edge.agent"
        func = "replay_main" if args.command == "replay" else "run_main"
        command: Callable[[argparse.Namespace], int] = getattr(
            importlib.import_module(module), func
        )
        return command(args)
    except ConfigError as exc:
        print(f"kerbside-edge: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
