"""``kerbside``: the umbrella command (``kerbside demo``, ``kerbside site ...``)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kerbside",
        description="Kerbside: open platform for on-street parking bay sensors.",
        epilog="example: kerbside demo --duration 300",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    from kerbside.collector.site_cli import add_site_commands  # noqa: PLC0415 - optional extra

    add_site_commands(sub)
    from kerbside.demo import add_demo_command  # noqa: PLC0415 - pulls in every component

    add_demo_command(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
