"""Admin routes of the cluster: the workers (their processes, devices, health and the versions
they hold) and the live gateways of this registry."""

from __future__ import annotations

from maas.api.admin.answers import GatewayList, GatewayOut, WorkerList
from maas.api.admin.revalidation import admin_router
from maas.api.deps import ServicesDep
from maas.api.openapi import admin_errors
from maas.control.rollouts import LEASE as ROLLOUT_LEASE

router = admin_router()


@router.get(
    "/workers",
    response_model=WorkerList,
    response_model_exclude_unset=True,
    response_description="Every worker",
    responses=admin_errors(),
)
async def workers(services: ServicesDep) -> WorkerList:
    await services.backend.refresh()
    return WorkerList.model_validate({"workers": services.backend.describe()})


@router.get(
    "/gateways",
    response_model=GatewayList,
    response_model_exclude_unset=True,
    response_description="Every live gateway of this registry",
    responses=admin_errors(),
)
async def gateways(services: ServicesDep) -> GatewayList:
    """Every live gateway of this registry (any host), the generation each serves, and which
    ones lead placement and drive the rollouts."""
    rows = await services.plane.gateways()
    leaders = await services.plane.leaders()
    drivers = await services.plane.leaders(ROLLOUT_LEASE)
    return GatewayList(
        generation=await services.registry.generation(),
        gateways=[
            GatewayOut.from_record(row, leader=row.id in leaders, rollouts=row.id in drivers)
            for row in rows
        ],
    )
