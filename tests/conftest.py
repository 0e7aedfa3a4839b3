"""Shared pytest fixtures for the maas test suite."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway import ADMIN_SECRET, Gateway, running_gateway
from maas.config import Settings
from pg import postgres_server, postgres_url  # noqa: F401


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path)


def make_settings(tmp_path: Path, database_url: str | None = None, **extra: object) -> Settings:
    return Settings(
        database_url=database_url or f"sqlite:///{tmp_path}/registry.db",
        artifact_dir=tmp_path / "artifacts",
        data_dir=tmp_path,
        bootstrap_admin_key=ADMIN_SECRET,
        routing_refresh_s=60,
        torch_threads=1,
        **extra,  # type: ignore[arg-type]
    )


@pytest.fixture
async def gateway(settings: Settings) -> AsyncIterator[Gateway]:
    async with running_gateway(settings) as gw:
        yield gw
