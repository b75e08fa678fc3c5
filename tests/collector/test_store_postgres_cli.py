"""The PostgreSQL store from the command line: ``migrate`` (created, up to date, a newer schema
refused with both versions named), and a collector that cannot use its store refusing to start
in one line, exit 2: a database it cannot reach (the URL named, never the password), one not
migrated, and ``cluster`` with a SQLite store."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from kerbside.collector.store.pgschema import VERSION
from tests.helpers import free_port, write_collector_setup
from tests.pg import create_database, database_name, drop_database

pytestmark = pytest.mark.slow  # starts processes (brokers, programs, servers)


def _collector(*args: str) -> subprocess.CompletedProcess[str]:
    config = Path(args[-1])  # every command here ends with --config FILE
    return subprocess.run(
        [sys.executable, "-m", "kerbside.collector.cli", *args],
        env={**os.environ, "STATE_DIRECTORY": str(config.parent)},  # the site cache there
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture
def blank() -> Iterator[str]:
    """A database without any schema, on the machine's server."""
    name = database_name(__name__)
    yield create_database(name)
    drop_database(name)


def test_migrate_creates_then_finds_it_up_to_date_and_refuses_a_newer_schema(
    tmp_path: Path, blank: str
) -> None:
    config = write_collector_setup(tmp_path, port=1, topic_root="t", store=f"{{url: '{blank}'}}")
    created = _collector("migrate", "--config", str(config))
    assert created.returncode == 0, created.stderr
    assert created.stdout == f"store {blank}: schema version {VERSION} created\n"
    again = _collector("migrate", "--config", str(config))
    assert again.returncode == 0, again.stderr
    assert again.stdout == f"store {blank}: schema version {VERSION}, up to date\n"
    with psycopg.connect(blank, autocommit=True) as db:
        db.execute("UPDATE schema_version SET version = %s", (VERSION + 1,))
    newer = _collector("migrate", "--config", str(config))
    assert newer.returncode == 2
    assert newer.stderr.splitlines() == [
        f"kerbside-collector: {blank}: store schema version {VERSION + 1} is newer than this"
        f" collector's ({VERSION}); run the collector that wrote it"
    ]


def test_a_collector_refuses_a_database_not_migrated(tmp_path: Path, blank: str) -> None:
    config = write_collector_setup(tmp_path, port=1, topic_root="t", store=f"{{url: '{blank}'}}")
    run = _collector("run", "--config", str(config))
    assert run.returncode == 2
    assert run.stderr.splitlines() == [
        f"kerbside-collector: {blank}: the database has no Kerbside schema, this collector needs"
        f" version {VERSION}: run `kerbside-collector migrate --config <your config>` first"
    ]


def test_an_unreachable_database_is_one_line_naming_the_url_without_its_password(
    tmp_path: Path,
) -> None:
    port = free_port()  # nothing listens there
    (tmp_path / "pg.password").write_text("file-secret\n")
    config = write_collector_setup(
        tmp_path,
        port=1,
        topic_root="t",
        store=f"{{url: 'postgresql://kerbside:url-secret@127.0.0.1:{port}/kerbside',"
        " password_file: pg.password}",
    )
    for command in ("run", "export-journal", "migrate"):
        result = _collector(command, "--config", str(config))
        assert result.returncode == 2, command
        lines = result.stderr.splitlines()
        assert len(lines) == 1, result.stderr
        assert lines[0].startswith(
            f"kerbside-collector: postgresql://kerbside@127.0.0.1:{port}/kerbside: "
        )
        assert "refused" in lines[0]
        assert "secret" not in result.stderr + result.stdout


def test_check_names_the_store_without_its_password(tmp_path: Path) -> None:
    (tmp_path / "pg.password").write_text("file-secret\n")
    config = write_collector_setup(
        tmp_path,
        port=1,
        topic_root="t",
        store="{url: 'postgresql://kerbside:url-secret@db.internal/kerbside?sslmode=require',"
        " password_file: pg.password}",
    )
    checked = _collector("check", "--config", str(config))
    assert checked.returncode == 0, checked.stderr
    assert "store postgresql://kerbside@db.internal/kerbside?sslmode=require," in checked.stdout
    assert "secret" not in checked.stdout


@pytest.mark.parametrize("command", ["run", "check"])
def test_cluster_with_a_sqlite_store_is_refused_in_one_line(tmp_path: Path, command: str) -> None:
    config = write_collector_setup(
        tmp_path, port=1, topic_root="t", extra="cluster: {node_id: collector-a, lease_s: 10}\n"
    )
    result = _collector(command, "--config", str(config))
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if "not usable" not in line]
    assert errors == [
        f"{config}:6: cluster: needs a PostgreSQL store (store.url): a SQLite file serves one"
        " collector"
    ]


def test_a_store_is_a_file_or_a_database_not_both(tmp_path: Path) -> None:
    config = write_collector_setup(
        tmp_path, port=1, topic_root="t", store="{path: c.db, url: 'postgresql://db/k'}"
    )
    result = _collector("check", "--config", str(config))
    assert result.returncode == 2
    assert "give either path (SQLite) or url (PostgreSQL), not both" in result.stderr


def test_a_postgresql_collector_keeps_its_site_cache_in_its_state_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from kerbside.collector.config import load_config  # noqa: PLC0415
    from kerbside.collector.sitecache import site_cache_path  # noqa: PLC0415

    on_file = load_config(write_collector_setup(tmp_path / "a", port=1, topic_root="t"))
    assert site_cache_path(on_file) == tmp_path / "a" / "collector.db.site-cache.json"
    on_db = load_config(
        write_collector_setup(
            tmp_path / "b", port=1, topic_root="t", store="{url: 'postgresql://db/k'}"
        )
    )
    monkeypatch.setenv("STATE_DIRECTORY", str(tmp_path / "state"))
    assert site_cache_path(on_db) == tmp_path / "state" / "site-cache.json"
    monkeypatch.delenv("STATE_DIRECTORY")
    assert site_cache_path(on_db) == Path("/var/lib/kerbside/site-cache.json")


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://kerbside:url-secret@127.0.0.1:notaport/kerbside",
        "postgresql://kerbside:url-secret@[::1/kerbside",
        "postgresql://kerbside:url-secret@127.0.0.1/kerbside?nosuchoption=1",
    ],
)
def test_a_url_libpq_cannot_read_is_refused_without_its_password(tmp_path: Path, url: str) -> None:
    config = write_collector_setup(tmp_path, port=1, topic_root="t", store=f"{{url: '{url}'}}")
    result = _collector("migrate", "--config", str(config))
    assert result.returncode == 2
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert "secret" not in result.stderr + result.stdout
