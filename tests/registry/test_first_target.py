"""A model's first ready version becomes its `production` target when it has none, audited as
the system's change; a model that has one is never moved implicitly. SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio

from maas.registry.aliasing import SYSTEM_ACTOR
from maas.registry.records import Route
from maas.registry.service import Registry
from maas.types import AliasAction, VersionKey, VersionStatus
from support.model_files import new_version

META = new_version()


async def _version(registry: Registry, model: str = "m") -> VersionKey:
    record = await registry.add_version(
        model=model,
        sha256="a" * 64,
        size=1,
        meta=META,
        status=VersionStatus.REGISTERED,
        actor="uploader",
        create_model=True,
    )
    return record.key


async def _ready(registry: Registry, key: VersionKey) -> None:
    await registry.set_status(key, VersionStatus.LOADING)
    turned = await registry.set_status(
        key, VersionStatus.READY, only_from=frozenset({VersionStatus.LOADING})
    )
    assert turned is not None


async def _production(registry: Registry, model: str = "m") -> tuple[Route, ...]:
    return (await registry.get_alias(model=model, alias="production")).routes


async def test_the_first_ready_version_becomes_production(registry: Registry) -> None:
    key = await _version(registry)
    before = await registry.generation()
    await _ready(registry, key)
    assert await _production(registry) == (Route(key.version, 100),)
    # One generation for the version and its alias: a gateway serving it sees both at once.
    assert await registry.generation() == before + 2  # LOADING, then READY with the alias
    (row,) = await registry.alias_history(model="m", alias="production", limit=10)
    assert row.action == AliasAction.SET.value
    assert row.key == SYSTEM_ACTOR == "system"
    assert row.from_routes is None
    assert row.to_routes == (Route(key.version, 100),)
    (event,) = await registry.events(limit=10, action="alias")
    assert (event.key, event.action, event.target) == ("system", "alias.set", "m/production")
    assert event.before is None
    assert event.after == [{"version": key.version, "weight": 100}]


async def test_a_later_version_does_not_move_it(registry: Registry) -> None:
    first, second = await _version(registry), await _version(registry)
    await _ready(registry, first)
    await _ready(registry, second)
    assert await _production(registry) == (Route(first.version, 100),)
    history = await registry.alias_history(model="m", alias="production", limit=10)
    assert len(history) == 1


async def test_an_explicit_production_is_left_alone(registry: Registry) -> None:
    first = await _version(registry)
    await _ready(registry, first)
    await registry.set_alias(
        model="m", alias="production", routes=[Route(first.version, 100)], actor="ops"
    )  # the same target: nothing recorded
    second = await _version(registry)
    await _ready(registry, second)
    await registry.set_alias(
        model="m",
        alias="production",
        routes=[Route(second.version, 100)],
        actor="ops",
        action=AliasAction.PROMOTE,
    )
    await registry.undo_alias(model="m", alias="production", actor="ops")  # back to the first
    third = await _version(registry)
    await _ready(registry, third)
    assert await _production(registry) == (Route(first.version, 100),)
    history = await registry.alias_history(model="m", alias="production", limit=10)
    assert [(h.action, h.key) for h in history] == [
        ("rollback", "ops"),
        ("promote", "ops"),
        ("set", "system"),
    ]


async def test_a_failed_or_unloaded_version_never_becomes_production(registry: Registry) -> None:
    key = await _version(registry)
    await registry.set_status(key, VersionStatus.LOADING)
    await registry.set_status(key, VersionStatus.FAILED, load_error="boom")
    await registry.set_status(key, VersionStatus.UNLOADED)
    model = await registry.get_model("m")
    assert model.aliases == ()
    assert await registry.events(limit=10, action="alias") == []


async def test_after_production_was_deleted_the_next_ready_version_takes_it(
    registry: Registry,
) -> None:
    first = await _version(registry)
    await _ready(registry, first)
    await registry.set_status(first, VersionStatus.UNLOADED)  # nothing left to serve
    await registry.delete_alias(model="m", alias="production", actor="ops")
    await _ready(registry, first)  # loaded again
    assert await _production(registry) == (Route(first.version, 100),)
    history = await registry.alias_history(model="m", alias="production", limit=10)
    assert [(h.action, h.key) for h in history] == [
        ("set", "system"),
        ("delete", "ops"),
        ("set", "system"),
    ]


async def test_versions_turning_ready_at_once_set_it_exactly_once(registry: Registry) -> None:
    keys = [await _version(registry) for _ in range(6)]
    for key in keys:
        await registry.set_status(key, VersionStatus.LOADING)
    results = await asyncio.gather(
        *(
            registry.set_status(
                key, VersionStatus.READY, only_from=frozenset({VersionStatus.LOADING})
            )
            for key in keys
        ),
        return_exceptions=True,
    )
    assert not [r for r in results if isinstance(r, BaseException)], results
    (route,) = await _production(registry)
    assert route.version in {k.version for k in keys}
    history = await registry.alias_history(model="m", alias="production", limit=10)
    assert [h.action for h in history] == ["set"]
    assert [e.target for e in await registry.events(limit=20, action="alias")] == ["m/production"]
