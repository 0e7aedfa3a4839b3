"""Alembic migrations against SQLite and a real PostgreSQL: up, down, up again, and no drift."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import sqlalchemy
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from maas.registry.db import alembic_config, create_engine, downgrade, upgrade
from maas.registry.tables import Base

REPO_ROOT = Path(__file__).parents[2]
TABLES = set(Base.metadata.tables)


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    eng = create_engine(database_url)
    try:
        yield eng
    finally:
        await eng.dispose()


def _head(database_url: str) -> str | None:
    return ScriptDirectory.from_config(alembic_config(database_url)).get_current_head()


async def _tables(engine: AsyncEngine) -> set[str]:
    async with engine.connect() as conn:
        names = await conn.run_sync(lambda c: sqlalchemy.inspect(c).get_table_names())
    return set(names)


async def _revision(engine: AsyncEngine) -> str | None:
    def current(conn: Connection) -> str | None:
        return MigrationContext.configure(conn).get_current_revision()

    async with engine.connect() as conn:
        return await conn.run_sync(current)


async def _drift(engine: AsyncEngine) -> list[object]:
    def diff(conn: Connection) -> list[object]:
        return list(compare_metadata(MigrationContext.configure(conn), Base.metadata))

    async with engine.connect() as conn:
        return await conn.run_sync(diff)


def test_head_is_known(database_url: str) -> None:
    assert _head(database_url) is not None


async def test_upgrade_creates_every_table(engine: AsyncEngine, database_url: str) -> None:
    assert await _tables(engine) == set()
    await upgrade(engine)
    assert await _tables(engine) == TABLES | {"alembic_version"}
    assert await _revision(engine) == _head(database_url)


async def test_no_drift_between_migrations_and_tables(engine: AsyncEngine) -> None:
    await upgrade(engine)
    assert await _drift(engine) == []


async def test_downgrade_to_base_then_upgrade_again(engine: AsyncEngine, database_url: str) -> None:
    await upgrade(engine)
    await downgrade(engine, "base")
    assert await _tables(engine) <= {"alembic_version"}
    assert await _revision(engine) is None

    await upgrade(engine)
    assert await _tables(engine) == TABLES | {"alembic_version"}
    assert await _revision(engine) == _head(database_url)
    assert await _drift(engine) == []


async def test_upgrade_is_idempotent(engine: AsyncEngine, database_url: str) -> None:
    await upgrade(engine)
    await upgrade(engine)
    assert await _tables(engine) == TABLES | {"alembic_version"}
    assert await _revision(engine) == _head(database_url)


def _alembic(*args: str, database_url: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAAS_")}
    env["MAAS_DATABASE_URL"] = database_url
    return subprocess.run(
        [sys.executable, "-m", "alembic", *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_alembic_cli_upgrade_then_check(database_url: str) -> None:
    """The real `alembic` command line, configured by alembic.ini and MAAS_DATABASE_URL."""
    up = _alembic("upgrade", "head", database_url=database_url)
    assert up.returncode == 0, up.stdout + up.stderr

    check = _alembic("check", database_url=database_url)
    output = check.stdout + check.stderr
    assert check.returncode == 0, output
    assert "No new upgrade operations detected" in output  # also means: the database is at head
