"""Admin routes of models and their versions: create and list models, upload a version (the
multipart body streams through `maas.api.admin.upload`), read it with its live figures,
change it, load, unload and archive it."""

from __future__ import annotations

from typing import Annotated

from fastapi import Query, Request

from maas.api.admin.answers import ModelList, ModelOut, VersionDetail, VersionOut
from maas.api.admin.params import VersionPath
from maas.api.admin.requests import CreateModel, PatchVersion
from maas.api.admin.revalidation import admin_router
from maas.api.admin.upload import receive_upload
from maas.api.deps import AdminDep, ServicesDep, allow_admin, model_in_body
from maas.api.openapi import (
    BAD_JSON,
    INVALID,
    REGISTRY_UNAVAILABLE,
    VERSION_NOT_FOUND,
    admin_errors,
    upload_body,
)
from maas.control.publishing import check_target, publish_version
from maas.types import VersionKey

router = admin_router()

_IN_USE = "`alias_in_use`: an alias points at the version; move it first"


@router.post(
    "/models",
    status_code=201,
    response_model=ModelOut,
    response_model_exclude_unset=True,
    response_description="The new model (no versions, no aliases yet)",
    responses=admin_errors(
        {400: BAD_JSON, 409: "`already_exists`: a model of that name exists", 422: INVALID}
    ),
)
@model_in_body
async def create_model(
    body: CreateModel, request: Request, services: ServicesDep, who: AdminDep
) -> ModelOut:
    await allow_admin(request, services, who, model=body.name)  # a key limited to models
    record = await services.registry.create_model(
        name=body.name, description=body.description, actor=who.name
    )
    return ModelOut.from_record(record)


@router.get(
    "/models",
    response_model=ModelList,
    response_model_exclude_unset=True,
    response_description="Every model (a key limited to models: those)",
    responses=admin_errors(),
)
@model_in_body
async def list_models(services: ServicesDep, who: AdminDep) -> ModelList:
    """Every model; for a key limited to some models, those only."""
    records = await services.registry.list_models()
    if who.models is not None:
        records = [m for m in records if m.name in who.models]
    return ModelList(models=[ModelOut.from_record(m) for m in records])


@router.get(
    "/models/{name}",
    response_model=ModelOut,
    response_model_exclude_unset=True,
    response_description="The model",
    responses=admin_errors({404: "`model_not_found`"}),
)
async def get_model(name: str, services: ServicesDep) -> ModelOut:
    return ModelOut.from_record(await services.registry.get_model(name))


@router.post(
    "/models/{name}/versions",
    status_code=201,
    response_model=VersionOut,
    response_model_exclude_unset=True,
    response_description='The new version: `loading` (or `registered` when meta has `"load": '
    "false`); with `?wait=true`, once its load finished: `ready` or `failed` (see "
    "`load_error`)",
    responses=admin_errors(
        {
            400: "`bad_request`: not multipart/form-data, no `file` or `meta` part, meta is not "
            "valid JSON, a `labels` part that is not UTF-8 text or comes without "
            "meta.postprocess, or (with `?create_model=true`) not a valid model name",
            404: "`model_not_found` (without `?create_model=true`)",
            413: "`payload_too_large`: the artifact exceeds MAAS_MAX_ARTIFACT_BYTES, or meta "
            "or labels exceed 1 MiB",
            422: "`invalid_artifact`: meta does not validate, or the file is not an archive of "
            "the declared format; `model_load_error`: with `?wait=true`, the trial load failed "
            "(nothing is registered); `invalid_request`: a query parameter does not validate",
            503: REGISTRY_UNAVAILABLE + "; `unavailable`: with `?wait=true`, no healthy worker to "
            "trial-load the artifact on",
        }
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
) -> VersionOut:
    await check_target(services.registry, name, create_model=create_model)  # before the body
    upload = await receive_upload(request, services.store, services.settings.max_artifact_bytes)
    record = await publish_version(
        registry=services.registry,
        store=services.store,
        deployer=services.deployer,
        backend=services.backend,
        plane=services.plane,
        model=name,
        writer=upload.writer,
        meta=upload.meta,
        labels=upload.labels,
        actor=who.name,
        max_depth=services.settings.max_json_depth,
        wait=wait,
        create_model=create_model,
    )
    return VersionOut.from_record(record)


@router.get(
    "/models/{name}/versions/{version}",
    response_model=VersionDetail,
    response_model_exclude_unset=True,
    response_description="The version, with its live figures under `stats`",
    responses=admin_errors({404: VERSION_NOT_FOUND, 422: INVALID}),
)
async def get_version(name: str, version: VersionPath, services: ServicesDep) -> VersionDetail:
    record = await services.registry.get_version(VersionKey(name, version))
    await services.backend.refresh()
    figures = services.backend.telemetry().versions.get(str(record.key))
    return VersionDetail.with_stats(
        record,
        loaded=services.backend.is_loaded(record.key),
        figures=figures.summary() if figures is not None else {},
    )


@router.patch(
    "/models/{name}/versions/{version}",
    response_model=VersionOut,
    response_model_exclude_unset=True,
    response_description="The version as changed",
    responses=admin_errors({400: BAD_JSON, 404: VERSION_NOT_FOUND, 422: INVALID}),
)
async def patch_version(
    name: str,
    version: VersionPath,
    body: PatchVersion,
    services: ServicesDep,
    who: AdminDep,
) -> VersionOut:
    record = await services.registry.update_version(
        VersionKey(name, version),
        actor=who.name,
        batching=body.batching.model_dump(exclude_none=True) if body.batching else None,
        description=body.description,
        tags=body.tags,
        max_depth=services.settings.max_json_depth,
    )
    return VersionOut.from_record(record)


@router.post(
    "/models/{name}/versions/{version}/load",
    status_code=202,
    response_model=VersionOut,
    response_model_exclude_unset=True,
    response_description="The version, now `loading`: poll it until `ready` or `failed`",
    responses=admin_errors(
        {
            404: VERSION_NOT_FOUND,
            409: "`conflict`: the version cannot be loaded in its status (e.g. archived)",
            422: INVALID,
        }
    ),
)
async def load_version(name: str, version: VersionPath, services: ServicesDep) -> VersionOut:
    return VersionOut.from_record(await services.deployer.start_load(VersionKey(name, version)))


@router.post(
    "/models/{name}/versions/{version}/unload",
    response_model=VersionOut,
    response_model_exclude_unset=True,
    response_description="The version, now `unloaded` (an archived one as it is)",
    responses=admin_errors({404: VERSION_NOT_FOUND, 409: _IN_USE, 422: INVALID}),
)
async def unload_version(name: str, version: VersionPath, services: ServicesDep) -> VersionOut:
    record = await services.registry.unload_version(VersionKey(name, version))
    services.deployer.wake()  # the leader takes it off the workers
    return VersionOut.from_record(record)


@router.delete(
    "/models/{name}/versions/{version}",
    response_model=VersionOut,
    response_model_exclude_unset=True,
    response_description="The version, now `archived`",
    responses=admin_errors({404: VERSION_NOT_FOUND, 409: _IN_USE, 422: INVALID}),
)
async def archive_version(
    name: str, version: VersionPath, services: ServicesDep, who: AdminDep
) -> VersionOut:
    key = VersionKey(name, version)
    record = await services.registry.archive_version(key, actor=who.name)
    services.deployer.wake()  # the leader takes it off the workers
    return VersionOut.from_record(record)
