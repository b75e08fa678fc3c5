"""``kerbside-collector token link NAME``: a one-time sign-in link for an officer, printed as a
URL (stdout, for scripts) and a QR code (the terminal, for the officer's phone camera).

It writes the link into the collector's store, which the running collector reads: run it on a
machine that can open that store, with the collector's config.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from kerbside.collector.config import CollectorConfig, load_config
from kerbside.collector.signin import SignInRefused, SignIns, digest, link_url, qr_svg
from kerbside.collector.store.opening import open_store
from kerbside.collector.tokens import TokenRegistry
from kerbside.core.config import ConfigError
from kerbside.core.output import print_lines

MAX_LINK_MINUTES = 7 * 24 * 60


def _config(args: argparse.Namespace) -> CollectorConfig:
    if not getattr(args, "config", None):
        raise ConfigError("token link: give --config FILE (the collector's: its store and tokens)")
    config = load_config(args.config)
    if config.tokens_file is None:
        raise ConfigError(f"{args.config}: tokens_file: not set; officers need tokens first")
    return config


def _base_url(args: argparse.Namespace, config: CollectorConfig) -> str:
    if getattr(args, "url", None):
        return str(args.url)
    http = config.http
    if http is not None and http.public_url:
        return http.public_url
    host, port = ("127.0.0.1", 8000) if http is None else (http.host, http.port)
    return f"http://{host}:{port}"


def link_main(args: argparse.Namespace) -> int:
    config = _config(args)
    assert config.tokens_file is not None
    minutes = args.minutes
    if minutes is None:
        minutes = config.http.signin_link_minutes if config.http is not None else 15
    if not 0 < minutes <= MAX_LINK_MINUTES:
        print(f"kerbside-collector: --minutes: 0 to {MAX_LINK_MINUTES} (a week)", file=sys.stderr)
        return 2
    store = open_store(config.store)
    try:
        signins = SignIns(store, TokenRegistry(Path(config.tokens_file)))
        code, expires = signins.make_link(args.name, int(time.time() * 1000), minutes)
        url = link_url(_base_url(args, config), code)
        # stdout holds the link's only copy: one that could not be written there is taken out
        # of the store again, so that no link stays valid that nobody was given
        printed = False
        try:
            printed = print_lines([url])
        finally:
            if not printed:
                store.take_signin_link(digest(code))
    except SignInRefused as exc:
        print(f"kerbside-collector: token link {args.name}: {exc.reason}", file=sys.stderr)
        if exc.status == 404:
            print(
                f"  add one first: kerbside-collector token add {args.name} --role officer"
                f" --config {args.config}",
                file=sys.stderr,
            )
        return 1
    finally:
        store.close()
    if not printed:
        print(
            f"kerbside-collector: token link {args.name}: no link made: stdout was closed before"
            " it could be written",
            file=sys.stderr,
        )
        return 1
    if args.svg:
        Path(args.svg).write_text(qr_svg(url), encoding="utf-8")
    if not args.no_qr:
        import segno  # noqa: PLC0415

        segno.make(url, error="m").terminal(out=sys.stderr, compact=True)
    until = time.strftime("%H:%M", time.localtime(expires / 1000))
    print(
        f"one-time sign-in link for {args.name}, valid until {until} ({minutes:g} min);"
        " open it on the officer's phone or scan the QR code",
        file=sys.stderr,
    )
    return 0


def end_sessions(config_path: str, name: str) -> None:
    """After a token is revoked: end its holder's sessions and unused links in the store now
    (a running collector would refuse them anyway, at their next use)."""
    config = load_config(config_path)
    store = open_store(config.store)
    try:
        ended = store.end_officer_sessions(name)
    finally:
        store.close()
    if ended:
        print(f"ended {ended} sign-in(s) of {name}", file=sys.stderr)
