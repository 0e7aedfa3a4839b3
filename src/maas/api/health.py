"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from maas.api.admin import schemas
from maas.api.deps import ServicesDep

router = APIRouter(tags=["health"])


@router.get(
    "/",
    summary="Liveness (KServe v1)",
    responses={200: {"model": schemas.Alive, "description": "The process is alive"}},
)
async def root() -> dict[str, str]:
    return {"status": "alive"}


@router.get(
    "/healthz",
    summary="Liveness",
    responses={200: {"model": schemas.Healthy, "description": "The process is alive"}},
)
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    summary="Readiness",
    responses={
        200: {
            "model": schemas.Ready,
            "description": "Ready to serve (`degraded` lists what is wrong without stopping it, "
            "e.g. the registry being down)",
        },
        503: {
            "model": schemas.NotReady,
            "description": "Not ready: migrations have not run, the bootstrap key does not "
            "exist, the demo models (with --demo) are not trained and loaded, or an aliased "
            "version is not loaded; `reasons` says which",
        },
    },
)
async def readyz(services: ServicesDep) -> JSONResponse:
    reasons = await services.not_ready_reasons()
    degraded = services.degradations()
    if reasons:
        return JSONResponse(
            {"ready": False, "reasons": reasons, "degraded": degraded}, status_code=503
        )
    # Degraded is still ready: this gateway serves from its last routing table.
    return JSONResponse({"ready": True, "degraded": degraded} if degraded else {"ready": True})
