from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kerbside.collector.store import Store
from kerbside.collector.store.postgres import migrate
from tests.helpers import Mosquitto, topic_root_for
from tests.pg import KINDS, Stores, create_database, database_name, drop_database, empty

# Under pytest-xdist (``-n 2 --dist loadscope``) a module's tests go to one worker together, so
# its module-scoped fixtures (a collector, a street, a browser) are made once. The modules of
# these directories share session fixtures (tests/ansible: the debootstrap roots and playbook
# runs of one deployment): each directory is one unit, so one worker builds them once.
SHARED_SCOPES = ("tests/ansible/",)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The longest units first (the Ansible deployment, then the modules marked slow), so that
    under xdist the two workers finish together rather than one waiting on the last long one.
    A stable sort: each module keeps its tests together and in order."""

    def rank(item: pytest.Item) -> int:
        if item.nodeid.startswith(SHARED_SCOPES):
            return 0
        return 1 if item.get_closest_marker("slow") else 2

    items.sort(key=rank)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    if config.getvalue("dist") != "loadscope":
        return None
    from xdist.scheduler import LoadScopeScheduling  # noqa: PLC0415 (only under xdist)

    class ModuleScheduling(LoadScopeScheduling):  # type: ignore[misc]  # xdist has no types
        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::", 1)[0]
            return next((d for d in SHARED_SCOPES if module.startswith(d)), module)

    return ModuleScheduling(config, log)


@pytest.fixture(autouse=True)
def _no_handler_left_on_a_closed_stream() -> Iterator[None]:
    """A test that runs a command in-process (its logging set up on the test's captured stderr),
    or starts uvicorn inside ``capsys``, leaves handlers writing to a stream closed after it;
    every later record through them would print "--- Logging error ---" into other tests'
    output, hiding what really failed there. They go with the test."""
    yield
    manager = logging.Logger.manager
    for logger in [logging.getLogger(), *manager.loggerDict.values()]:
        if not isinstance(logger, logging.Logger):
            continue
        for handler in list(logger.handlers):
            stream = getattr(handler, "stream", None)
            if stream is not None and getattr(stream, "closed", False):
                logger.removeHandler(handler)


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
