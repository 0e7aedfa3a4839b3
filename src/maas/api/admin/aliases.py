"""Admin routes of aliases: point one at a version or split it over several, set or remove its
shadow, read it, promote, roll back, delete it, and read its history. A change answers once
every live gateway serves it (`maas.api.admin.propagation`)."""

from __future__ import annotations

from typing import Any

from maas.api.admin.answers import AliasChange, AliasDeleted, AliasOut, HistoryEntry, HistoryList
from maas.api.admin.params import Limit
from maas.api.admin.propagation import once_served
from maas.api.admin.requests import Promote, Rollback, SetAlias
from maas.api.admin.revalidation import admin_router
from maas.api.deps import AdminDep, ServicesDep
from maas.api.openapi import BAD_JSON, INVALID, VERSION_NOT_FOUND, admin_errors

router = admin_router()

_ALIAS_NAME = "`bad_request`: the alias is not a valid name ([a-z][a-z0-9_-]{0,31}), or " + BAD_JSON
_MOVE_CONFLICT = (
    "`version_not_ready`: an alias may only point at ready versions; `concurrent_change`: "
    "another change of the alias won"
)
_BELOW = (
    "; `below_agreement`: a derived (int8) version whose agreement with its parent is below its "
    'min_agreement would get more of the traffic (send "force": true to route to it anyway)'
)
_SERVED = "The alias, once every live gateway serves it"
_SHADOW = "; `version_not_ready` also for a `shadow` whose version is not ready"


@router.put(
    "/models/{name}/aliases/{alias}",
    response_model=AliasChange,
    response_model_exclude_unset=True,
    response_description=_SERVED + " (or after MAAS_PROPAGATION_TIMEOUT_MS, with the others in "
    "`propagated.missing`)",
    responses=admin_errors(
        {
            400: _ALIAS_NAME,
            404: VERSION_NOT_FOUND + ", or `alias_not_found` for a body with only `shadow`",
            409: _MOVE_CONFLICT + " (`expected_current` did not match)" + _BELOW + _SHADOW,
            422: INVALID,
        }
    ),
)
async def set_alias(
    name: str, alias: str, body: SetAlias, services: ServicesDep, who: AdminDep
) -> AliasChange:
    """Point the alias at `version` or split it over `routes`, and/or set its `shadow` (null
    removes it); the routes change first, then the shadow, in one transaction."""
    shadow = body.new_shadow()
    routes = body.target_routes()
    if routes is None:
        record = await services.registry.set_shadow(name, alias, shadow["shadow"], actor=who.name)
        return AliasChange.served(record, await once_served(services, record.generation))
    extra: dict[str, Any] = dict(shadow)
    if "expected_current" in body.model_fields_set:
        extra["expected_current"] = body.expected_current
    record = await services.registry.set_alias(
        model=name,
        alias=alias,
        routes=routes,
        actor=who.name,
        force=body.force,
        **extra,
    )
    return AliasChange.served(record, await once_served(services, record.generation))


@router.get(
    "/models/{name}/aliases/{alias}",
    response_model=AliasOut,
    response_model_exclude_unset=True,
    response_description="The alias",
    responses=admin_errors({404: "`model_not_found` or `alias_not_found`"}),
)
async def get_alias(name: str, alias: str, services: ServicesDep) -> AliasOut:
    return AliasOut.from_record(await services.registry.get_alias(model=name, alias=alias))


@router.post(
    "/models/{name}/promote",
    response_model=AliasChange,
    response_model_exclude_unset=True,
    response_description=_SERVED,
    responses=admin_errors(
        {400: BAD_JSON, 404: VERSION_NOT_FOUND, 409: _MOVE_CONFLICT + _BELOW, 422: INVALID}
    ),
)
async def promote(name: str, body: Promote, services: ServicesDep, who: AdminDep) -> AliasChange:
    record = await services.registry.promote(
        model=name, alias=body.alias, version=body.version, actor=who.name, force=body.force
    )
    return AliasChange.served(record, await once_served(services, record.generation))


@router.post(
    "/models/{name}/rollback",
    response_model=AliasChange,
    response_model_exclude_unset=True,
    response_description=_SERVED,
    responses=admin_errors(
        {
            400: BAD_JSON,
            404: VERSION_NOT_FOUND + " or `alias_not_found`",
            409: "`nothing_to_undo`: no change of the alias is left to undo; " + _MOVE_CONFLICT,
            422: INVALID,
        }
    ),
)
async def rollback(name: str, body: Rollback, services: ServicesDep, who: AdminDep) -> AliasChange:
    """To `to_version`, or else undo the alias's newest change not undone yet (an undo stack:
    promote 2, promote 3, rollback → 2, rollback → 1)."""
    record = await services.registry.rollback(
        model=name, alias=body.alias, actor=who.name, to_version=body.to_version
    )
    return AliasChange.served(record, await once_served(services, record.generation))


@router.delete(
    "/models/{name}/aliases/{alias}",
    response_model=AliasDeleted,
    response_model_exclude_unset=True,
    response_description="The alias is gone, on every live gateway that confirmed",
    responses=admin_errors(
        {
            400: "`bad_request`: the alias is not a valid name ([a-z][a-z0-9_-]{0,31})",
            404: "`model_not_found` or `alias_not_found`",
            409: "`alias_in_use`: `production` while the model has ready versions (requests "
            "naming only the model would be left without a target)",
        }
    ),
)
async def delete_alias(name: str, alias: str, services: ServicesDep, who: AdminDep) -> AliasDeleted:
    generation = await services.registry.delete_alias(model=name, alias=alias, actor=who.name)
    return AliasDeleted.served(name, alias, await once_served(services, generation))


@router.get(
    "/models/{name}/aliases/{alias}/history",
    response_model=HistoryList,
    response_model_exclude_unset=True,
    response_description="The alias's changes, newest first",
    responses=admin_errors({404: "`model_not_found`", 422: INVALID}),
)
async def alias_history(
    name: str, alias: str, services: ServicesDep, limit: Limit = 100
) -> HistoryList:
    rows = await services.registry.alias_history(model=name, alias=alias, limit=limit)
    return HistoryList(history=[HistoryEntry.from_record(h) for h in rows])
