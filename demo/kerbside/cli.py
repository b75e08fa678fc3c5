"""``kerbside``: the umbrella command (``kerbside demo``, ``kerbside site ...``)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from kerbside.core.arguments import Parser
from kerbside.core.output import OutputError
from kerbside.core.version import add_version_option

EPILOG = """\
examples:
  kerbside demo                          # a live street here; prints the officers' page URL
  kerbside demo --port 8080 --duration 300
  kerbside site check site.yaml          # validate a site file
  kerbside site edge-config site.yaml --gateway gw-parkway-01 > edge.yaml
"""


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="kerbside",
        description="Kerbside: open platform for on-street parking bay sensors.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_version_option(parser)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    # `kerbside site` needs only the base install (the collector's site module is pure Python
    # over pydantic and PyYAML); the demo's own imports wait until it runs.
    from kerbside.core.site_cli import add_site_commands  # noqa: PLC0415
    from kerbside.demo import add_demo_command  # noqa: PLC0415

    add_demo_command(sub)
    add_site_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        result: int = args.func(args)
    except OutputError as exc:
        # stdout on a full disk (`site check`, `site edge-config`): what was printed is incomplete
        print(f"kerbside: {exc}", file=sys.stderr)
        return 1
    return result


if __name__ == "__main__":
    sys.exit(main())
