"""The installed version of Kerbside, read from the package metadata (``pyproject.toml`` is the
one place it is written)."""

from __future__ import annotations

import argparse
from importlib.metadata import PackageNotFoundError, version


def _installed_version() -> str:
    try:
        return version("kerbside")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "0+unknown"


VERSION = _installed_version()


def add_version_option(parser: argparse.ArgumentParser) -> None:
    """``--version``: prints ``<program> <version>`` and exits 0."""
    parser.add_argument("--version", action="version", version=f"%(prog)s {VERSION}")
