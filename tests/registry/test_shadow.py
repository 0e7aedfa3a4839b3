"""An alias's shadow in the registry: setting, replacing and removing it, what is refused, the
generation and audit row a change writes, and the versions a shadow protects, on SQLite and on
a real PostgreSQL server."""

from __future__ import annotations

import pytest

from maas.errors import AliasInUse, AliasNotFound, BadRequest, VersionNotFound, VersionNotReady
from maas.registry.records import Route
from maas.registry.service import Registry
from maas.types import Shadow, VersionKey, VersionStatus
from support.registry_setup import META, model_with_ready_versions


async def _shadow_events(registry: Registry) -> list[tuple[object, object]]:
    events = await registry.events(limit=50, model="m", action="alias.shadow")
    return [(e.before, e.after) for e in reversed(events)]


async def test_set_replace_and_remove_a_shadow(registry: Registry) -> None:
    await model_with_ready_versions(registry, 3)
    generation = await registry.generation()
    record = await registry.set_shadow("m", "production", Shadow(2, 10), actor="alice")
    assert record.shadow == Shadow(2, 10)
    assert record.routes == (Route(1, 100),)  # the routes stay as they are
    assert record.generation is not None
    assert record.generation > generation
    assert await registry.generation() == record.generation

    replaced = await registry.set_shadow("m", "production", Shadow(3, 100), actor="alice")
    assert replaced.shadow == Shadow(3, 100)
    assert replaced.generation is not None
    assert replaced.generation > record.generation

    removed = await registry.set_shadow("m", "production", None, actor="bob")
    assert removed.shadow is None
    assert (await registry.get_alias(model="m", alias="production")).shadow is None
    events = await registry.events(limit=50, model="m", action="alias.shadow")
    assert [(e.key, e.target) for e in events] == [
        ("bob", "m/production"),
        ("alice", "m/production"),
        ("alice", "m/production"),
    ]
    assert await _shadow_events(registry) == [
        (None, {"version": 2, "percent": 10}),
        ({"version": 2, "percent": 10}, {"version": 3, "percent": 100}),
        ({"version": 3, "percent": 100}, None),
    ]


async def test_every_read_of_the_alias_carries_its_shadow(registry: Registry) -> None:
    await model_with_ready_versions(registry, 2)
    await registry.set_shadow("m", "production", Shadow(2, 25), actor="t")
    assert (await registry.get_alias(model="m", alias="production")).shadow == Shadow(2, 25)
    (alias,) = (await registry.get_model("m")).aliases
    assert alias.shadow == Shadow(2, 25)
    (model,) = await registry.list_models()
    assert model.aliases[0].shadow == Shadow(2, 25)
    # A route change keeps the shadow, and its answer says so.
    moved = await registry.set_alias(
        model="m", alias="production", routes=[Route(1, 90), Route(2, 10)], actor="t"
    )
    assert moved.shadow == Shadow(2, 25)
    undone = await registry.rollback(model="m", alias="production", actor="t")
    assert undone.routes == (Route(1, 100),)
    assert undone.shadow == Shadow(2, 25)


async def test_setting_the_same_shadow_or_removing_none_changes_nothing(
    registry: Registry,
) -> None:
    await model_with_ready_versions(registry, 2)
    nothing = await registry.set_shadow("m", "production", None, actor="t")
    assert nothing.shadow is None
    assert nothing.generation is None
    await registry.set_shadow("m", "production", Shadow(2, 50), actor="t")
    generation = await registry.generation()
    again = await registry.set_shadow("m", "production", Shadow(2, 50), actor="t")
    assert again.shadow == Shadow(2, 50)
    assert again.generation is None
    assert await registry.generation() == generation
    assert len(await _shadow_events(registry)) == 1


async def test_shadow_changes_stay_out_of_the_alias_history(registry: Registry) -> None:
    await model_with_ready_versions(registry, 2)
    before = await registry.alias_history(model="m", alias="production", limit=10)
    await registry.set_shadow("m", "production", Shadow(2, 10), actor="t")
    await registry.set_shadow("m", "production", None, actor="t")
    assert await registry.alias_history(model="m", alias="production", limit=10) == before


async def test_refused_shadows(registry: Registry) -> None:
    await model_with_ready_versions(registry, 1)
    draft = await registry.add_version(
        model="m", sha256="a" * 64, size=1, meta=META, status=VersionStatus.REGISTERED, actor="t"
    )
    with pytest.raises(AliasNotFound, match="no alias 'canary'"):
        await registry.set_shadow("m", "canary", Shadow(1, 10), actor="t")
    with pytest.raises(VersionNotFound, match="no version 9"):
        await registry.set_shadow("m", "production", Shadow(9, 10), actor="t")
    with pytest.raises(VersionNotReady, match=r"m@2 is registered; an alias may only shadow"):
        await registry.set_shadow("m", "production", Shadow(draft.version, 10), actor="t")
    for percent in (0, 101, -5):
        with pytest.raises(BadRequest, match=f"1 to 100 percent .*not {percent}"):
            await registry.set_shadow("m", "production", Shadow(1, percent), actor="t")
    with pytest.raises(BadRequest, match="not a valid alias name"):
        await registry.set_shadow("m", "Prod", Shadow(1, 10), actor="t")
    assert (await registry.get_alias(model="m", alias="production")).shadow is None
    assert await _shadow_events(registry) == []


async def test_set_alias_moves_routes_and_shadow_in_one_change(registry: Registry) -> None:
    await model_with_ready_versions(registry, 3)
    generation = await registry.generation()
    record = await registry.set_alias(
        model="m", alias="canary", routes=[Route(1, 100)], actor="t", shadow=Shadow(3, 5)
    )
    assert record.routes == (Route(1, 100),)
    assert record.shadow == Shadow(3, 5)
    assert record.generation == generation + 1  # one change, one generation
    # The routes unchanged, the shadow removed: still a change, with its own generation.
    removed = await registry.set_alias(
        model="m", alias="canary", routes=[Route(1, 100)], actor="t", shadow=None
    )
    assert removed.shadow is None
    assert removed.generation == generation + 2
    # A refused shadow leaves the routes where they were.
    with pytest.raises(VersionNotFound):
        await registry.set_alias(
            model="m", alias="canary", routes=[Route(2, 100)], actor="t", shadow=Shadow(7, 5)
        )
    assert (await registry.get_alias(model="m", alias="canary")).routes == (Route(1, 100),)


async def test_a_shadowed_version_cannot_be_unloaded_or_archived(registry: Registry) -> None:
    await model_with_ready_versions(registry, 2)
    await registry.set_shadow("m", "production", Shadow(2, 10), actor="t")
    key = VersionKey("m", 2)
    with pytest.raises(AliasInUse, match=r"m@2 is the shadow of alias\(es\) production;.*--off"):
        await registry.unload_version(key)
    with pytest.raises(AliasInUse, match=r"shadow of alias\(es\) production; remove the shadow"):
        await registry.archive_version(key, actor="t")
    assert (await registry.get_version(key)).status == VersionStatus.READY
    await registry.set_shadow("m", "production", None, actor="t")
    assert (await registry.unload_version(key)).status == VersionStatus.UNLOADED


async def test_deleting_an_alias_drops_its_shadow(registry: Registry) -> None:
    await model_with_ready_versions(registry, 2)
    await registry.promote(model="m", alias="canary", version=1, actor="t")
    await registry.set_shadow("m", "canary", Shadow(2, 10), actor="t")
    await registry.delete_alias(model="m", alias="canary", actor="t")
    assert (await _shadow_events(registry))[-1] == ({"version": 2, "percent": 10}, None)
    assert (await registry.unload_version(VersionKey("m", 2))).status == VersionStatus.UNLOADED
    # An alias made again under the same name starts without one.
    again = await registry.promote(model="m", alias="canary", version=1, actor="t")
    assert again.shadow is None
