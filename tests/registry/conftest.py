"""A fresh, migrated registry on each backend: SQLite, and a real PostgreSQL server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from maas.registry import db
from maas.registry.coordination import Coordination
from maas.registry.service import Registry


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty database of each backend; PostgreSQL's server starts only when needed."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/registry.db"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
async def database(database_url: str) -> AsyncIterator[db.Database]:
    """The database of `database_url`, migrated to head."""
    opened = db.open_database(database_url)
    await db.upgrade(opened.engine)
    try:
        yield opened
    finally:
        await opened.dispose()


@pytest.fixture
def registry(database: db.Database) -> Registry:
    return Registry(database.reads, writes=database.writes)


@pytest.fixture
def coordination(database: db.Database) -> Coordination:
    return Coordination(database.reads, writes=database.writes)
