"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from maas.api.deps import ServicesDep

router = APIRouter(tags=["health"])


@router.get("/")
async def root() -> dict[str, str]:
    return {"status": "alive"}


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(services: ServicesDep) -> JSONResponse:
    reasons = await services.not_ready_reasons()
    degraded = services.degradations()
    if reasons:
        return JSONResponse(
            {"ready": False, "reasons": reasons, "degraded": degraded}, status_code=503
        )
    # Degraded is still ready: this gateway serves from its last routing table.
    return JSONResponse({"ready": True, "degraded": degraded} if degraded else {"ready": True})
