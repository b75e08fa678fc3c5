"""PostgreSQL for the tests: a fresh database per test module on the machine's server, emptied
between tests, and a server of a test's own (``initdb`` into a temporary directory) for tests
that stop, kill or restart it.

The machine's server is ``KERBSIDE_TEST_PG`` (default ``postgresql://postgres@127.0.0.1:5432/
postgres``, trust authentication); ``bash .ci/run`` installs and starts it. A test that needs it
fails, loudly, when it is not there: it never skips.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shutil
import subprocess
import tempfile
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest

from kerbside.collector.store import Store
from kerbside.collector.store.postgres import PostgresStore, migrate
from kerbside.collector.store.sqlite import SqliteStore
from tests.helpers import free_port

ADMIN_URL = os.environ.get("KERBSIDE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
KINDS = ("sqlite", "postgres")


def _admin() -> psycopg.Connection[tuple[object, ...]]:
    try:
        return psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        pytest.fail(
            f"PostgreSQL is not reachable at {ADMIN_URL} ({' '.join(str(exc).split())}):"
            " `bash .ci/run` installs and starts it",
            pytrace=False,
        )


def url_of(database: str) -> str:
    """The machine's server, database ``database``."""
    return urllib.parse.urlunsplit(urllib.parse.urlsplit(ADMIN_URL)._replace(path=f"/{database}"))


def create_database(name: str) -> str:
    """An empty database ``name`` (dropped first if a crashed run left it); returns its URL."""
    with _admin() as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'.encode())
        admin.execute(f'CREATE DATABASE "{name}"'.encode())
    return url_of(name)


def drop_database(name: str) -> None:
    with _admin() as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'.encode())


def database_name(module: str) -> str:
    """A database name of the module's own (and the process's, for parallel runs)."""
    tail = re.sub(r"[^a-z0-9_]", "_", module.rsplit(".", 1)[-1].lower())
    return f"kerbside_{tail[:40]}_{os.getpid()}"


def empty(url: str) -> None:
    """Every table of the Kerbside schema emptied and the journal and change counters back at
    zero (faster than a database per test: a module's tests share one)."""
    with psycopg.connect(url, autocommit=True) as db:
        tables = [
            r[0]
            for r in db.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
                " AND tablename NOT IN ('schema_version', 'commit_head')"
            ).fetchall()
        ]
        # DELETE, not TRUNCATE: on a few rows it is ~50 times faster (no new files to sync)
        with db.transaction():
            for table in tables:
                db.execute(f'DELETE FROM "{table}"'.encode())
            db.execute("UPDATE commit_head SET pos = 0, change_id = 0")


@dataclass
class Stores:
    """Opens stores of one kind on the test's own database (SQLite file or PostgreSQL
    database): ``open()`` again is the same data, as after a restart. Closes them all at the
    end of the test."""

    kind: str
    path: Path
    url: str | None = None
    opened: list[Store] = field(default_factory=list)

    def open(self) -> Store:
        store: Store = SqliteStore(self.path) if self.url is None else PostgresStore(self.url)
        self.opened.append(store)
        return store

    @property
    def config(self) -> str:
        """The ``store:`` value of a collector config for this database (YAML flow)."""
        return f"{{path: {self.path}}}" if self.url is None else f"{{url: '{self.url}'}}"

    def close(self) -> None:
        for store in self.opened:
            with contextlib.suppress(Exception):
                store.close()


# -- a server of the test's own ---------------------------------------------------------------


def _bindir() -> Path:
    """Debian's PostgreSQL programs (``initdb``, ``pg_ctl``), the newest installed."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), key=lambda p: int(p.parts[-3]))
    if found:
        return found[-1].parent
    pg_ctl = shutil.which("pg_ctl")
    if pg_ctl is None:
        pytest.fail("PostgreSQL's pg_ctl is not installed: `bash .ci/run` installs it")
    return Path(pg_ctl).parent


class OwnPostgres:
    """A PostgreSQL server on a free port with its data in a temporary directory, that a test
    can stop and start again. PostgreSQL refuses to run as root: as root the server runs as the
    ``postgres`` user (``runuser``), in a directory of its own outside the test's (pytest's
    temporary directories are private to root)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.workdir = Path(tempfile.mkdtemp(prefix="kerbside-pg-"))
        self.data = self.workdir / "data"
        self.log = self.workdir / "server.log"
        self.bindir = _bindir()
        self._as: list[str] = []
        if os.geteuid() == 0:
            user = pwd.getpwnam("postgres")
            os.chown(self.workdir, user.pw_uid, user.pw_gid)
            self._as = ["runuser", "-u", "postgres", "--"]
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/kerbside"

    def _run(self, *args: str) -> None:
        subprocess.run(
            [*self._as, *args], check=True, capture_output=True, timeout=120, cwd=self.workdir
        )

    def init(self) -> OwnPostgres:
        self._run(
            str(self.bindir / "initdb"),
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "-A",
            "trust",
            "--no-sync",
            "--no-instructions",
        )
        self.start()
        with psycopg.connect(self.url.replace("/kerbside", "/postgres"), autocommit=True) as db:
            db.execute("CREATE DATABASE kerbside")
        migrate(self.url)
        return self

    def start(self) -> None:
        options = f"-p {self.port} -k {self.workdir} -c listen_addresses=127.0.0.1"
        self._run(
            str(self.bindir / "pg_ctl"),
            "-D",
            str(self.data),
            "-l",
            str(self.log),
            "-o",
            options,
            "-w",
            "start",
        )

    def stop(self, mode: str = "fast") -> None:
        """``fast``: sessions ended, a clean shutdown; ``immediate``: as if the machine died."""
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")

    @property
    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def remove(self) -> None:
        if self.running:
            with contextlib.suppress(subprocess.SubprocessError):
                self.stop("immediate")
        shutil.rmtree(self.workdir, ignore_errors=True)


@contextlib.contextmanager
def own_postgres() -> Iterator[OwnPostgres]:
    server = OwnPostgres()
    try:
        yield server.init()
    finally:
        server.remove()
