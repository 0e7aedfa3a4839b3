"""The admin route of the audit log: every change, and every refusal of an admin key, newest
first, narrowed by model, action, key or time."""

from __future__ import annotations

from typing import Annotated

from fastapi import Query

from maas.api.admin.answers import EventList, EventOut
from maas.api.admin.params import Limit
from maas.api.admin.revalidation import admin_router
from maas.api.deps import ServicesDep
from maas.api.openapi import INVALID, admin_errors
from maas.checks.fields import IsoTime

router = admin_router()


@router.get(
    "/events",
    response_model=EventList,
    response_model_exclude_unset=True,
    response_description="The audit log, newest first",
    responses=admin_errors({422: INVALID}),
)
async def events(
    services: ServicesDep,
    limit: Limit = 100,
    model: Annotated[str | None, Query(description="a model, its versions and aliases")] = None,
    action: Annotated[
        str | None, Query(description="an action (alias.promote) or its family (alias)")
    ] = None,
    key: Annotated[str | None, Query(description="the name of the key that acted")] = None,
    since: Annotated[IsoTime | None, Query(description="ISO 8601; naive means UTC")] = None,
) -> EventList:
    rows = await services.registry.events(
        limit=limit, model=model, action=action, key=key, since=since
    )
    return EventList(events=[EventOut.model_validate(e, from_attributes=True) for e in rows])
