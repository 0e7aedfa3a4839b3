"""A database that cannot be reached is `RegistryUnavailable` (503), whatever the driver says."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from sqlalchemy.exc import IntegrityError, OperationalError

from maas.errors import RegistryUnavailable
from maas.registry import db
from maas.registry.service import Registry
from support.processes import free_port


def test_connection_errors_translate_and_the_rest_do_not() -> None:
    lost = OperationalError("SELECT 1", {}, Exception("server closed the connection"))
    assert isinstance(db.unavailable(lost), RegistryUnavailable)
    assert "server closed the connection" in db.unavailable(lost).message  # type: ignore[union-attr]
    assert isinstance(db.unavailable(ConnectionRefusedError(111, "refused")), RegistryUnavailable)
    assert isinstance(db.unavailable(TimeoutError()), RegistryUnavailable)
    duplicate = IntegrityError("INSERT", {}, Exception("UNIQUE constraint failed"))
    assert db.unavailable(duplicate) is None  # a conflict, which callers turn into 409
    assert db.unavailable(ValueError("a bug")) is None  # stays a bug


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
async def test_an_unreachable_database_is_registry_unavailable(tmp_path: Path, kind: str) -> None:
    if kind == "sqlite":
        (tmp_path / "registry.db").mkdir()  # a directory where the file should be
        url = f"sqlite:///{tmp_path}/registry.db"
    else:
        url = f"postgresql://postgres@127.0.0.1:{free_port()}/nothing"  # nobody listens
    database = db.open_database(url)
    registry = Registry(database.reads, writes=database.writes)
    try:
        started = time.monotonic()
        with pytest.raises(RegistryUnavailable) as caught:
            await registry.list_models()
        with pytest.raises(RegistryUnavailable):
            await registry.create_model(name="m", description="", actor="t")
        assert caught.value.code == "registry_unavailable"
        assert "unavailable" in caught.value.message
        assert time.monotonic() - started < 2 * db.CONNECT_TIMEOUT_S
    finally:
        await database.dispose()
