"""Shared pytest fixtures for the maas test suite."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from maas.config import Settings
from maas.demo import digits, tokens
from maas.demo.artifact import DemoModel
from support.inprocess_gateway import Gateway, make_settings, running_gateway
from support.postgres import postgres_server, postgres_url  # noqa: F401
from support.s3_server import s3_bucket, s3_server  # noqa: F401


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path)


@pytest.fixture
async def gateway(settings: Settings) -> AsyncIterator[Gateway]:
    async with running_gateway(settings) as gw:
        yield gw


@pytest.fixture(scope="session")
def digits_demo() -> DemoModel:
    """The digits demo, trained once per session (a few seconds)."""
    return digits.train()


@pytest.fixture(scope="session")
def tokens_demo() -> DemoModel:
    """The tokens demo, trained once per session (about 20 s on two cores)."""
    return tokens.train()
