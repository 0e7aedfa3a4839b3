"""A registry of many models for the console's audit tests, written before `maas serve` starts:
through the `Registry` itself, into the SQLite file the server then opens (`maas_env`'s
`registry.db`), so it costs a few seconds rather than hundreds of uploads.

The versions are `unloaded` rows with no artifact: nothing loads them (only registered, loading
and ready versions are placed on a worker, and only those are checked for their artifact at
start), and the console shows them as it shows any unloaded version."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

from maas.registry import db
from maas.registry.service import Registry
from maas.types import VersionStatus
from support.model_files import new_version

ACTOR = "console-seed"


def registry_url(data_dir: Path) -> str:
    """The registry `maas_server(data_dir, ...)` opens (see `support.processes.maas_env`)."""
    return f"sqlite:///{data_dir}/registry.db"


def fake_sha256(model: str, number: int) -> str:
    """A digest no artifact has: each seeded version names its own."""
    return hashlib.sha256(f"console-seed {model}@{number}".encode()).hexdigest()


async def _seed(database_url: str, versions: dict[str, int]) -> None:
    database = db.open_database(database_url)
    try:
        await db.upgrade(database.engine)
        registry = Registry(database.reads, writes=database.writes)
        meta = new_version()
        for model, count in versions.items():
            await registry.create_model(name=model, description="seeded", actor=ACTOR)
            for number in range(1, count + 1):
                await registry.add_version(
                    model=model,
                    sha256=fake_sha256(model, number),
                    size=1,
                    meta=meta,
                    status=VersionStatus.UNLOADED,
                    actor=ACTOR,
                )
    finally:
        await database.dispose()


def seed_unloaded(data_dir: Path, versions: dict[str, int]) -> None:
    """Create each model of `versions` in `data_dir`'s registry (migrated first) with that many
    unloaded versions, numbered from 1."""
    asyncio.run(_seed(registry_url(data_dir), versions))
