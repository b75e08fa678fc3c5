from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import Mosquitto, topic_root_for


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
