"""``kerbside-collector``: ingest, rules, alerts, store and API (SPEC section 8)."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Callable, Sequence

from kerbside.core.config import ConfigError

# command -> (module, function): each takes the parsed args and returns an exit code.
_COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("kerbside.collector.runtime", "run_main"),
    "replay": ("kerbside.collector.replay", "replay_main"),
    "backfill": ("kerbside.collector.backfill", "backfill_main"),
    "token": ("kerbside.collector.tokens", "token_main"),
    "export-journal": ("kerbside.collector.runtime", "export_journal_main"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kerbside-collector",
        description="Kerbside collector: gateways in; sessions, alerts, time series and API out.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
        "  kerbside-collector run --config /etc/kerbside/collector.yaml\n"
        "  kerbside-collector replay journal.jsonl --site site.yaml --until 2026-11-26T18:00:00Z\n"
        "  kerbside-collector token add pc-1234 --role officer --config collector.yaml",
    )
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING (default INFO)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser(
        "run",
        help="subscribe to the gateways, run the rules, serve the API",
        epilog="example: kerbside-collector run --config /etc/kerbside/collector.yaml",
    )
    run.add_argument("--config", required=True, help="collector config file (YAML, SPEC section 8)")

    replay = sub.add_parser(
        "replay",
        help="run the rules over a journal and print alert records",
        epilog="example: kerbside-collector replay journal.jsonl --site site.yaml",
    )
    replay.add_argument("journal", help="journal file (JSON Lines, SPEC section 8)")
    replay.add_argument("--site", required=True, help="site file (YAML, SPEC section 6)")
    replay.add_argument("--until", help="report alerts as of this instant (default: last record)")

    backfill = sub.add_parser(
        "backfill",
        help="rewrite a period's time series points from the store into InfluxDB",
        epilog="example: kerbside-collector backfill --config collector.yaml "
        "--from 2026-11-01T00:00:00Z --to 2026-11-02T00:00:00Z",
    )
    backfill.add_argument("--config", required=True, help="collector config file (YAML)")
    backfill.add_argument("--from", dest="start", required=True, help="start instant (ISO 8601)")
    backfill.add_argument("--to", dest="end", required=True, help="end instant (ISO 8601)")

    export = sub.add_parser(
        "export-journal",
        help="print the store's accepted records as a journal (JSON Lines, SPEC section 8)",
        epilog="example: kerbside-collector export-journal --config collector.yaml > j.jsonl",
    )
    export.add_argument("--config", required=True, help="collector config file (YAML)")

    token = sub.add_parser(
        "token",
        help="manage API bearer tokens (add prints a new token once; only its hash is kept)",
        epilog="example: kerbside-collector token add pc-1234 --role officer --config c.yaml",
    )
    token.add_argument("--config", help="collector config file (its tokens_file is used)")
    token.add_argument("--tokens-file", help="tokens file to manage (overrides --config)")
    # The same two options after the action too (`token add NAME --role R --config C`).
    where = argparse.ArgumentParser(add_help=False, argument_default=argparse.SUPPRESS)
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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    module_name, func_name = _COMMANDS[args.command]
    command: Callable[[argparse.Namespace], int] = getattr(
        importlib.import_module(module_name), func_name
    )
    try:
        return command(args)
    except ConfigError as exc:
        print(f"kerbside-collector: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
