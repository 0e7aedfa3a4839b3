"""`GET /metrics` for Prometheus (what it holds: `maas.observability.metrics`)."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter
from starlette.responses import Response

from maas.api.deps import ServicesDep
from maas.observability.metrics import CONTENT_TYPE
from maas.observability.scraped import Scrape

router = APIRouter(tags=["health"])


@router.get(
    "/metrics",
    response_class=Response,
    summary="Prometheus metrics",
    responses={
        200: {
            "description": "Every metric family, in the Prometheus text exposition format "
            f"(Content-Type: {CONTENT_TYPE})",
            "content": {"text/plain": {"schema": {"type": "string"}}},
        }
    },
)
async def metrics(services: ServicesDep) -> Response:
    snapshot = await services.router.current()  # kept current by the control plane
    await services.backend.refresh()
    scrape = Scrape(
        models=snapshot.models,
        backend=services.backend.telemetry(),
        generation=services.plane.served,
        rollouts=snapshot.rollouts,
    )
    services.metrics.prepare(scrape)  # on the loop: this process's figures up to now
    body = await asyncio.to_thread(services.metrics.render, scrape)
    return Response(body, media_type=CONTENT_TYPE)
