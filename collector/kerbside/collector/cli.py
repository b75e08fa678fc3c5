"""``kerbside-collector``: ingest, rules, alerts, store and API (docs/operations.md)."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence

from kerbside.collector.errors import DamagedStoreError, StoreError, StoreRefused
from kerbside.core.arguments import Parser
from kerbside.core.checks import ConfigFileError
from kerbside.core.config import ConfigError
from kerbside.core.logs import add_logging_options, setup_logging
from kerbside.core.output import OutputError, print_lines
from kerbside.core.version import add_version_option

DEFAULT_CONFIG = "/etc/kerbside/collector.yaml"

# command -> (module, function): each takes the parsed args and returns an exit code.
_COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("kerbside.collector.runtime", "run_main"),
    "check": ("kerbside.collector.cli", "check_main"),
    "replay": ("kerbside.collector.replay", "replay_main"),
    "backfill": ("kerbside.collector.backfill", "backfill_main"),
    "token": ("kerbside.collector.tokens", "token_main"),
    "export-journal": ("kerbside.collector.runtime", "export_journal_main"),
    "migrate": ("kerbside.collector.runtime", "migrate_main"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="kerbside-collector",
        description="Kerbside collector: gateways in; sessions, alerts, time series and API out. "
        "Running it: docs/operations.md; formats: docs/protocols.md.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
        "  kerbside-collector check --config /etc/kerbside/collector.yaml\n"
        "  kerbside-collector migrate --config /etc/kerbside/collector.yaml\n"
        "  kerbside-collector run --config /etc/kerbside/collector.yaml\n"
        "  kerbside-collector replay journal.jsonl --site site.yaml --until 2026-11-26T18:00:00Z\n"
        "  kerbside-collector token add pc-1234 --role officer --config collector.yaml\n"
        "  kerbside-collector token link pc-1234 --config collector.yaml",
    )
    add_version_option(parser)
    add_logging_options(parser)
    # The logging options after the command too (`kerbside-collector run --log-format json`).
    logging_after = Parser(add_help=False, argument_default=argparse.SUPPRESS)
    add_logging_options(logging_after)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser(
        "run",
        parents=[logging_after],
        help="subscribe to the gateways, run the rules, serve the API",
        epilog="example: kerbside-collector run --config /etc/kerbside/collector.yaml",
    )
    run.add_argument(
        "--config", default=DEFAULT_CONFIG, help=f"collector config file (default {DEFAULT_CONFIG})"
    )

    check = sub.add_parser(
        "check",
        help="check a config file and the site file it names: every mistake with its line; "
        "exit 2 on any error",
        epilog="example: kerbside-collector check --config /etc/kerbside/collector.yaml",
    )
    check.add_argument(
        "--config", default=DEFAULT_CONFIG, help=f"collector config file (default {DEFAULT_CONFIG})"
    )

    replay = sub.add_parser(
        "replay",
        help="run the rules over a journal and print alert records "
        "(exit 1 on skipped lines with --strict)",
        description="Validate every line of JOURNAL as `run` validates a record, apply the\n"
        "accepted ones in order of time, and print on stdout the enforcement alerts\n"
        "raised up to --until, one JSON per line, with their status as of --until\n"
        "(docs/rules.md). Nothing else goes to stdout.\n"
        "\n"
        "On stderr: each line skipped, with its number and why (the alerts leave it out);\n"
        "how far a long journal has got; and a last line that sums up: records read,\n"
        "applied, skipped by reason (most common first), alerts printed.\n"
        "\n"
        "exit status:\n"
        "  0  done, skipped lines included\n"
        "  1  with --strict: a line was skipped (the alerts are printed all the same);\n"
        "     or stdout cannot be written (a full disk)\n"
        "  2  a mistake in the arguments or the site file, or a journal that cannot be\n"
        "     read (missing, a directory, binary or compressed: one line says which)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
        "  kerbside-collector replay journal.jsonl --site site.yaml > alerts.jsonl\n"
        "  kerbside-collector replay journal.jsonl --site site.yaml --strict"
        " --until 2026-11-26T18:00:00Z",
    )
    replay.add_argument(
        "journal",
        metavar="JOURNAL",
        help="journal file (JSON Lines, docs/protocols.md); - for stdin",
    )
    replay.add_argument("--site", required=True, help="site file (YAML, docs/site-file.md)")
    replay.add_argument(
        "--until",
        metavar="INSTANT",
        help="report alerts as of this instant (default: the last record's time)",
    )
    replay.add_argument(
        "--strict",
        action="store_true",
        help="exit 1 if any line was skipped (for audits that need the whole journal)",
    )

    backfill = sub.add_parser(
        "backfill",
        help="rewrite a period's time series points from the store into InfluxDB",
        epilog="example: kerbside-collector backfill --config collector.yaml "
        "--from 2026-11-01T00:00:00Z --to 2026-11-02T00:00:00Z",
    )
    backfill.add_argument("--config", required=True, help="collector config file (YAML)")
    backfill.add_argument("--from", dest="start", required=True, help="start instant (ISO 8601)")
    backfill.add_argument(
        "--to",
        dest="end",
        required=True,
        help="end instant (ISO 8601); zone_occupancy stops at the last minute that is over",
    )

    export = sub.add_parser(
        "export-journal",
        help="print the store's accepted records as a journal (JSON Lines, docs/protocols.md)",
        description="Print on stdout every accepted occupancy event, right and suspension in the\n"
        "store, one JSON per line (docs/protocols.md): `replay` over it reproduces the\n"
        "enforcement alerts the collector raised. Piped into `head`, it stops quietly.\n"
        "\n"
        "exit status:\n"
        "  0  done\n"
        "  1  stdout cannot be written (a full disk); or the store is full, locked or\n"
        "     cannot be opened\n"
        "  2  a mistake in the arguments or the config file, a store file that does not\n"
        "     exist, or a store that will not be used as it is (its database cannot be\n"
        "     reached, its schema is to migrate or newer, its file is damaged)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example: kerbside-collector export-journal --config collector.yaml > j.jsonl",
    )
    export.add_argument("--config", required=True, help="collector config file (YAML)")

    migrate = sub.add_parser(
        "migrate",
        help="create or upgrade the store's schema (PostgreSQL: before the first run and after"
        " an upgrade); idempotent",
        description="Create the store's schema in an empty database, or upgrade an older one,"
        " in one transaction; run it again and it changes nothing. A schema newer than this"
        " collector's is refused. Collectors on PostgreSQL refuse to start until it has run"
        " (a SQLite file is upgraded as the collector opens it).",
        epilog="example: kerbside-collector migrate --config /etc/kerbside/collector.yaml",
    )
    migrate.add_argument(
        "--config", default=DEFAULT_CONFIG, help=f"collector config file (default {DEFAULT_CONFIG})"
    )

    token = sub.add_parser(
        "token",
        help="manage API bearer tokens (add prints a new token once; only its hash is kept)",
        epilog="example: kerbside-collector token add pc-1234 --role officer --config c.yaml",
    )
    token.add_argument("--config", help="collector config file (its tokens_file is used)")
    token.add_argument("--tokens-file", help="tokens file to manage (overrides --config)")
    # The same two options after the action too (`token add NAME --role R --config C`).
    where = Parser(add_help=False, argument_default=argparse.SUPPRESS)
    where.add_argument("--config", help="collector config file (its tokens_file is used)")
    where.add_argument("--tokens-file", help="tokens file to manage (overrides --config)")
    token_sub = token.add_subparsers(dest="token_command", required=True, metavar="ACTION")
    add = token_sub.add_parser(
        "add",
        parents=[where],
        help="create a token for NAME with a role",
        epilog="example: kerbside-collector token add pc-1234 --role officer --config c.yaml",
    )
    add.add_argument("name")
    add.add_argument("--role", required=True, choices=["officer", "analyst", "admin", "provider"])
    revoke = token_sub.add_parser(
        "revoke",
        parents=[where],
        help="revoke NAME's token",
        epilog="example: kerbside-collector token revoke pc-1234 --config c.yaml",
    )
    revoke.add_argument("name")
    token_sub.add_parser(
        "list",
        parents=[where],
        help="list token names and roles",
        epilog="example: kerbside-collector token list --config c.yaml",
    )
    link = token_sub.add_parser(
        "link",
        parents=[where],
        help="a one-time sign-in link (and QR code) for officer NAME's phone",
        description="Make a one-time sign-in link for officer NAME (who has a token): print it"
        " on stdout and as a QR code on the terminal. Opened on the officer's phone, it signs"
        " the officers' page in for a shift; it works once, and only until it expires.",
        epilog="example: kerbside-collector token link pc-1234 --config collector.yaml",
    )
    link.add_argument("name")
    link.add_argument(
        "--minutes",
        type=float,
        help="how long the link waits to be used (default: http.signin_link_minutes, 15)",
    )
    link.add_argument(
        "--url", help="the API's address as phones reach it (default: http.public_url)"
    )
    link.add_argument("--svg", metavar="FILE", help="also write the QR code to FILE (SVG)")
    link.add_argument("--no-qr", action="store_true", help="print the link only")
    return parser


def check_main(args: argparse.Namespace) -> int:
    """``kerbside-collector check``: every problem, one line each; exit 2 on any error."""
    from kerbside.collector.config import check_config  # noqa: PLC0415
    from kerbside.collector.store.opening import store_name  # noqa: PLC0415

    config, problems, site_lines = check_config(args.config)
    for line in ConfigFileError(args.config, problems).lines if problems else []:
        print(line, file=sys.stderr)
    for line in site_lines:
        print(line, file=sys.stderr)
    if config is None:
        print(f"{args.config}: not usable (errors above)", file=sys.stderr)
        return 2
    api = "off" if config.http is None else f"{config.http.host}:{config.http.port}"
    cluster = ""
    if config.cluster is not None:
        cluster = (
            f", cluster node {config.cluster.node_id} (lease {config.cluster.lease_s:g} s,"
            f" shared group {config.mqtt.shared_group})"
        )
    print_lines(
        [
            f"{args.config}: ok: site {config.site}, broker {config.mqtt.host}:{config.mqtt.port}, "
            f"store {store_name(config.store)}, API {api}{cluster}"
        ]
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.log_level, args.log_format)
    module_name, func_name = _COMMANDS[args.command]
    command: Callable[[argparse.Namespace], int] = getattr(
        importlib.import_module(module_name), func_name
    )
    try:
        return command(args)
    except ConfigFileError as exc:
        for line in exc.lines:
            print(line, file=sys.stderr)
        return 2
    except (ConfigError, StoreRefused) as exc:
        # a store that will not be used as it is (unreachable at start, its schema to migrate
        # or newer): one line, named, and no restart
        print(f"kerbside-collector: {exc}", file=sys.stderr)
        return 2
    except DamagedStoreError as exc:
        # one line, and exit 2: systemd does not restart (RestartPreventExitStatus=2), since a
        # damaged file stays damaged; a full or locked one (StoreError) is worth another try
        print(f"kerbside-collector: {exc}", file=sys.stderr)
        return 2
    except (StoreError, OutputError) as exc:
        # a store full, locked or not openable (exit 1, which systemd restarts), or stdout on a
        # full disk (what was printed is incomplete): one line
        print(f"kerbside-collector: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
