"""The operator REST API under /admin (admin scope): `router` gathers the routes of models and
versions, int8 versions (optimize), aliases, rollouts, live traffic, the audit log, keys and
the cluster, each behind the admin key check.

Each of those routers carries the /admin prefix itself: a route's own path is the template
the audit log records for a refused key (`maas.api.deps.allow_admin`), and a prefix given
here would not be part of it."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from maas.api.admin import (
    aliases,
    cluster,
    events,
    keys,
    models,
    optimize,
    rollouts,
    traffic,
)
from maas.api.deps import require_admin

router = APIRouter(tags=["admin"], dependencies=[Depends(require_admin)])
for _resource in (models, optimize, aliases, rollouts, traffic, events, keys, cluster):
    router.include_router(_resource.router)
