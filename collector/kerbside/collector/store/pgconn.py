"""A collector's connection to its PostgreSQL store: opened with the options a long-running
collector needs, opened again after it was lost, and psycopg's errors turned into the
collector's, naming the database by its URL without the password.
"""

from __future__ import annotations

import contextlib
import logging
import urllib.parse
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import psycopg

from kerbside.collector.errors import StoreError
from kerbside.collector.store.opening import public_url

log = logging.getLogger(__name__)

Conn = psycopg.Connection[tuple[Any, ...]]
Cursor = psycopg.Cursor[tuple[Any, ...]]


def columns(rows: Iterable[Sequence[Any]]) -> list[list[Any]]:
    """Rows as one list per column: what ``unnest`` takes, one array a column."""
    return [list(column) for column in zip(*rows, strict=True)]


def one_line(exc: BaseException, url: str, password: str | None) -> str:
    """The error on one line, without the password: libpq quotes a URL it cannot parse."""
    text = (" ".join(str(exc).split()) or type(exc).__name__).replace(url, public_url(url))
    try:
        in_url = urllib.parse.urlsplit(url).password
    except ValueError:
        in_url = None
    for secret in (password, in_url, in_url and urllib.parse.unquote(in_url)):
        if secret:
            text = text.replace(secret, "***")
    return text


def connect(url: str, password: str | None, node: str) -> Conn:
    conn: Conn = psycopg.connect(url, **options(password, node))
    return conn


async def connect_async(
    url: str, password: str | None, node: str
) -> psycopg.AsyncConnection[tuple[Any, ...]]:
    """A connection on the event loop (to LISTEN, with several collectors)."""
    conn: psycopg.AsyncConnection[tuple[Any, ...]] = await psycopg.AsyncConnection.connect(
        url, **options(password, node)
    )
    return conn


def options(password: str | None, node: str) -> dict[str, Any]:
    """The connection's options (libpq's and psycopg's)."""
    options: dict[str, Any] = {
        "autocommit": True,  # transactions are explicit (conn.transaction())
        "connect_timeout": 5,
        "application_name": f"kerbside-collector {node}".strip(),
        # A database that vanishes without closing the connection (a machine lost, a network
        # cut) fails the call in hand within about 15 s instead of hanging the event loop.
        "keepalives": 1,
        "keepalives_idle": 5,
        "keepalives_interval": 2,
        "keepalives_count": 3,
        "tcp_user_timeout": 15_000,
        # Statements are prepared once (psycopg does after a few runs) but planned for their
        # values each time: a plan made generic while a table was small (a seq scan of an
        # empty events table) would otherwise stay as the table grows to millions of rows.
        "options": "-c plan_cache_mode=force_custom_plan",
    }
    if password is not None:
        options["password"] = password
    return options


class Database:
    """One connection to the database at ``url``, on the collector's event loop (reads that run
    in a worker thread open their own with ``connect``)."""

    def __init__(self, url: str, password: str | None, node: str) -> None:
        self.name = public_url(url)
        self._url = url
        self._password = password
        self.node = node
        self._db: Conn | None = None
        self._lost = False

    def _described(self, exc: BaseException) -> str:
        return one_line(exc, self._url, self._password)

    def _connection(self) -> Conn:
        db = self._db
        if db is None or db.closed:
            db = self._db = connect(self._url, self._password, self.node)
            if self._lost:
                log.info("store %s: connected again", self.name)
                self._lost = False
        return db

    @contextlib.contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        """psycopg's errors as ``StoreError`` naming the store (never its password)."""
        try:
            yield
        except psycopg.Error as exc:
            db = self._db
            if db is not None and db.closed and not self._lost:
                self._lost = True
                log.error("store %s: connection lost: %s", self.name, self._described(exc))  # noqa: TRY400 (one line)
            raise StoreError(f"{self.name}: {what}: {self._described(exc)}") from exc

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._errors("read failed"):
            return self._connection().execute(sql.encode(), params).fetchall()

    def _one(self, sql: str, params: Sequence[Any] = ()) -> Any:
        rows = self._rows(sql, params)
        return rows[0][0] if rows else None

    def _execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """One statement, committed on its own; returns the rows it touched."""
        with self._errors("write failed"):
            return self._connection().execute(sql.encode(), params).rowcount

    async def listener(self) -> psycopg.AsyncConnection[tuple[Any, ...]]:
        """A connection of its own on the event loop, for LISTEN (several collectors)."""
        try:
            return await connect_async(self._url, self._password, self.node)
        except psycopg.Error as exc:
            raise StoreError(f"{self.name}: cannot listen: {self._described(exc)}") from exc

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
