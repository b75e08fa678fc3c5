from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from kerbside.collector.store import Store
from kerbside.collector.store.postgres import migrate
from tests.helpers import Mosquitto, topic_root_for
from tests.pg import KINDS, Stores, create_database, database_name, drop_database, empty


@pytest.fixture
def topic_root(request: pytest.FixtureRequest) -> str:
    return topic_root_for(request.node.name)


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    """A Mosquitto shared by the session's tests (each test keeps to its own topic root)."""
    mosq = Mosquitto(tmp_path_factory.mktemp("mosquitto")).start()
    yield mosq
    mosq.stop()


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[Mosquitto]:
    """A Mosquitto of the test's own, for tests that stop, kill or reconfigure it."""
    mosq = Mosquitto(tmp_path / "mosquitto").start()
    yield mosq
    mosq.stop()


# -- stores: every test that takes ``store`` or ``stores`` runs on SQLite and on PostgreSQL -----


@pytest.fixture(scope="module")
def pg_database(request: pytest.FixtureRequest) -> Iterator[str]:
    """A database of the test module's own on the machine's PostgreSQL, schema migrated."""
    name = database_name(request.module.__name__)
    url = create_database(name)
    migrate(url)
    yield url
    drop_database(name)


@pytest.fixture(params=KINDS)
def stores(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Stores]:
    """Opens stores on an empty database of the test's own: a SQLite file, or the module's
    PostgreSQL database emptied."""
    if request.param == "sqlite":
        made = Stores("sqlite", tmp_path / "collector.db")
    else:
        url = request.getfixturevalue("pg_database")
        empty(url)
        made = Stores("postgres", tmp_path / "collector.db", url)
    yield made
    made.close()


@pytest.fixture
def store(stores: Stores) -> Store:
    return stores.open()
