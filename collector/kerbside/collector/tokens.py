"""API bearer tokens: ``kerbside-collector token add|revoke|list|link`` and the lookup the API
uses (``link``, an officer's one-time sign-in link, is in signin_cli.py).

The tokens file (``tokens_file``, docs/api.md) is YAML, ``[{name, role, sha256}]``: only the SHA-256
of a token is kept, so a leaked file grants nothing. ``add`` prints the new token once.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import secrets
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from kerbside.core.config import ConfigError
from kerbside.core.output import print_lines

ROLES = ("officer", "analyst", "admin", "provider")
_NAME_RE = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")
_SHA_RE = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class TokenHolder:
    """Who a token belongs to: a person or system (``name``) with one role."""

    name: str
    role: str
    sha256: str


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_token() -> str:
    """A fresh token: 256 random bits, URL-safe, with a prefix that says what it is."""
    return "kbs_" + secrets.token_urlsafe(32)


def load_tokens(path: Path) -> list[TokenHolder]:
    """Read a tokens file; a missing file holds no tokens. ConfigError names the bad entry."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {str(exc).splitlines()[0]}") from exc
    if data is None:
        return []
    if not isinstance(data, list):
        raise ConfigError(f"{path}: expected a list of {{name, role, sha256}}")
    holders: list[TokenHolder] = []
    for index, item in enumerate(data):
        if not isinstance(item, dict):
            raise ConfigError(f"{path}: [{index}]: expected a mapping")
        name, role, sha = item.get("name"), item.get("role"), item.get("sha256")
        if not isinstance(name, str) or not _NAME_RE.match(name):
            raise ConfigError(f"{path}: [{index}].name: expected [A-Za-z0-9_.@-]{{1,64}}")
        if role not in ROLES:
            raise ConfigError(f"{path}: [{index}].role: expected one of {', '.join(ROLES)}")
        if not isinstance(sha, str) or not _SHA_RE.match(sha):
            raise ConfigError(f"{path}: [{index}].sha256: expected 64 lowercase hex digits")
        holders.append(TokenHolder(name=name, role=str(role), sha256=sha))
    return holders


def save_tokens(path: Path, holders: list[TokenHolder]) -> None:
    """Write atomically (temp file + rename), readable by its owner only."""
    data = [{"name": h.name, "role": h.role, "sha256": h.sha256} for h in holders]
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tokens-", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            yaml.safe_dump(data, out, sort_keys=False)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class TokenRegistry:
    """Token lookup for the API. Re-reads the file when it changes (at most once a second), so
    ``token add`` and ``token revoke`` take effect without a restart. A file that becomes
    unreadable or invalid keeps the last good set (and says so once in the log)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._by_hash: dict[str, TokenHolder] = {}
        self._by_name: dict[str, TokenHolder] = {}
        self._stamp: tuple[int, int] | None = None
        self._checked = -1.0
        self._lock = threading.Lock()
        self.error: str | None = None
        self._refresh(force=True)

    def lookup(self, token: str) -> TokenHolder | None:
        self._refresh()
        return self._by_hash.get(hash_token(token))

    def by_name(self, name: str, *, fresh: bool = False) -> TokenHolder | None:
        """The holder's current token (names are unique in the file); ``fresh`` looks at the
        file now rather than up to a second ago (for a token added a moment before)."""
        self._refresh(force=fresh)
        return self._by_name.get(name)

    def _refresh(self, *, force: bool = False) -> None:
        if self.path is None:
            return
        now = time.monotonic()
        if not force and now - self._checked < 1.0:
            return
        with self._lock:
            self._checked = now
            try:
                st = self.path.stat()
                stamp = (st.st_mtime_ns, st.st_size)
            except OSError:
                stamp = (0, 0)
            if stamp == self._stamp:
                return
            try:
                holders = load_tokens(self.path)
            except ConfigError as exc:
                self.error = str(exc)
                return
            self._stamp = stamp
            self.error = None
            self._by_hash = {h.sha256: h for h in holders}
            self._by_name = {h.name: h for h in holders}


def _tokens_path(args: argparse.Namespace) -> Path:
    if getattr(args, "tokens_file", None):
        return Path(args.tokens_file)
    if getattr(args, "config", None):
        from kerbside.collector.config import load_config  # noqa: PLC0415 - only when asked

        config = load_config(args.config)
        if config.tokens_file is None:
            raise ConfigError(f"{args.config}: tokens_file: not set; add it or pass --tokens-file")
        return Path(config.tokens_file)
    raise ConfigError("token: give --config FILE (its tokens_file) or --tokens-file FILE")


def token_main(args: argparse.Namespace) -> int:
    """``kerbside-collector token add NAME --role R | revoke NAME | list | link NAME``."""
    if args.token_command == "link":  # noqa: S105 - a command name, not a secret
        from kerbside.collector.signin_cli import link_main  # noqa: PLC0415 - only when asked

        return link_main(args)
    path = _tokens_path(args)
    holders = load_tokens(path)
    action = args.token_command
    if action == "add":
        name, role = args.name, args.role
        if not _NAME_RE.match(name):
            print(
                f"kerbside-collector: token name {name!r}: use [A-Za-z0-9_.@-]{{1,64}}",
                file=sys.stderr,
            )
            return 2
        if role not in ROLES:
            print(
                f"kerbside-collector: role {role!r}: use one of {', '.join(ROLES)}", file=sys.stderr
            )
            return 2
        if any(h.name == name for h in holders):
            print(
                f"kerbside-collector: {path}: {name} already has a token; revoke it first",
                file=sys.stderr,
            )
            return 1
        token = new_token()
        # Printed (and flushed) before its hash is stored: stdout on a full disk, an OutputError,
        # then stores nothing, where a token stored first would be valid with its only copy lost.
        if not print_lines([token]):
            print(
                f"kerbside-collector: token for {name} not stored: stdout was closed before it"
                " could be written",
                file=sys.stderr,
            )
            return 1
        try:
            save_tokens(path, [*holders, TokenHolder(name, role, hash_token(token))])
        except OSError as exc:
            print(
                f"kerbside-collector: {path}: cannot write: {exc.strerror or exc};"
                f" the token printed for {name} is not valid",
                file=sys.stderr,
            )
            return 1
        print(
            f"token for {name} ({role}) stored as a hash in {path}; it is shown only now",
            file=sys.stderr,
        )
        return 0
    if action == "revoke":
        kept = [h for h in holders if h.name != args.name]
        if len(kept) == len(holders):
            print(f"kerbside-collector: {path}: no token named {args.name}", file=sys.stderr)
            return 1
        try:
            save_tokens(path, kept)
        except OSError as exc:
            print(
                f"kerbside-collector: {path}: cannot write: {exc.strerror or exc};"
                f" {args.name}'s token is still valid",
                file=sys.stderr,
            )
            return 1
        print(f"revoked {args.name}", file=sys.stderr)
        if getattr(args, "config", None):
            from kerbside.collector.signin_cli import end_sessions  # noqa: PLC0415

            end_sessions(args.config, args.name)
        return 0
    print_lines(f"{holder.name}\t{holder.role}" for holder in holders)
    return 0
