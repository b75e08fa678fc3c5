"""Which store a config names, opened: SQLite (``store.path``, the default) or PostgreSQL
(``store.url``, with ``store.password_file``); and the store's name as logs and errors print it,
a URL never showing its password."""

from __future__ import annotations

import urllib.parse
from typing import TYPE_CHECKING

from kerbside.collector.errors import StoreError

if TYPE_CHECKING:
    from kerbside.collector.config import StoreConfig
    from kerbside.collector.store import Store


def public_url(url: str) -> str:
    """``url`` without its password (in the authority or as a ``password`` parameter)."""
    try:
        parts = urllib.parse.urlsplit(url)
        host = parts.netloc.rpartition("@")[2]
        user = parts.username
    except ValueError:
        return "<unreadable store url>"
    netloc = f"{urllib.parse.quote(urllib.parse.unquote(user), safe='')}@{host}" if user else host
    query = urllib.parse.urlencode(
        [
            (k, v)
            for k, v in urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
            if k != "password"
        ]
    )
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def store_name(config: StoreConfig) -> str:
    """What logs and ``check`` call the store: its file, or its URL without the password."""
    return str(config.path) if config.url is None else public_url(config.url)


def read_password(config: StoreConfig) -> str | None:
    if config.password_file is None:
        return None
    try:
        return config.password_file.read_text(encoding="utf-8").strip() or None
    except OSError as exc:
        raise StoreError(
            f"store.password_file: {config.password_file}: {exc.strerror or exc}"
        ) from exc


def open_store(config: StoreConfig, *, node: str = "") -> Store:
    """The store the config names (PostgreSQL: its schema checked, never changed; ``node`` keys
    this collector's own rows in a shared database)."""
    if config.url is None:
        from kerbside.collector.store.sqlite import SqliteStore  # noqa: PLC0415

        return SqliteStore(config.path)
    from kerbside.collector.store.postgres import PostgresStore  # noqa: PLC0415

    return PostgresStore(config.url, password=read_password(config), node=node)


def migrate_store(config: StoreConfig) -> tuple[int, int]:
    """Create or upgrade the store's schema; returns (version found, version now)."""
    if config.url is None:
        from kerbside.collector.store.schema import VERSION  # noqa: PLC0415
        from kerbside.collector.store.sqlite import SqliteStore  # noqa: PLC0415

        store = SqliteStore(config.path)  # a SQLite file is migrated as it opens
        store.close()
        return store.migrated_from, VERSION
    from kerbside.collector.store.pgschema import VERSION as PG_VERSION  # noqa: PLC0415
    from kerbside.collector.store.postgres import migrate  # noqa: PLC0415

    return migrate(config.url, password=read_password(config)), PG_VERSION
