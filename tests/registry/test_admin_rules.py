"""Rules of the admin API that the registry owns, on SQLite and on a real PostgreSQL server:
which names an alias may have, and what promote and rollback do to an alias."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest

from maas.errors import BadRequest, ModelNotFound, NothingToUndo, VersionNotReady
from maas.registry.records import Route
from maas.registry.service import Registry
from maas.types import VersionStatus
from support.model_files import new_version

META = new_version()


async def _model_with_ready_versions(registry: Registry, count: int) -> list[int]:
    await registry.create_model(name="m", description="", actor="t")
    versions = []
    for _ in range(count):
        record = await registry.add_version(
            model="m",
            sha256="a" * 64,
            size=1,
            meta=META,
            status=VersionStatus.REGISTERED,
            actor="t",
        )
        await registry.set_status(record.key, VersionStatus.READY)
        versions.append(record.version)
    return versions


@pytest.mark.parametrize("name", ["Bad!", "1st", "UPPER", "", "a" * 33, "has space", "a.b"])
async def test_alias_names_outside_the_pattern_are_bad_requests(
    registry: Registry, name: str
) -> None:
    (v1,) = await _model_with_ready_versions(registry, 1)
    message = f"'{name}' is not a valid alias name ([a-z][a-z0-9_-]{{0,31}})"
    changes: list[Callable[[], Awaitable[object]]] = [
        lambda: registry.set_alias(model="m", alias=name, routes=[Route(v1, 100)], actor="t"),
        lambda: registry.promote(model="m", alias=name, version=v1, actor="t"),
        lambda: registry.rollback(model="m", alias=name, actor="t", to_version=v1),
        lambda: registry.rollback(model="m", alias=name, actor="t"),
        lambda: registry.delete_alias(model="m", alias=name, actor="t"),
    ]
    for change in changes:
        with pytest.raises(BadRequest) as refused:
            await change()
        assert str(refused.value) == message
    history = await registry.events(limit=100, action="alias")
    assert [e.target for e in history] == ["m/production"]  # the first ready version's only


async def test_a_bad_alias_name_is_refused_before_the_model_is_looked_up(
    registry: Registry,
) -> None:
    with pytest.raises(BadRequest, match="not a valid alias name"):
        await registry.set_alias(model="nope", alias="Bad!", routes=[Route(1, 100)], actor="t")
    with pytest.raises(BadRequest, match="not a valid alias name"):
        await registry.delete_alias(model="nope", alias="Bad!", actor="t")
    with pytest.raises(ModelNotFound):
        await registry.delete_alias(model="nope", alias="fine", actor="t")


async def test_the_longest_and_shortest_alias_names_are_accepted(registry: Registry) -> None:
    (v1,) = await _model_with_ready_versions(registry, 1)
    for name in ("a", "a" + "b-_9" * 7 + "cde"):
        record = await registry.set_alias(model="m", alias=name, routes=[Route(v1, 100)], actor="t")
        assert record.alias == name
        assert await registry.delete_alias(model="m", alias=name, actor="t") > 0


async def test_promote_sends_all_traffic_to_one_version(registry: Registry) -> None:
    v1, v2 = await _model_with_ready_versions(registry, 2)
    await registry.set_alias(
        model="m", alias="production", routes=[Route(v1, 90), Route(v2, 10)], actor="t"
    )
    record = await registry.promote(model="m", alias="production", version=v2, actor="ops")
    assert record.routes == (Route(v2, 100),)
    assert record.generation is not None
    history = await registry.alias_history(model="m", alias="production", limit=1)
    assert history[0].action == "promote"
    assert history[0].key == "ops"
    assert history[0].from_routes == (Route(v1, 90), Route(v2, 10))
    # A new alias is created by a promote too.
    canary = await registry.promote(model="m", alias="canary", version=v1, actor="ops")
    assert canary.routes == (Route(v1, 100),)


async def test_promote_only_to_a_ready_version(registry: Registry) -> None:
    (v1,) = await _model_with_ready_versions(registry, 1)
    pending = await registry.add_version(
        model="m", sha256="b" * 64, size=1, meta=META, status=VersionStatus.REGISTERED, actor="t"
    )
    with pytest.raises(VersionNotReady) as refused:
        await registry.promote(model="m", alias="production", version=pending.version, actor="t")
    assert str(refused.value) == (
        f"m@{pending.version} is registered; an alias may only point at ready versions"
    )
    assert (await registry.get_alias(model="m", alias="production")).routes == (Route(v1, 100),)


async def test_promoting_the_current_target_moves_nothing(registry: Registry) -> None:
    (v1,) = await _model_with_ready_versions(registry, 1)  # production points at it already
    record = await registry.promote(model="m", alias="production", version=v1, actor="t")
    assert record.routes == (Route(v1, 100),)
    assert record.generation is None  # nothing to propagate
    history = await registry.alias_history(model="m", alias="production", limit=10)
    assert [h.action for h in history] == ["set"]


async def test_rollback_to_a_version_is_one_route_at_weight_100(registry: Registry) -> None:
    v1, v2, v3 = await _model_with_ready_versions(registry, 3)
    await registry.set_alias(
        model="m", alias="production", routes=[Route(v2, 50), Route(v3, 50)], actor="t"
    )
    record = await registry.rollback(model="m", alias="production", actor="ops", to_version=v1)
    assert record.routes == (Route(v1, 100),)
    history = await registry.alias_history(model="m", alias="production", limit=1)
    assert history[0].action == "rollback"
    assert history[0].undoes is None  # an explicit target undoes nothing
    assert history[0].to_routes == (Route(v1, 100),)


async def test_rollback_without_a_target_walks_back_through_the_history(
    registry: Registry,
) -> None:
    v1, v2, v3 = await _model_with_ready_versions(registry, 3)
    await registry.promote(model="m", alias="production", version=v2, actor="t")
    await registry.promote(model="m", alias="production", version=v3, actor="t")
    routes = []
    for _ in range(2):
        record = await registry.rollback(model="m", alias="production", actor="ops")
        routes.append(record.routes)
    assert routes == [(Route(v2, 100),), (Route(v1, 100),)]
    with pytest.raises(NothingToUndo) as refused:
        await registry.rollback(model="m", alias="production", actor="ops")
    assert str(refused.value) == (
        "alias 'production' of 'm' has no earlier target (its history: "
        "GET /admin/models/m/aliases/production/history)"
    )
    history = await registry.alias_history(model="m", alias="production", limit=10)
    assert [h.action for h in history] == ["rollback", "rollback", "promote", "promote", "set"]
    assert history[0].undoes == history[3].id
    assert history[1].undoes == history[2].id


async def test_a_rollback_to_where_the_alias_is_moves_nothing_and_adds_nothing_to_undo(
    registry: Registry,
) -> None:
    (v1,) = await _model_with_ready_versions(registry, 1)
    await registry.promote(model="m", alias="canary", version=v1, actor="t")
    record = await registry.rollback(model="m", alias="canary", actor="t", to_version=v1)
    assert record.generation is None
    assert record.routes == (Route(v1, 100),)
    history = await registry.alias_history(model="m", alias="canary", limit=10)
    assert [h.action for h in history] == ["promote"]
    with pytest.raises(NothingToUndo) as refused:
        await registry.rollback(model="m", alias="canary", actor="t")
    assert "has no earlier target" in str(refused.value)  # the promote created it anew
