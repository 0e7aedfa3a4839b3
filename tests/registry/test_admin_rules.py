"""Rules of the admin API that the registry owns, on SQLite and on a real PostgreSQL server:
how deeply a version's tags may nest, which names an alias may have, and what promote and
rollback do to an alias."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest

from maas.config import DEFAULT_MAX_JSON_DEPTH
from maas.errors import BadRequest, ModelNotFound, NothingToUndo, VersionNotReady
from maas.registry.records import Route
from maas.registry.service import Registry
from maas.types import VersionKey, VersionStatus
from support.model_files import new_version
from support.registry_setup import model_with_ready_versions

META = new_version()


def _nested(levels: int) -> object:
    """`levels` levels of arrays: `1` is 0, `[1]` one."""
    value: object = 1
    for _ in range(levels):
        value = [value]
    return value


def _too_deep(limit: int) -> str:
    return f"the body nests deeper than {limit} levels of arrays and objects (MAAS_MAX_JSON_DEPTH)"


async def test_tags_may_nest_as_deep_as_the_limit_counting_the_body(registry: Registry) -> None:
    (v1,) = await model_with_ready_versions(registry, 1)
    key = VersionKey("m", v1)
    # The body, tags, "a" and the arrays below: 5 levels in all with a limit of 5.
    tags = {"a": _nested(3)}
    record = await registry.update_version(key, actor="t", tags=tags, max_depth=5)
    assert record.tags == tags
    deeper = {"a": _nested(4)}
    with pytest.raises(BadRequest) as refused:
        await registry.update_version(key, actor="t", tags=deeper, max_depth=5)
    assert str(refused.value) == _too_deep(5)
    assert (await registry.get_version(key)).tags == tags  # nothing changed
    events = await registry.events(limit=10, action="version.update")
    assert len(events) == 1  # only the accepted change


async def test_tags_depth_defaults_to_the_configured_default(registry: Registry) -> None:
    (v1,) = await model_with_ready_versions(registry, 1)
    key = VersionKey("m", v1)
    fits = {"a": _nested(DEFAULT_MAX_JSON_DEPTH - 2)}
    assert (await registry.update_version(key, actor="t", tags=fits)).tags == fits
    with pytest.raises(BadRequest) as refused:
        await registry.update_version(
            key, actor="t", tags={"a": _nested(DEFAULT_MAX_JSON_DEPTH - 1)}
        )
    assert str(refused.value) == _too_deep(DEFAULT_MAX_JSON_DEPTH)


async def test_tags_too_deep_are_refused_before_the_version_is_looked_up(
    registry: Registry,
) -> None:
    # As the API answered: 400 for the body, not 404 for the model it names.
    with pytest.raises(BadRequest, match="MAAS_MAX_JSON_DEPTH"):
        await registry.update_version(
            VersionKey("nope", 1), actor="t", tags={"a": _nested(10)}, max_depth=4
        )
    with pytest.raises(ModelNotFound):
        await registry.update_version(VersionKey("nope", 1), actor="t", tags={}, max_depth=4)
    # Only tags are measured: a description or batching change has no depth to check.
    (v1,) = await model_with_ready_versions(registry, 1)
    record = await registry.update_version(
        VersionKey("m", v1), actor="t", description="d", max_depth=2
    )
    assert record.description == "d"


@pytest.mark.parametrize(
    "name", ["Bad!", "1st", "UPPER", "", "a" * 33, "has space", "a.b", "trailing\n"]
)
async def test_alias_names_outside_the_pattern_are_bad_requests(
    registry: Registry, name: str
) -> None:
    (v1,) = await model_with_ready_versions(registry, 1)
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
    (v1,) = await model_with_ready_versions(registry, 1)
    for name in ("a", "a" + "b-_9" * 7 + "cde"):
        record = await registry.set_alias(model="m", alias=name, routes=[Route(v1, 100)], actor="t")
        assert record.alias == name
        assert await registry.delete_alias(model="m", alias=name, actor="t") > 0


async def test_promote_sends_all_traffic_to_one_version(registry: Registry) -> None:
    v1, v2 = await model_with_ready_versions(registry, 2)
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
    (v1,) = await model_with_ready_versions(registry, 1)
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
    (v1,) = await model_with_ready_versions(registry, 1)  # production points at it already
    record = await registry.promote(model="m", alias="production", version=v1, actor="t")
    assert record.routes == (Route(v1, 100),)
    assert record.generation is None  # nothing to propagate
    history = await registry.alias_history(model="m", alias="production", limit=10)
    assert [h.action for h in history] == ["set"]


async def test_rollback_to_a_version_is_one_route_at_weight_100(registry: Registry) -> None:
    v1, v2, v3 = await model_with_ready_versions(registry, 3)
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
    v1, v2, v3 = await model_with_ready_versions(registry, 3)
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
    (v1,) = await model_with_ready_versions(registry, 1)
    await registry.promote(model="m", alias="canary", version=v1, actor="t")
    record = await registry.rollback(model="m", alias="canary", actor="t", to_version=v1)
    assert record.generation is None
    assert record.routes == (Route(v1, 100),)
    history = await registry.alias_history(model="m", alias="canary", limit=10)
    assert [h.action for h in history] == ["promote"]
    with pytest.raises(NothingToUndo) as refused:
        await registry.rollback(model="m", alias="canary", actor="t")
    assert "has no earlier target" in str(refused.value)  # the promote created it anew
