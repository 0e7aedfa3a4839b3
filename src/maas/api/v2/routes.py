"""The Open Inference Protocol's GET routes: server and model health, metadata, config.

Health answers carry JSON bodies (`{"live": true}`, `{"ready": true}`): KServe's client
reads them, Triton's reads only the status. `{version}` may be a number or an alias; the
answer names the concrete versions it resolved to. Metadata shapes lead with -1, the batch
axis, as Triton reports them for models that batch. Errors take the protocol's own shape
`{"error": "<message>"}` (see `maas.api.errors`). `POST .../infer` is served by the
inference pipeline before FastAPI routes anything; it is declared here for /docs only.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from maas import __version__
from maas.api import fastpath
from maas.api.answers import V2ErrorBody
from maas.api.deps import ServicesDep
from maas.api.inference_schemas import (
    Live,
    ServerMetadata,
    ServerReady,
    V2Answer,
    V2Config,
    V2Metadata,
    V2Readiness,
)
from maas.api.openapi import inference_answers
from maas.api.v2.codec import ref_for
from maas.api.v2.datatypes import datatype_of
from maas.errors import ModelNotFound, NotFound
from maas.registry.records import VersionRecord
from maas.serving.catalog import Listing
from maas.types import ArtifactFormat, TensorSpec

router = APIRouter(prefix="/v2", tags=["open inference protocol (v2)"])

_LOOKUP_ERRORS = {
    400: "a version that is not a number from 1 to 2^63-1 (nor an alias name)",
    404: "no such model, version or alias",
}
_METADATA = inference_answers(
    V2Metadata,
    "Its signature",
    v2=True,
    errors={
        **_LOOKUP_ERRORS,
        404: "no such model, version or alias (`/v2/models/stats`, Triton's statistics of "
        "every model, is not served: the error says so unless a model is named `stats`)",
    },
)
_READY = inference_answers(
    V2Readiness, "It can serve", v2=True, errors=_LOOKUP_ERRORS, not_ready=V2Readiness
)
_CONFIG = inference_answers(V2Config, "Its configuration", v2=True, errors=_LOOKUP_ERRORS)
INFER_ANSWERS = inference_answers(
    V2Answer,
    "The outputs (JSON, or with Inference-Header-Content-Length the JSON then the binary "
    "buffers of the outputs asked for as binary_data)",
    v2=True,
    errors={
        400: "not JSON, a malformed tensor or binary part, inputs that do not match the "
        "model's signature, a malformed version, or a bad X-Request-Timeout-Ms",
        401: "no valid key (only with MAAS_REQUIRE_INFER_KEY=true)",
        403: "the key may not run this model",
        404: "no such model, version or alias, or no such route",
        413: "the body is past MAAS_MAX_BODY_BYTES, or it holds more than MAAS_MAX_INSTANCES "
        "instances",
        429: "the version's queue is full; Retry-After says when to try again",
        503: "no ready worker holds the version (or the gateway is draining)",
        504: "the deadline passed before the answer",
    },
)
INFER_ANSWERS[200]["content"] = {
    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
}

# Not "statistics": its routes answer 404 saying where the figures are (`_NO_STATISTICS`).
EXTENSIONS = ["binary_tensor_data", "classification", "model_configuration", "parameters"]
_NO_STATISTICS = (
    "the statistics extension (GET /v2/models[/NAME[/versions/V]]/stats) is not served by "
    "this release; the same figures are Prometheus metrics at GET /metrics, per model and "
    "version: maas_request_phase_seconds (per phase), maas_queue_wait_seconds, "
    "maas_inference_duration_seconds, maas_batch_size and maas_requests_total"
)
_STATS: dict[int | str, dict[str, Any]] = {
    404: {
        "model": V2ErrorBody,
        "description": "always: the statistics extension is not served; the error names the "
        "metrics at GET /metrics that hold the same figures",
    }
}
PLATFORM = {ArtifactFormat.TORCHSCRIPT: "pytorch_libtorch", ArtifactFormat.TORCH_EXPORT: "pytorch"}


@router.get("", summary="Server metadata", responses=inference_answers(ServerMetadata, "maas"))
async def server_metadata() -> dict[str, Any]:
    return {"name": "maas", "version": __version__, "extensions": EXTENSIONS}


@router.get("/health/live", summary="Server liveness", responses=inference_answers(Live, "Alive"))
async def live() -> dict[str, bool]:
    return {"live": True}


@router.get(
    "/health/ready",
    summary="Server readiness",
    responses=inference_answers(ServerReady, "Ready", not_ready=ServerReady),
)
async def ready(services: ServicesDep) -> JSONResponse:
    reasons = await services.not_ready_reasons()
    if reasons:
        return JSONResponse({"ready": False, "reasons": reasons}, status_code=503)
    return JSONResponse({"ready": True})


@router.get("/models/{name}", summary="Model metadata", responses=_METADATA)
async def model_metadata(services: ServicesDep, name: str) -> dict[str, Any]:
    try:
        return _metadata(await services.catalog.lookup(ref_for(name)))
    except ModelNotFound:
        if name == "stats":  # Triton's statistics of every model, unless a model is so named
            raise NotFound(_NO_STATISTICS) from None
        raise


@router.get(
    "/models/{name}/stats",
    summary="Model statistics (not served: see /metrics)",
    status_code=404,
    responses=_STATS,
)
async def model_statistics(name: str) -> None:
    raise NotFound(_NO_STATISTICS)


@router.get(
    "/models/{name}/versions/{version}/stats",
    summary="Model version statistics (not served: see /metrics)",
    status_code=404,
    responses=_STATS,
)
async def version_statistics(name: str, version: str) -> None:
    raise NotFound(_NO_STATISTICS)


@router.get(
    "/models/{name}/versions/{version}", summary="Model version metadata", responses=_METADATA
)
async def version_metadata(services: ServicesDep, name: str, version: str) -> dict[str, Any]:
    return _metadata(await services.catalog.lookup(ref_for(name, version)))


@router.get("/models/{name}/ready", summary="Model readiness", responses=_READY)
async def model_ready(services: ServicesDep, name: str) -> JSONResponse:
    return _readiness(await services.catalog.lookup(ref_for(name)))


@router.get(
    "/models/{name}/versions/{version}/ready",
    summary="Model version readiness",
    responses=_READY,
)
async def version_ready(services: ServicesDep, name: str, version: str) -> JSONResponse:
    return _readiness(await services.catalog.lookup(ref_for(name, version)))


@router.get("/models/{name}/config", summary="Model configuration (Triton)", responses=_CONFIG)
async def model_config(services: ServicesDep, name: str) -> dict[str, Any]:
    return _config(await services.catalog.lookup(ref_for(name)))


@router.get(
    "/models/{name}/versions/{version}/config",
    summary="Model version configuration",
    responses=_CONFIG,
)
async def version_config(services: ServicesDep, name: str, version: str) -> dict[str, Any]:
    return _config(await services.catalog.lookup(ref_for(name, version)))


def _shown(listing: Listing) -> list[str]:
    return [str(v.version) for v in listing.named()]


def _metadata(listing: Listing) -> dict[str, Any]:
    version = listing.describing()
    return {
        "name": listing.model,
        "versions": _shown(listing),
        "platform": PLATFORM[version.format],
        "inputs": [_tensor(spec) for spec in version.inputs],
        "outputs": [_tensor(spec) for spec in version.outputs],
    }


def _tensor(spec: TensorSpec) -> dict[str, Any]:
    return {"name": spec.name, "datatype": datatype_of(spec.dtype), "shape": [-1, *spec.shape]}


def _readiness(listing: Listing) -> JSONResponse:
    body = {"name": listing.model, "ready": listing.ready, "versions": _shown(listing)}
    return JSONResponse(body, status_code=200 if listing.ready else 503)


def _config(listing: Listing) -> dict[str, Any]:
    """The parts of a Triton model configuration that mean something for a maas version."""
    version: VersionRecord = listing.describing()
    batching = version.batch
    return {
        "name": listing.model,
        "versions": _shown(listing),
        "platform": PLATFORM[version.format],
        "backend": "pytorch",
        "max_batch_size": batching.max_batch_size,
        "input": [_config_tensor(spec) for spec in version.inputs],
        "output": [_config_tensor(spec) for spec in version.outputs],
        "dynamic_batching": {"max_queue_delay_microseconds": round(batching.max_delay_ms * 1000)},
    }


def _config_tensor(spec: TensorSpec) -> dict[str, Any]:
    return {
        "name": spec.name,
        "data_type": f"TYPE_{datatype_of(spec.dtype)}",
        "dims": list(spec.shape),
    }


_INFER_BODY: dict[str, Any] = {
    "required": True,
    "description": (
        "JSON tensors, or with Inference-Header-Content-Length: N, N bytes of JSON "
        "followed by the binary buffers of the inputs that set binary_data_size."
    ),
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "required": ["inputs"],
                "properties": {
                    "id": {"type": "string"},
                    "parameters": {"type": "object"},
                    "inputs": {"type": "array", "minItems": 1, "items": {"type": "object"}},
                    "outputs": {"type": "array", "items": {"type": "object"}},
                },
            }
        },
        "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
    },
}

for _path in ("/models/{name}/infer", "/models/{name}/versions/{version}/infer"):
    fastpath.document(router, _path, _INFER_BODY, "Infer", INFER_ANSWERS)
