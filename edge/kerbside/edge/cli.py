"""``kerbside-edge``: the street gateway's agent (docs/gateway.md)."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence

from kerbside.core.arguments import Parser
from kerbside.core.checks import ConfigFileError
from kerbside.core.config import ConfigError
from kerbside.core.logs import add_logging_options, setup_logging
from kerbside.core.output import OutputError, print_lines
from kerbside.core.version import add_version_option

DEFAULT_CONFIG = "/etc/kerbside/edge.yaml"

# command -> (module, function): each takes the parsed args and returns an exit code.
_COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("kerbside.edge.agent", "run_main"),
    "replay": ("kerbside.edge.replay", "replay_main"),
    "check": ("kerbside.edge.cli", "check_main"),
    "status": ("kerbside.edge.status", "status_main"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="kerbside-edge",
        description="Kerbside street gateway agent: bay sensors in, occupancy events out. "
        "Configuration and field use: docs/gateway.md.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
        "  kerbside-edge check --config /etc/kerbside/edge.yaml\n"
        "  kerbside-edge run --config /etc/kerbside/edge.yaml\n"
        "  kerbside-edge status\n"
        "  kerbside-edge run --config edge.yaml --capture /tmp/street.jsonl\n"
        "  kerbside-edge replay /tmp/street.jsonl --config edge.yaml",
    )
    add_version_option(parser)
    add_logging_options(parser)
    # The logging options after the command too (`kerbside-edge run --log-format json`).
    logging_after = Parser(add_help=False, argument_default=argparse.SUPPRESS)
    add_logging_options(logging_after)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser(
        "run",
        parents=[logging_after],
        help="read sensors and publish events over MQTT",
        epilog="example: kerbside-edge run --config /etc/kerbside/edge.yaml",
    )
    run.add_argument(
        "--config",
        default=DEFAULT_CONFIG,
        help=f"edge config file (YAML; default {DEFAULT_CONFIG})",
    )
    run.add_argument("--capture", help="also record everything received to this JSON Lines file")

    check = sub.add_parser(
        "check",
        help="check a config file: every mistake with its line, and the files it names; "
        "exit 2 on any error",
        epilog="example: kerbside-edge check --config /etc/kerbside/edge.yaml",
    )
    check.add_argument(
        "--config", default=DEFAULT_CONFIG, help=f"edge config file (default {DEFAULT_CONFIG})"
    )

    status = sub.add_parser(
        "status",
        help="what the agent is doing, from its state on disk (works while it runs and after)",
        epilog="example: kerbside-edge status --config /etc/kerbside/edge.yaml",
    )
    status.add_argument(
        "--config", default=DEFAULT_CONFIG, help=f"edge config file (default {DEFAULT_CONFIG})"
    )

    replay = sub.add_parser(
        "replay",
        help="run the detector over a capture and print event payloads "
        "(exit 1 on skipped lines with --strict)",
        description="Run the agent's parser and detector over CAPTURE on the capture's own\n"
        "clock, and print on stdout each occupancy event payload, one JSON per line\n"
        "(docs/protocols.md). Nothing else goes to stdout.\n"
        "\n"
        "On stderr: each line skipped, with its number and why (the events leave it out),\n"
        "and a last line that sums up: records read, replayed, skipped, events printed.\n"
        "\n"
        "exit status:\n"
        "  0  done, skipped lines included\n"
        "  1  with --strict: a line was skipped (the events are printed all the same);\n"
        "     or stdout cannot be written (a full disk)\n"
        "  2  a mistake in the arguments or the config file, or a capture that cannot be\n"
        "     read (missing, a directory, unreadable)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
        "  kerbside-edge replay street.jsonl --config edge.yaml > events.jsonl\n"
        "  kerbside-edge replay street.jsonl --config edge.yaml --strict",
    )
    replay.add_argument(
        "capture", metavar="CAPTURE", help="capture file (JSON Lines, docs/protocols.md)"
    )
    replay.add_argument("--config", required=True, help="edge config file (YAML)")
    replay.add_argument(
        "--strict",
        action="store_true",
        help="exit 1 if any line was skipped (to be sure the whole capture was replayed)",
    )
    return parser


def check_main(args: argparse.Namespace) -> int:
    """``kerbside-edge check``: every problem, one line each; exit 2 on any error."""
    from kerbside.edge.config import check_edge_config  # noqa: PLC0415

    config, problems = check_edge_config(args.config)
    for line in ConfigFileError(args.config, problems).lines if problems else []:
        print(line, file=sys.stderr)
    if config is None:
        errors = sum(not p.warning for p in problems)
        print(f"{args.config}: {errors} error{'s' if errors != 1 else ''}", file=sys.stderr)
        return 2
    ble = "on" if config.ble.enabled else "off"
    print_lines(
        [
            f"{args.config}: ok: gateway {config.gateway_id}, {len(config.sensors)} sensors, "
            f"{len(config.serial)} serial ports, BLE {ble}, "
            f"broker {config.mqtt.host}:{config.mqtt.port}, outbox {config.outbox.path}"
        ]
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.log_level, args.log_format)
    module_name, func_name = _COMMANDS[args.command]
    try:
        command: Callable[[argparse.Namespace], int] = getattr(
            importlib.import_module(module_name), func_name
        )
        return command(args)
    except ConfigFileError as exc:
        for line in exc.lines:
            print(line, file=sys.stderr)
        return 2
    except ConfigError as exc:
        print(f"kerbside-edge: {exc}", file=sys.stderr)
        return 2
    except OutputError as exc:
        # stdout on a full disk: what was printed is incomplete
        print(f"kerbside-edge: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
