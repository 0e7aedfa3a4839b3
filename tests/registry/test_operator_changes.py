"""Rollback as an undo stack, alias deletion, key revocation and the audit log's filters, on
SQLite and on a real PostgreSQL server."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from maas.auth.keys import create_key
from maas.errors import AliasInUse, AliasNotFound, KeyNotFound, LastAdminKey, NothingToUndo
from maas.registry.records import Route
from maas.registry.service import Registry
from maas.types import AliasAction, VersionKey, VersionStatus
from support.registry_setup import model_with_ready_versions


async def _promote(registry: Registry, version: int, alias: str = "production") -> None:
    await registry.promote(model="m", alias=alias, version=version, actor="t")


async def _undo(registry: Registry, alias: str = "production") -> list[int]:
    record = await registry.rollback(model="m", alias=alias, actor="oncall")
    return [r.version for r in record.routes]


async def test_successive_rollbacks_walk_back_instead_of_toggling(registry: Registry) -> None:
    await model_with_ready_versions(registry, 3)
    await _promote(registry, 1)  # it is there already: version 1 was the first ready one
    await _promote(registry, 2)
    await _promote(registry, 3)
    assert await _undo(registry) == [2]
    assert await _undo(registry) == [1]  # not back to 3: that change is undone already
    with pytest.raises(NothingToUndo, match="no earlier target"):
        await _undo(registry)  # the first change created the alias
    history = await registry.alias_history(model="m", alias="production", limit=10)
    assert [h.action for h in history] == ["rollback", "rollback", "promote", "promote", "set"]
    # Each rollback names the change it undid: the newest promote first, then the one before.
    assert history[0].undoes == history[3].id
    assert history[1].undoes == history[2].id


async def test_a_new_change_goes_on_top_of_the_undo_stack(registry: Registry) -> None:
    await model_with_ready_versions(registry, 4)
    for version in (1, 2, 3):
        await _promote(registry, version)
    assert await _undo(registry) == [2]
    await _promote(registry, 4)
    assert await _undo(registry) == [2]  # undoes promote 4
    assert await _undo(registry) == [1]  # then promote 2 (promote 3 was undone before)
    # An explicit target is a change like any other: it can be undone too.
    await registry.set_alias(
        model="m",
        alias="production",
        routes=[Route(3, 100)],
        actor="t",
        action=AliasAction.ROLLBACK,
    )
    assert await _undo(registry) == [1]


async def test_rollback_of_a_split_returns_the_whole_split(registry: Registry) -> None:
    await model_with_ready_versions(registry, 2)
    await _promote(registry, 1)
    await registry.set_alias(
        model="m", alias="production", routes=[Route(1, 90), Route(2, 10)], actor="t"
    )
    await _promote(registry, 2)
    record = await registry.undo_alias(model="m", alias="production", actor="t")
    assert record.routes == (Route(1, 90), Route(2, 10))
    assert await _undo(registry) == [1]


async def test_deleting_an_alias_ends_its_undo_stack(registry: Registry) -> None:
    await model_with_ready_versions(registry, 2)
    await _promote(registry, 1)
    await _promote(registry, 1, alias="canary")
    await _promote(registry, 2, alias="canary")
    generation = await registry.generation()
    assert await registry.delete_alias(model="m", alias="canary", actor="t") > generation
    with pytest.raises(AliasNotFound):
        await registry.get_alias(model="m", alias="canary")
    await _promote(registry, 2, alias="canary")  # a new alias of the same name
    with pytest.raises(NothingToUndo):
        await _undo(registry, "canary")  # nothing from before the deletion comes back
    history = await registry.alias_history(model="m", alias="canary", limit=10)
    assert [h.action for h in history] == ["promote", "delete", "promote", "promote"]


async def test_production_cannot_be_deleted_while_it_has_versions_to_serve(
    registry: Registry,
) -> None:
    (v1,) = await model_with_ready_versions(registry, 1)
    await _promote(registry, v1)
    with pytest.raises(AliasInUse, match="requests naming only 'm'"):
        await registry.delete_alias(model="m", alias="production", actor="t")
    await registry.set_status(VersionKey("m", v1), VersionStatus.UNLOADED)
    await registry.delete_alias(model="m", alias="production", actor="t")
    with pytest.raises(AliasNotFound):
        await registry.delete_alias(model="m", alias="production", actor="t")


async def test_the_last_admin_key_cannot_be_revoked(registry: Registry) -> None:
    first, _ = await create_key(registry, name="first", scopes=["admin"], actor="t")
    infer, _ = await create_key(registry, name="reader", scopes=["infer"], actor="t")
    with pytest.raises(LastAdminKey):
        await registry.revoke_key(first.id, actor="t")
    await registry.revoke_key(infer.id, actor="t")  # infer keys are not guarded
    second, _ = await create_key(registry, name="second", scopes=["admin", "infer"], actor="t")
    revoked, _ = await registry.revoke_key(first.id, actor="t")
    assert revoked.revoked_at is not None
    with pytest.raises(KeyNotFound):
        await registry.revoke_key(first.id, actor="t")
    with pytest.raises(LastAdminKey):
        await registry.revoke_key(second.id, actor="t")
    listed = {k.name: k for k in await registry.list_keys()}
    assert set(listed) == {"first", "reader", "second"}
    assert listed["second"].revoked_at is None
    assert listed["reader"].revoked_at is not None


async def test_events_filter_by_model_action_key_and_time(registry: Registry) -> None:
    await model_with_ready_versions(registry, 2)
    await registry.create_model(name="other", description="", actor="t")
    await registry.create_model(name="m2", description="", actor="t")  # 'm' must not match it
    await _promote(registry, 2)
    await registry.set_alias(model="m", alias="canary", routes=[Route(2, 100)], actor="ops")

    async def targets(**filters: object) -> list[str]:
        return [f"{e.action} {e.target}" for e in await registry.events(limit=100, **filters)]

    assert await targets(model="m") == [
        "alias.set m/canary",
        "alias.promote m/production",
        "version.create m@2",
        "alias.set m/production",  # version 1, the first ready one (by the system)
        "version.create m@1",
        "model.create m",
    ]
    assert await targets(action="alias") == [
        "alias.set m/canary",
        "alias.promote m/production",
        "alias.set m/production",
    ]
    assert await targets(action="alias.promote") == ["alias.promote m/production"]
    assert await targets(key="ops") == ["alias.set m/canary"]
    assert await targets(key="system") == ["alias.set m/production"]
    assert await targets(model="m", action="model.create") == ["model.create m"]
    assert await targets(since=datetime.now(UTC) + timedelta(minutes=1)) == []
    naive_past = datetime.now(UTC).replace(tzinfo=None) - timedelta(minutes=1)
    assert len(await targets(since=naive_past)) == 8
    assert await targets(model="m_%") == []  # LIKE wildcards are matched literally
