"""The cluster tests' database: the module's own on the machine's PostgreSQL, emptied."""

from __future__ import annotations

import pytest

from tests.pg import empty


@pytest.fixture
def url(pg_database: str) -> str:
    empty(pg_database)
    return pg_database
