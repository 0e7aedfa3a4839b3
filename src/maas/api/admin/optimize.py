"""Admin route that derives an int8 version from an ONNX version, measured against its parent
(`maas.control.optimizing` does the work, in a child process)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Query

from maas.api.admin.params import VersionPath
from maas.api.admin.requests import Optimize
from maas.api.admin.revalidation import admin_router
from maas.api.admin.version_answers import VersionOut
from maas.api.deps import AdminDep, ServicesDep
from maas.api.openapi import BAD_JSON, INVALID, VERSION_NOT_FOUND, admin_errors
from maas.control.optimizing import Holdout, optimize_version
from maas.types import VersionKey

router = admin_router()


@router.post(
    "/models/{name}/versions/{version}/optimize",
    status_code=201,
    response_model=VersionOut,
    response_model_exclude_unset=True,
    response_description="The new derived version, `loading` (with `?wait=true`, once `ready` or "
    "`failed`): `derived_from` names the parent, `metrics` holds what was measured against it "
    "(agreement, max_abs_diff, latency_ms_b1, latency_ms_b32, size_bytes, parent_size_bytes, "
    "parent_latency_ms_b1, parent_latency_ms_b32, holdout_count, golden_count; accuracy and "
    "parent_accuracy with labels)",
    responses=admin_errors(
        {
            400: BAD_JSON,
            404: VERSION_NOT_FOUND,
            413: "`payload_too_large`: the int8 file exceeds MAAS_MAX_ARTIFACT_BYTES",
            422: "`invalid_artifact`: the version is not ONNX, or ONNX Runtime cannot quantise "
            "it (the message says why); `invalid_input`: the holdout does not fit the version's "
            "inputs, its labels are not one class per instance, or there is nothing to measure "
            "on (no golden examples, no holdout); " + INVALID,
            504: "`deadline_exceeded`: the quantisation did not finish in time",
        }
    ),
)
async def optimize(
    name: str,
    version: VersionPath,
    body: Optimize,
    services: ServicesDep,
    who: AdminDep,
    wait: Annotated[
        bool, Query(description="answer once the new version is loaded (ready) or failed")
    ] = False,
) -> VersionOut:
    """Quantise the ONNX version to int8 (ONNX Runtime's dynamic quantisation) in a child
    process, measure it against its parent on the parent's golden examples and the holdout,
    and register it as a new version of the model; its load starts as an upload's does."""
    holdout = (
        None
        if body.holdout is None
        else Holdout(instances=body.holdout.instances, labels=body.holdout.labels)
    )
    record = await optimize_version(
        registry=services.registry,
        store=services.store,
        deployer=services.deployer,
        plane=services.plane,
        key=VersionKey(name, version),
        actor=who.name,
        threads=services.settings.effective_torch_threads,
        max_bytes=services.settings.max_artifact_bytes,
        method=body.method,
        min_agreement=body.min_agreement,
        holdout=holdout,
        wait=wait,
    )
    return VersionOut.from_record(record)
