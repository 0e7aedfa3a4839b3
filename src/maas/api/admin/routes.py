"""Operator REST: models, versions, aliases, history, audit events, keys, workers and gateways
(admin scope). An alias change answers once every live gateway serves it (`_propagated`)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import JSONResponse

from maas.api.admin import schemas
from maas.api.admin.upload import receive_upload
from maas.api.deps import AdminDep, ServicesDep, allow_admin, model_in_body, require_admin
from maas.api.openapi import REGISTRY_UNAVAILABLE, answers, upload_body
from maas.api.services import Services
from maas.auth import keys as auth
from maas.checks.fields import IsoTime
from maas.checks.json_depth import deeper_than, too_deep
from maas.control.meta import parse_meta
from maas.control.publishing import publish_version
from maas.errors import AliasInUse, BadRequest, MaasError
from maas.registry.records import AliasRecord, Route
from maas.types import (
    ALIAS_NAME_RE,
    MODEL_NAME_RE,
    VERSION_MAX,
    AliasAction,
    VersionKey,
    VersionStatus,
)

router = APIRouter(prefix="/admin", tags=["admin"], dependencies=[Depends(require_admin)])

Limit = Annotated[int, Query(ge=1, le=10_000)]
# Path numbers are int64, as the registry stores them: a bigger one is a 422, not a query.
VersionPath = Annotated[int, Path(ge=1, le=VERSION_MAX, description="a version number")]
KeyId = Annotated[int, Path(ge=1, le=VERSION_MAX, description="the key's id")]


# Errors more than one route can answer (401, 403 and 503 come with every admin route).
_JSON = "`bad_request`: the body is not valid JSON"
_INVALID = "`invalid_request`: a parameter or the body does not validate"
_VERSION = "`model_not_found` or `version_not_found`"
_ALIAS_NAME = "`bad_request`: the alias is not a valid name ([a-z][a-z0-9_-]{0,31}), or " + _JSON
_MOVE_CONFLICT = (
    "`version_not_ready`: an alias may only point at ready versions; `concurrent_change`: "
    "another change of the alias won"
)


def _alias_name(alias: str) -> str:
    if not ALIAS_NAME_RE.match(alias):
        raise BadRequest(f"'{alias}' is not a valid alias name ([a-z][a-z0-9_-]{{0,31}})")
    return alias


@router.post(
    "/models",
    status_code=201,
    responses=answers(
        schemas.ModelOut,
        "The new model (no versions, no aliases yet)",
        status=201,
        errors={400: _JSON, 409: "`already_exists`: a model of that name exists", 422: _INVALID},
    ),
)
@model_in_body
async def create_model(
    body: schemas.CreateModel, request: Request, services: ServicesDep, who: AdminDep
) -> dict[str, Any]:
    await allow_admin(request, services, who, model=body.name)  # a key limited to models
    record = await services.registry.create_model(
        name=body.name, description=body.description, actor=who.name
    )
    return schemas.model_json(record)


@router.get("/models", responses=answers(schemas.ModelList, "Every model"))
async def list_models(services: ServicesDep) -> dict[str, Any]:
    return {"models": [schemas.model_json(m) for m in await services.registry.list_models()]}


@router.get(
    "/models/{name}",
    responses=answers(schemas.ModelOut, "The model", errors={404: "`model_not_found`"}),
)
async def get_model(name: str, services: ServicesDep) -> dict[str, Any]:
    return schemas.model_json(await services.registry.get_model(name))


@router.post(
    "/models/{name}/versions",
    status_code=201,
    responses=answers(
        schemas.VersionOut,
        'The new version: `loading` (or `registered` when meta has `"load": false`); with '
        "`?wait=true`, once its load finished: `ready` or `failed` (see `load_error`)",
        status=201,
        errors={
            400: "`bad_request`: not multipart/form-data, no `file` or `meta` part, meta is not "
            "valid JSON, or (with `?create_model=true`) not a valid model name",
            404: "`model_not_found` (without `?create_model=true`)",
            413: "`payload_too_large`: the artifact exceeds MAAS_MAX_ARTIFACT_BYTES, or meta "
            "exceeds 1 MiB",
            422: "`invalid_artifact`: meta does not validate, or the file is not an archive of "
            "the declared format; `model_load_error`: with `?wait=true`, the trial load failed "
            "(nothing is registered); `invalid_request`: a query parameter does not validate",
            503: REGISTRY_UNAVAILABLE + "; `unavailable`: with `?wait=true`, no healthy worker to "
            "trial-load the artifact on",
        },
    ),
    openapi_extra={"requestBody": upload_body()},
)
async def upload_version(
    name: str,
    request: Request,
    services: ServicesDep,
    who: AdminDep,
    wait: Annotated[
        bool, Query(description="answer once the version is loaded (ready) or failed")
    ] = False,
    create_model: Annotated[
        bool, Query(description="create the model with this version if it does not exist")
    ] = False,
) -> JSONResponse:
    if not create_model:
        await services.registry.get_model(name)  # 404 before reading a byte of the body
    elif not MODEL_NAME_RE.match(name):
        raise BadRequest(f"'{name}' is not a valid model name ({MODEL_NAME_RE.pattern})")
    upload = await receive_upload(request, services.store, services.settings.max_artifact_bytes)
    try:
        meta = parse_meta(upload.meta, max_depth=services.settings.max_json_depth)
    except MaasError:
        await asyncio.to_thread(upload.writer.discard)
        raise
    record = await publish_version(
        registry=services.registry,
        store=services.store,
        deployer=services.deployer,
        backend=services.backend,
        model=name,
        writer=upload.writer,
        meta=meta,
        actor=who.name,
        wait=wait,
        create_model=create_model,
    )
    if wait and record.status is VersionStatus.READY:
        # A request sent after the answer finds the version (and production, when it was the
        # model's first ready version) on every gateway.
        await services.plane.propagate(await services.registry.generation())
    return JSONResponse(schemas.version_json(record), status_code=201)


@router.get(
    "/models/{name}/versions/{version}",
    responses=answers(
        schemas.VersionDetail,
        "The version, with its live figures under `stats`",
        errors={404: _VERSION, 422: _INVALID},
    ),
)
async def get_version(name: str, version: VersionPath, services: ServicesDep) -> dict[str, Any]:
    record = await services.registry.get_version(VersionKey(name, version))
    out = schemas.version_json(record)
    await services.backend.refresh()
    figures = services.backend.telemetry().versions.get(str(record.key))
    out["stats"] = {
        "loaded": services.backend.is_loaded(record.key),
        **(figures.summary() if figures is not None else {}),
    }
    return out


@router.patch(
    "/models/{name}/versions/{version}",
    responses=answers(
        schemas.VersionOut,
        "The version as changed",
        errors={400: _JSON, 404: _VERSION, 422: _INVALID},
    ),
)
async def patch_version(
    name: str,
    version: VersionPath,
    body: schemas.PatchVersion,
    services: ServicesDep,
    who: AdminDep,
) -> dict[str, Any]:
    limit = services.settings.max_json_depth
    if body.tags is not None and deeper_than(body.tags, limit - 1):  # the body is one level
        raise BadRequest(too_deep("the body", limit))
    record = await services.registry.update_version(
        VersionKey(name, version),
        actor=who.name,
        batching=body.batching.model_dump(exclude_none=True) if body.batching else None,
        description=body.description,
        tags=body.tags,
    )
    return schemas.version_json(record)


@router.post(
    "/models/{name}/versions/{version}/load",
    status_code=202,
    responses=answers(
        schemas.VersionOut,
        "The version, now `loading`: poll it until `ready` or `failed`",
        status=202,
        errors={
            404: _VERSION,
            409: "`conflict`: the version cannot be loaded in its status (e.g. archived)",
            422: _INVALID,
        },
    ),
)
async def load_version(name: str, version: VersionPath, services: ServicesDep) -> dict[str, Any]:
    return schemas.version_json(await services.deployer.start_load(VersionKey(name, version)))


@router.post(
    "/models/{name}/versions/{version}/unload",
    responses=answers(
        schemas.VersionOut,
        "The version, now `unloaded` (an archived one as it is)",
        errors={
            404: _VERSION,
            409: "`alias_in_use`: an alias points at the version; move it first",
            422: _INVALID,
        },
    ),
)
async def unload_version(name: str, version: VersionPath, services: ServicesDep) -> dict[str, Any]:
    key = VersionKey(name, version)
    record = await services.registry.get_version(key)
    snapshot = await services.router.current()
    entry = snapshot.models.get(name)
    in_use = [
        alias
        for alias, routes in (entry.aliases.items() if entry else [])
        if any(r.version == record.version for r in routes)
    ]
    if in_use:
        raise AliasInUse(f"{key} serves alias(es) {', '.join(in_use)}; move them first")
    return schemas.version_json(await services.deployer.unload(key))


@router.delete(
    "/models/{name}/versions/{version}",
    responses=answers(
        schemas.VersionOut,
        "The version, now `archived`",
        errors={
            404: _VERSION,
            409: "`alias_in_use`: an alias points at the version; move it first",
            422: _INVALID,
        },
    ),
)
async def archive_version(
    name: str, version: VersionPath, services: ServicesDep, who: AdminDep
) -> dict[str, Any]:
    key = VersionKey(name, version)
    record = await services.registry.archive_version(key, actor=who.name)
    services.deployer.wake()  # the leader takes it off the workers
    return schemas.version_json(record)


@router.put(
    "/models/{name}/aliases/{alias}",
    responses=answers(
        schemas.AliasChange,
        "The alias, once every live gateway serves it (or after MAAS_PROPAGATION_TIMEOUT_MS, "
        "with the others in `propagated.missing`)",
        errors={
            400: _ALIAS_NAME,
            404: _VERSION,
            409: _MOVE_CONFLICT + " (`expected_current` did not match)",
            422: _INVALID,
        },
    ),
)
async def set_alias(
    name: str, alias: str, body: schemas.SetAlias, services: ServicesDep, who: AdminDep
) -> dict[str, Any]:
    extra: dict[str, Any] = {}
    if "expected_current" in body.model_fields_set:
        extra["expected_current"] = body.expected_current
    record = await services.registry.set_alias(
        model=name,
        alias=_alias_name(alias),
        routes=body.target_routes(),
        actor=who.name,
        **extra,
    )
    return await _propagated(services, record)


@router.get(
    "/models/{name}/aliases/{alias}",
    responses=answers(
        schemas.AliasOut, "The alias", errors={404: "`model_not_found` or `alias_not_found`"}
    ),
)
async def get_alias(name: str, alias: str, services: ServicesDep) -> dict[str, Any]:
    return schemas.alias_json(await services.registry.get_alias(model=name, alias=alias))


@router.post(
    "/models/{name}/promote",
    responses=answers(
        schemas.AliasChange,
        "The alias, once every live gateway serves it",
        errors={400: _JSON, 404: _VERSION, 409: _MOVE_CONFLICT, 422: _INVALID},
    ),
)
async def promote(
    name: str, body: schemas.Promote, services: ServicesDep, who: AdminDep
) -> dict[str, Any]:
    record = await services.registry.set_alias(
        model=name,
        alias=body.alias,
        routes=[Route(body.version, 100)],
        actor=who.name,
        action=AliasAction.PROMOTE,
    )
    return await _propagated(services, record)


@router.post(
    "/models/{name}/rollback",
    responses=answers(
        schemas.AliasChange,
        "The alias, once every live gateway serves it",
        errors={
            400: _JSON,
            404: _VERSION + " or `alias_not_found`",
            409: "`nothing_to_undo`: no change of the alias is left to undo; " + _MOVE_CONFLICT,
            422: _INVALID,
        },
    ),
)
async def rollback(
    name: str, body: schemas.Rollback, services: ServicesDep, who: AdminDep
) -> dict[str, Any]:
    """To `to_version`, or else undo the alias's newest change not undone yet (an undo stack:
    promote 2, promote 3, rollback → 2, rollback → 1)."""
    if body.to_version is not None:
        record = await services.registry.set_alias(
            model=name,
            alias=body.alias,
            routes=[Route(body.to_version, 100)],
            actor=who.name,
            action=AliasAction.ROLLBACK,
        )
    else:
        record = await services.registry.undo_alias(model=name, alias=body.alias, actor=who.name)
    return await _propagated(services, record)


@router.delete(
    "/models/{name}/aliases/{alias}",
    responses=answers(
        schemas.AliasDeleted,
        "The alias is gone, on every live gateway that confirmed",
        errors={
            400: "`bad_request`: the alias is not a valid name ([a-z][a-z0-9_-]{0,31})",
            404: "`model_not_found` or `alias_not_found`",
            409: "`alias_in_use`: `production` while the model has ready versions (requests "
            "naming only the model would be left without a target)",
        },
    ),
)
async def delete_alias(
    name: str, alias: str, services: ServicesDep, who: AdminDep
) -> dict[str, Any]:
    generation = await services.registry.delete_alias(
        model=name, alias=_alias_name(alias), actor=who.name
    )
    answer = {"model": name, "alias": alias, "deleted": True}
    return await _once_served(services, generation, answer)


async def _propagated(services: Services, record: AliasRecord) -> dict[str, Any]:
    """The alias, once every live gateway serves the generation it committed with. A change
    that moved nothing waits for the registry's generation now: the alias may have got its
    target from a change this gateway has not heard of yet (a version that became production
    on turning ready), and an answer promises every gateway serves it."""
    generation = record.generation
    if generation is None:
        generation = await services.registry.generation()
    return await _once_served(services, generation, schemas.alias_json(record))


async def _once_served(
    services: Services, generation: int, answer: dict[str, Any]
) -> dict[str, Any]:
    """`answer` with `generation` and `propagated`, once every live gateway serves it (or the
    propagation timeout passed)."""
    propagation = await services.plane.propagate(generation)
    return {**answer, "generation": propagation.generation, "propagated": propagation.as_json()}


@router.get(
    "/models/{name}/aliases/{alias}/history",
    responses=answers(
        schemas.HistoryList,
        "The alias's changes, newest first",
        errors={404: "`model_not_found`", 422: _INVALID},
    ),
)
async def alias_history(
    name: str, alias: str, services: ServicesDep, limit: Limit = 100
) -> dict[str, Any]:
    rows = await services.registry.alias_history(model=name, alias=alias, limit=limit)
    return {"history": [schemas.history_json(h) for h in rows]}


@router.get(
    "/events",
    responses=answers(schemas.EventList, "The audit log, newest first", errors={422: _INVALID}),
)
async def events(
    services: ServicesDep,
    limit: Limit = 100,
    model: Annotated[str | None, Query(description="a model, its versions and aliases")] = None,
    action: Annotated[
        str | None, Query(description="an action (alias.promote) or its family (alias)")
    ] = None,
    key: Annotated[str | None, Query(description="the name of the key that acted")] = None,
    since: Annotated[IsoTime | None, Query(description="ISO 8601; naive means UTC")] = None,
) -> dict[str, Any]:
    rows = await services.registry.events(
        limit=limit, model=model, action=action, key=key, since=since
    )
    return {"events": [schemas.event_json(e) for e in rows]}


@router.post(
    "/keys",
    status_code=201,
    responses=answers(
        schemas.KeyCreated,
        "The new key and its secret (shown only here)",
        status=201,
        errors={400: _JSON, 422: _INVALID},
    ),
)
async def create_key(
    body: schemas.CreateKey, services: ServicesDep, who: AdminDep
) -> dict[str, Any]:
    record, secret = await auth.create_key(
        services.registry,
        name=body.name,
        scopes=[s.value for s in body.scopes],
        actor=who.name,
        models=body.models,
        expires_at=body.expires_at,
        rate_limit_per_s=body.rate_limit_per_s,
    )
    return schemas.key_json(record, secret)


@router.get("/keys", responses=answers(schemas.KeyList, "Every key, without secrets"))
async def list_keys(services: ServicesDep) -> dict[str, Any]:
    return {"keys": [schemas.key_json(k) for k in await services.registry.list_keys()]}


@router.delete(
    "/keys/{key_id}",
    responses=answers(
        schemas.KeyRevoked,
        "The key, revoked on every live gateway that confirmed",
        errors={
            404: "`key_not_found`: no active key with that id",
            409: "`last_admin_key`: it is the last admin key",
            422: _INVALID,
        },
    ),
)
async def delete_key(key_id: KeyId, services: ServicesDep, who: AdminDep) -> dict[str, Any]:
    """Revoke a key; answers once every live gateway refuses it (or after the propagation
    timeout, with the others in `missing`). 409 for the last admin key."""
    record, generation = await services.registry.revoke_key(key_id, actor=who.name)
    return await _once_served(services, generation, {**schemas.key_json(record), "revoked": True})


@router.get("/workers", responses=answers(schemas.WorkerList, "Every worker"))
async def workers(services: ServicesDep) -> dict[str, Any]:
    await services.backend.refresh()
    return {"workers": services.backend.describe()}


@router.get(
    "/gateways",
    responses=answers(schemas.GatewayList, "Every live gateway of this registry"),
)
async def gateways(services: ServicesDep) -> dict[str, Any]:
    """Every live gateway of this registry (any host), the generation each serves, and which
    ones lead placement."""
    rows = await services.plane.gateways()
    leaders = await services.plane.leaders()
    return {
        "generation": await services.registry.generation(),
        "gateways": [
            {
                "id": row.id,
                "host": row.host,
                "pid": row.pid,
                "generation": row.generation,
                "last_seen": datetime.fromtimestamp(row.last_seen, UTC).isoformat(),
                "leader": row.id in leaders,
            }
            for row in rows
        ],
    }
