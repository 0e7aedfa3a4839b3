"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from maas.api.answers import Alive, Healthy, NotReady, Ready, json_of
from maas.api.deps import ServicesDep

router = APIRouter(tags=["health"])


@router.get(
    "/",
    summary="Liveness (KServe v1)",
    response_model=Alive,
    response_description="The process is alive",
)
async def root() -> Alive:
    return Alive(status="alive")


@router.get(
    "/healthz",
    summary="Liveness",
    response_model=Healthy,
    response_description="The process is alive",
)
async def healthz() -> Healthy:
    return Healthy(status="ok")


@router.get(
    "/readyz",
    summary="Readiness",
    response_model=Ready,
    response_model_exclude_unset=True,
    response_description="Ready to serve (`degraded` lists what is wrong without stopping it, "
    "e.g. the registry being down)",
    responses={
        503: {
            "model": NotReady,
            "description": "Not ready: migrations have not run, the bootstrap key does not "
            "exist, the demo models (with --demo) are not trained and loaded, or an aliased "
            "version is not loaded; `reasons` says which",
        },
    },
)
async def readyz(services: ServicesDep) -> Ready | JSONResponse:
    reasons = await services.not_ready_reasons()
    degraded = services.degradations()
    if reasons:
        not_ready = NotReady(ready=False, reasons=reasons, degraded=degraded)
        return JSONResponse(json_of(not_ready), status_code=503)
    # Degraded is still ready: this gateway serves from its last routing table.
    return Ready(ready=True, degraded=degraded) if degraded else Ready(ready=True)
