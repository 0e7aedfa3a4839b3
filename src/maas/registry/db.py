"""Engine, sessions and schema migrations for the registry.

The driver's errors enter maas here and only here: a session from `Sessions` turns "the
database cannot be reached" (connection refused, dropped, timed out, file unopenable) into
`RegistryUnavailable` (503 `registry_unavailable`), whatever the backend, so no caller needs to
know SQLAlchemy's, asyncpg's or sqlite3's exception types.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import event
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.ext.asyncio import AsyncSession as AsyncSession

from maas.config import async_database_url
from maas.errors import RegistryUnavailable

# A connection attempt to an unreachable PostgreSQL gives up after this long (asyncpg waits a
# minute by default), so a gateway cut off from its database answers 503 quickly.
CONNECT_TIMEOUT_S = 3.0


def unavailable(exc: BaseException) -> RegistryUnavailable | None:
    """The RegistryUnavailable an exception from the driver means, or None if it means
    something else (a constraint, a bug), which callers handle or which stays a bug."""
    if isinstance(exc, sa_exc.IntegrityError | sa_exc.ProgrammingError | sa_exc.DataError):
        return None
    if isinstance(exc, sa_exc.OperationalError | sa_exc.InterfaceError | sa_exc.TimeoutError):
        reason = str(getattr(exc, "orig", None) or exc).splitlines()[0]
    elif isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated:
        reason = str(exc.orig).splitlines()[0]
    elif isinstance(exc, OSError | TimeoutError) or _asyncpg_connection_error(exc):
        reason = f"{type(exc).__name__}: {exc}"
    else:
        return None
    return RegistryUnavailable(f"the registry database is unavailable ({reason[:200]})")


def _asyncpg_connection_error(exc: BaseException) -> bool:
    # asyncpg's own errors for a server that is gone, shutting down or not yet up, when raised
    # where SQLAlchemy does not wrap them (while connecting).
    name = type(exc).__name__
    return type(exc).__module__.startswith("asyncpg") and (
        "Connection" in name or name in ("CannotConnectNowError", "AdminShutdownError")
    )


class Sessions:
    """Opens registry sessions, translating the driver's 'cannot reach the database' errors.

    `sessions()` for reads, `sessions.begin()` for one transaction, both async context managers
    like SQLAlchemy's `async_sessionmaker`, whose sessions they hand out.
    """

    def __init__(self, factory: async_sessionmaker[AsyncSession]) -> None:
        self._factory = factory

    def __call__(self) -> contextlib.AbstractAsyncContextManager[AsyncSession]:
        return _translated(self._factory())

    def begin(self) -> contextlib.AbstractAsyncContextManager[AsyncSession]:
        return _translated(self._factory.begin())


@contextlib.asynccontextmanager
async def _translated(
    opened: contextlib.AbstractAsyncContextManager[AsyncSession],
) -> AsyncIterator[AsyncSession]:
    try:
        async with opened as session:
            yield session
    except Exception as exc:
        translated = unavailable(exc)
        if translated is None:
            raise
        raise translated from exc


SessionFactory = Sessions


def create_engine(database_url: str, *, for_writes: bool = False) -> AsyncEngine:
    """An async engine for `database_url`; SQLite gets WAL, a busy timeout and foreign keys.

    With `for_writes`, SQLite transactions start with BEGIN IMMEDIATE: a deferred transaction
    that reads and then writes fails at once (SQLITE_BUSY) if another connection wrote in
    between, while an immediate one waits its turn for the write lock. PostgreSQL needs none
    of this (its writes lock the rows they read with FOR UPDATE).
    """
    url = make_url(async_database_url(database_url))
    kwargs: dict[str, Any] = {
        "pool_pre_ping": True,
        "connect_args": {"timeout": CONNECT_TIMEOUT_S, "command_timeout": 10 * CONNECT_TIMEOUT_S},
    }
    if url.get_backend_name() == "sqlite":
        if url.database and url.database != ":memory:":
            Path(url.database).parent.mkdir(parents=True, exist_ok=True)
        kwargs = {"connect_args": {"timeout": 30}}
    engine = create_async_engine(url, **kwargs)
    if url.get_backend_name() == "sqlite":
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        if for_writes:
            event.listen(engine.sync_engine, "connect", _sqlite_manual_transactions)
            event.listen(engine.sync_engine, "begin", _sqlite_begin_immediate)
    return engine


def is_sqlite(engine: AsyncEngine) -> bool:
    return engine.url.get_backend_name() == "sqlite"


def _sqlite_manual_transactions(dbapi_connection: Any, _record: Any) -> None:
    # Stop the driver from issuing its own BEGIN, so the "begin" hook below decides.
    dbapi_connection.isolation_level = None


def _sqlite_begin_immediate(connection: Connection) -> None:
    connection.exec_driver_sql("BEGIN IMMEDIATE")


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def create_session_factory(engine: AsyncEngine) -> Sessions:
    return Sessions(async_sessionmaker(engine, expire_on_commit=False))


def migrations_dir() -> Path:
    """`migrations/` of a source checkout, or the copy a wheel carries as `maas/_migrations`."""
    packaged = Path(__file__).resolve().parent.parent / "_migrations"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parents[3] / "migrations"


def alembic_config(database_url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir()))
    cfg.set_main_option("sqlalchemy.url", async_database_url(database_url).replace("%", "%%"))
    return cfg


def _run(connection: Connection, cfg: Config, verb: str, revision: str) -> None:
    cfg.attributes["connection"] = connection
    if verb == "upgrade":
        command.upgrade(cfg, revision)
    else:
        command.downgrade(cfg, revision)


async def upgrade(engine: AsyncEngine, revision: str = "head") -> None:
    """Apply migrations up to `revision` over the engine's own connection."""
    cfg = alembic_config(engine.url.render_as_string(hide_password=False))
    async with engine.begin() as conn:
        await conn.run_sync(_run, cfg, "upgrade", revision)


async def downgrade(engine: AsyncEngine, revision: str) -> None:
    cfg = alembic_config(engine.url.render_as_string(hide_password=False))
    async with engine.begin() as conn:
        await conn.run_sync(_run, cfg, "downgrade", revision)


@dataclass
class Database:
    """The registry's engines: one for reads, and (on SQLite) one whose transactions write."""

    engine: AsyncEngine
    write_engine: AsyncEngine

    @property
    def reads(self) -> Sessions:
        return create_session_factory(self.engine)

    @property
    def writes(self) -> Sessions:
        return create_session_factory(self.write_engine)

    async def dispose(self) -> None:
        await self.engine.dispose()
        if self.write_engine is not self.engine:
            await self.write_engine.dispose()


def open_database(database_url: str) -> Database:
    engine = create_engine(database_url)
    if is_sqlite(engine):
        return Database(engine, create_engine(database_url, for_writes=True))
    return Database(engine, engine)
