"""On PostgreSQL a committed change is announced to every listening gateway (NOTIFY), and a
change that rolls back is not."""

from __future__ import annotations

import asyncio

import pytest

from maas.errors import AlreadyExists
from maas.registry import db
from maas.registry.notifications import GenerationListener, listens
from maas.registry.service import Registry

pytestmark = pytest.mark.postgres


async def test_a_committed_change_is_heard_and_a_rolled_back_one_is_not(
    postgres_url: str,
) -> None:
    assert listens(postgres_url)
    assert not listens("sqlite:///x.db")
    database = db.open_database(postgres_url)
    await db.upgrade(database.engine)
    heard: asyncio.Queue[int] = asyncio.Queue()
    listener = GenerationListener(postgres_url, heard.put_nowait)
    listener.start()
    try:
        await asyncio.wait_for(listener.connected.wait(), timeout=10)
        registry = Registry(database.reads, writes=database.writes)
        before = await registry.generation()
        await registry.create_model(name="m", description="", actor="t")
        assert await asyncio.wait_for(heard.get(), timeout=5) == before + 1

        with pytest.raises(AlreadyExists):  # its transaction rolls back, bump and all
            await registry.create_model(name="m", description="", actor="t")
        await registry.create_model(name="n", description="", actor="t")
        assert await asyncio.wait_for(heard.get(), timeout=5) == before + 2
        assert await registry.generation() == before + 2
        assert heard.empty()
    finally:
        await listener.close()
        await database.dispose()
