"""The native dialect's GET routes: model status and metadata, as KServe's v1 protocol and
TF Serving answer them (their clients poll these), plus the predict routes for /docs.

    GET /v1/models                                         {"models": [names]}
    GET /v1/models/{name}[/versions/{v}|/labels/{a}|@{ref}]
        200 {"name", "ready": true, "model_version_status": [...]}, 503 with "ready": false
    GET .../metadata                                       {"name", "versions", "inputs", "outputs"}

A bare name lists every version of the model, as TF Serving does, and is ready when its
`production` alias can serve; a version or an alias lists what it resolves to. `POST
...:predict` and `...:classify` are served by the inference pipeline before FastAPI routes
anything.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from maas.api import fastpath
from maas.api.deps import ServicesDep
from maas.api.inference_schemas import (
    Classification,
    ModelNames,
    ModelStatus,
    NativeMetadata,
    Predictions,
)
from maas.api.native.codec import ref_in_name, unknown_verb
from maas.api.openapi import inference_answers
from maas.errors import BadRequest
from maas.registry.records import VersionRecord
from maas.serving.catalog import Listing
from maas.types import ModelRef, VersionStatus, parse_version

router = APIRouter(prefix="/v1/models", tags=["native inference"])

_LOOKUP_ERRORS = {
    400: "`bad_request`: a malformed ref, or a version that is not a number from 1 to 2^63-1",
    404: "`model_not_found`, `version_not_found` or `alias_not_found`; `not_found`: a verb "
    "after ':' other than :predict and :classify",
    405: "`method_not_allowed`: a predict or classify path asked with GET (POST it)",
}
_STATUS = inference_answers(
    ModelStatus, "It can serve", errors=_LOOKUP_ERRORS, not_ready=ModelStatus
)
_METADATA = inference_answers(NativeMetadata, "Its signature", errors=_LOOKUP_ERRORS)

# TF Serving's ModelVersionStatus.State for each version status.
STATE = {
    VersionStatus.REGISTERED: "START",
    VersionStatus.LOADING: "LOADING",
    VersionStatus.READY: "AVAILABLE",
    VersionStatus.FAILED: "END",
    VersionStatus.UNLOADED: "END",
    VersionStatus.ARCHIVED: "END",
}


def _ref(name: str, *, version: str | None = None, alias: str | None = None) -> ModelRef:
    last = version or alias or name
    if last.endswith((":predict", ":classify")):  # a verb's path, asked with GET
        raise HTTPException(405, "Method Not Allowed", headers={"Allow": "POST"})
    if ":" in last:  # no model, version or alias name holds one: a verb not served
        raise unknown_verb(last.rpartition(":")[2])
    if version is not None:
        try:
            return ModelRef(model=name, version=parse_version(version))
        except ValueError as exc:
            raise BadRequest(str(exc)) from None
    if alias is not None:
        return ModelRef(model=name, alias=alias)
    ref = ref_in_name(name)
    if isinstance(ref, BadRequest):
        raise ref
    return ref


@router.get("", summary="List models", responses=inference_answers(ModelNames, "Every model"))
async def list_models(services: ServicesDep) -> dict[str, list[str]]:
    return {"models": await services.catalog.model_names()}


@router.get("/{name}", summary="Model status (name, name@version or name@alias)", responses=_STATUS)
async def model_status(services: ServicesDep, name: str) -> JSONResponse:
    ref = _ref(name)
    return _status(await services.catalog.lookup(ref), every_version=ref == ModelRef(ref.model))


@router.get("/{name}/versions/{version}", summary="Model version status", responses=_STATUS)
async def version_status(services: ServicesDep, name: str, version: str) -> JSONResponse:
    return _status(await services.catalog.lookup(_ref(name, version=version)))


@router.get("/{name}/labels/{alias}", summary="Model alias status", responses=_STATUS)
async def alias_status(services: ServicesDep, name: str, alias: str) -> JSONResponse:
    return _status(await services.catalog.lookup(_ref(name, alias=alias)))


@router.get("/{name}/metadata", summary="Model metadata", responses=_METADATA)
async def model_metadata(services: ServicesDep, name: str) -> dict[str, Any]:
    return _metadata(await services.catalog.lookup(_ref(name)))


@router.get(
    "/{name}/versions/{version}/metadata", summary="Model version metadata", responses=_METADATA
)
async def version_metadata(services: ServicesDep, name: str, version: str) -> dict[str, Any]:
    return _metadata(await services.catalog.lookup(_ref(name, version=version)))


@router.get("/{name}/labels/{alias}/metadata", summary="Model alias metadata", responses=_METADATA)
async def alias_metadata(services: ServicesDep, name: str, alias: str) -> dict[str, Any]:
    return _metadata(await services.catalog.lookup(_ref(name, alias=alias)))


def _status(listing: Listing, *, every_version: bool = False) -> JSONResponse:
    shown = listing.versions if every_version else listing.targets
    body = {
        "name": listing.model,
        "ready": listing.ready,
        "model_version_status": [_version_status(v, listing) for v in shown],
    }
    return JSONResponse(body, status_code=200 if listing.ready else 503)


def _version_status(version: VersionRecord, listing: Listing) -> dict[str, Any]:
    state = STATE[version.status]
    if state == "AVAILABLE" and listing.ready is False and version in listing.targets:
        state = "LOADING"  # ready in the registry, not yet on a worker (a restart, say)
    failed = version.status is VersionStatus.FAILED
    return {
        "version": str(version.version),  # TF Serving writes its int64 versions as strings
        "state": state,
        "status": {
            "error_code": "UNKNOWN" if failed else "OK",
            "error_message": (version.load_error or "") if failed else "",
        },
    }


def _metadata(listing: Listing) -> dict[str, Any]:
    described = listing.describing()
    return {
        "name": listing.model,
        "versions": [v.version for v in listing.named()],
        "inputs": [spec.to_json() for spec in described.inputs],
        "outputs": [spec.to_json() for spec in described.outputs],
    }


PREDICT_ANSWERS_ERRORS: dict[int, str] = {
    400: "`bad_request`: not JSON, no non-empty `instances`, a malformed ref or version, "
    "a bad X-Request-Timeout-Ms, or a Content-Encoding other than gzip or deflate",
    401: "`unauthenticated` (only with MAAS_REQUIRE_INFER_KEY=true)",
    403: "`forbidden`: the key may not run this model",
    404: "`model_not_found`, `version_not_found` or `alias_not_found`; `not_found`: no "
    "such route, or a verb after ':' other than :predict and :classify",
    413: "`payload_too_large`: the body is past MAAS_MAX_BODY_BYTES, or it holds more "
    "than MAAS_MAX_INSTANCES instances",
    422: "`invalid_input`: the instances do not match the model's signature, or there are "
    "more than the version's queue holds",
    429: "`queue_full`: the version's queue is full; Retry-After says when to try again",
    503: "`unavailable`: no ready worker holds the version (or the gateway is draining)",
    504: "`deadline_exceeded`: the deadline passed before the answer",
}
PREDICT_ANSWERS = inference_answers(
    Predictions, "The model's outputs, one per instance", errors=PREDICT_ANSWERS_ERRORS
)

_PREDICT_BODY: dict[str, Any] = {
    "required": True,
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "required": ["instances"],
                "properties": {"instances": {"type": "array", "minItems": 1, "items": {}}},
            }
        }
    },
}

for _path in (
    "/{name}:predict",
    "/{name}/versions/{version}:predict",
    "/{name}/labels/{alias}:predict",
):
    fastpath.document(router, _path, _PREDICT_BODY, "Predict", PREDICT_ANSWERS)

CLASSIFY_ANSWERS = inference_answers(
    Classification,
    "The best classes of each instance, best first",
    errors={
        **PREDICT_ANSWERS_ERRORS,
        400: PREDICT_ANSWERS_ERRORS[400] + "; `no_postprocess`: the version declares no "
        "`postprocess` in its meta (nothing is run)",
    },
)

for _path in (
    "/{name}:classify",
    "/{name}/versions/{version}:classify",
    "/{name}/labels/{alias}:classify",
):
    fastpath.document(router, _path, _PREDICT_BODY, "Classify", CLASSIFY_ANSWERS)
