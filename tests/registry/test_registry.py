"""Registry operations on SQLite and on a real PostgreSQL server."""

from __future__ import annotations

import asyncio

import pytest

from maas.errors import (
    AliasInUse,
    AlreadyExists,
    ConcurrentChange,
    ModelNotFound,
    VersionNotFound,
    VersionNotReady,
)
from maas.registry.records import Route
from maas.registry.service import Registry
from maas.types import AliasAction, VersionKey, VersionStatus
from support.model_files import new_version
from support.registry_setup import ready_version

META = new_version()


async def test_models_and_versions(registry: Registry) -> None:
    await registry.create_model(name="digits", description="d", actor="t")
    with pytest.raises(AlreadyExists):
        await registry.create_model(name="digits", description="", actor="t")
    with pytest.raises(ModelNotFound):
        await registry.get_model("nope")
    v1 = await ready_version(registry, "digits")
    record = await registry.get_version(VersionKey("digits", v1))
    assert record.status is VersionStatus.READY
    assert record.loaded_at is not None
    assert record.inputs[0].shape == (4,)
    with pytest.raises(VersionNotFound):
        await registry.get_version(VersionKey("digits", 42))
    failed = await registry.set_status(
        VersionKey("digits", v1), VersionStatus.FAILED, load_error="boom"
    )
    assert failed is not None
    assert failed.load_error == "boom"


async def test_concurrent_uploads_get_distinct_numbers(registry: Registry) -> None:
    await registry.create_model(name="m", description="", actor="t")
    records = await asyncio.gather(
        *(
            registry.add_version(
                model="m",
                sha256="b" * 64,
                size=1,
                meta=META,
                status=VersionStatus.REGISTERED,
                actor="t",
            )
            for _ in range(8)
        )
    )
    assert sorted(r.version for r in records) == list(range(1, 9))


async def test_alias_rules(registry: Registry) -> None:
    await registry.create_model(name="m", description="", actor="t")
    v1 = await ready_version(registry, "m")
    v2 = await ready_version(registry, "m")
    pending = await registry.add_version(
        model="m", sha256="c" * 64, size=1, meta=META, status=VersionStatus.REGISTERED, actor="t"
    )
    with pytest.raises(VersionNotReady):
        await registry.set_alias(
            model="m", alias="production", routes=[Route(pending.version, 100)], actor="t"
        )
    await registry.set_alias(model="m", alias="production", routes=[Route(v1, 100)], actor="t")
    with pytest.raises(ConcurrentChange):
        await registry.set_alias(
            model="m", alias="production", routes=[Route(v2, 100)], actor="t", expected_current=v2
        )
    split = await registry.set_alias(
        model="m",
        alias="production",
        routes=[Route(v2, 10), Route(v1, 90)],
        actor="ops",
        action=AliasAction.PROMOTE,
        expected_current=v1,
    )
    assert split.routes == (Route(v1, 90), Route(v2, 10))
    with pytest.raises(AliasInUse):
        await registry.archive_version(VersionKey("m", v2), actor="t")
    history = await registry.alias_history(model="m", alias="production", limit=10)
    assert [h.action for h in history] == ["promote", "set"]
    assert history[0].key == "ops"
    undone = await registry.undo_alias(model="m", alias="production", actor="ops")
    assert undone.routes == (Route(v1, 100),)


async def test_unload_refused_while_an_alias_routes_to_the_version(registry: Registry) -> None:
    await registry.create_model(name="m", description="", actor="t")
    v1 = await ready_version(registry, "m")  # production's first target
    v2 = await ready_version(registry, "m")
    await registry.set_alias(model="m", alias="production", routes=[Route(v2, 100)], actor="t")
    await registry.set_alias(model="m", alias="canary", routes=[Route(v2, 100)], actor="t")
    with pytest.raises(AliasInUse, match=r"^m@2 serves alias\(es\) canary, production; move them"):
        await registry.unload_version(VersionKey("m", v2))
    # Whatever its status: a version that failed under an alias still has the alias's requests.
    await registry.set_status(VersionKey("m", v2), VersionStatus.FAILED, load_error="boom")
    with pytest.raises(AliasInUse):
        await registry.unload_version(VersionKey("m", v2))
    assert (await registry.get_version(VersionKey("m", v2))).status is VersionStatus.FAILED
    with pytest.raises(VersionNotFound):
        await registry.unload_version(VersionKey("m", 42))

    heard: list[int] = []
    registry.on_change(heard.append)
    await registry.set_status(VersionKey("m", v1), VersionStatus.FAILED, load_error="boom")
    unloaded = await registry.unload_version(VersionKey("m", v1))
    assert (unloaded.status, unloaded.load_error) == (VersionStatus.UNLOADED, None)
    assert heard[-1] == await registry.generation()

    await registry.archive_version(VersionKey("m", v1), actor="t")
    before = await registry.generation()
    archived = await registry.unload_version(VersionKey("m", v1))
    assert archived.status is VersionStatus.ARCHIVED  # as it is, and nothing to propagate
    assert await registry.generation() == before


async def test_concurrent_alias_changes_serialise(registry: Registry) -> None:
    await registry.create_model(name="m", description="", actor="t")
    versions = [await ready_version(registry, "m") for _ in range(3)]
    await registry.set_alias(model="m", alias="a", routes=[Route(versions[0], 100)], actor="t")
    results = await asyncio.gather(
        *(
            registry.set_alias(
                model="m",
                alias="a",
                routes=[Route(v, 100)],
                actor="t",
                expected_current=versions[0],
            )
            for v in versions[1:] * 4
        ),
        return_exceptions=True,
    )
    # Both saw version 1 as current; exactly one of them may win.
    wins = [r for r in results if not isinstance(r, BaseException)]
    assert len(wins) == 1
    assert all(isinstance(r, ConcurrentChange) for r in results if isinstance(r, BaseException))


async def test_keys(registry: Registry) -> None:
    record = await registry.create_key(name="k", scopes=["infer"], secret_hash="d" * 64, actor="t")
    found = await registry.find_key("d" * 64)
    assert found is not None
    assert found.scopes == ("infer",)
    await registry.revoke_key(record.id, actor="t")
    assert await registry.find_key("d" * 64) is None
