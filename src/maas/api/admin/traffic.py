"""The admin route of a model's live traffic: what every gateway of the deployment answered
for each of its versions over the last minutes, per time bin (the figures /metrics exposes,
added up over every gateway on every host), read from the traffic samples the gateways write
(`maas.observability.traffic`). The console draws its charts from it."""

from __future__ import annotations

import asyncio
import math
import time
from collections import OrderedDict
from datetime import UTC, datetime
from typing import Annotated

from fastapi import Query, Request

from maas.api.admin.answers import TrafficOut, TrafficPoint, VersionTraffic
from maas.api.admin.revalidation import admin_router
from maas.api.deps import ServicesDep
from maas.api.openapi import INVALID, admin_errors
from maas.api.services import Services
from maas.errors import BadRequest
from maas.observability.traffic_series import series

router = admin_router()

# Most points a series may have (minutes * 60 / step_s).
MAX_POINTS = 900
# How long after a bin ends its last samples may still be on their way (seconds).
_SETTLE_S = 0.5
# The app's last answers, by (model, start, end, step), in its state: an answer changes only
# when a step ends, and a console polls every 2 s, so most polls are answered from there (and
# their ETag, unchanged, makes them a 304).
Answers = OrderedDict[tuple[str, float, float, float], TrafficOut]
_KEEP_ANSWERS = 64


@router.get(
    "/models/{name}/traffic",
    response_model=TrafficOut,
    response_description="Each version's requests/s, error rates, p50/p99, batch size and "
    "queue depth per bin, over every gateway",
    responses=admin_errors(
        {
            400: "`bad_request`: more than 900 points asked, or traffic samples are off "
            "(MAAS_TRAFFIC_REPORT_S=0)",
            404: "`model_not_found`",
            422: INVALID,
        }
    ),
)
async def traffic(
    name: str,
    request: Request,
    services: ServicesDep,
    minutes: Annotated[
        float, Query(gt=0, le=1440, description="how far back (at most what is kept)")
    ] = 5,
    step_s: Annotated[
        float, Query(ge=1, le=3600, description="each bin's length (a multiple of report_s)")
    ] = 5,
) -> TrafficOut:
    if name not in (await services.router.current()).models:
        await services.registry.get_model(name)  # model_not_found, or a model just made
    settings = services.settings
    report_s = settings.traffic_report_s
    if not report_s:
        raise BadRequest("traffic samples are off on this gateway (MAAS_TRAFFIC_REPORT_S=0)")
    step = math.ceil(step_s / report_s - 1e-9) * report_s
    span = min(minutes * 60, settings.traffic_keep_s)
    count = math.floor(span / step)
    if count > MAX_POINTS:
        raise BadRequest(
            f"{minutes:g} minutes in steps of {step:g} s is {count} points; "
            f"at most {MAX_POINTS}: ask for fewer minutes or a longer step"
        )
    end = math.floor((time.time() - _SETTLE_S) / step) * step
    start = end - count * step
    answered: Answers | None = getattr(request.app.state, "traffic_answers", None)
    if answered is None:
        answered = request.app.state.traffic_answers = OrderedDict()
    key = (name, start, end, step)
    answer = answered.get(key)
    if answer is None:
        answer = answered[key] = await _traffic(services, name, start, end, step)
        while len(answered) > _KEEP_ANSWERS:
            answered.popitem(last=False)
    return answer


async def _traffic(
    services: Services, name: str, start: float, end: float, step: float
) -> TrafficOut:
    samples = await services.registry.traffic(model=name, since=start - step)
    # A few milliseconds of arithmetic for minutes of samples: not on the event loop.
    by_version, gateways = await asyncio.to_thread(
        series, samples, start=start, end=end, step_s=step
    )
    return TrafficOut(
        model=name,
        since=datetime.fromtimestamp(start, UTC),
        until=datetime.fromtimestamp(end, UTC),
        step_s=step,
        report_s=services.settings.traffic_report_s,
        gateways=gateways,
        versions=[
            VersionTraffic(version=int(v), points=[TrafficPoint.from_point(p) for p in points])
            for v, points in by_version.items()
            if v.isdigit()
        ],
    )
