"""Every route dependency, as an `Annotated` alias."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Request

from maas.auth import Principal
from maas.services import Services
from maas.types import Scope


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


async def require_admin(
    request: Request,
    services: ServicesDep,
    authorization: Annotated[str | None, Header()] = None,
) -> Principal:
    principal = await services.auth.require(authorization, Scope.ADMIN)
    request.state.principal = principal
    return principal


AdminDep = Annotated[Principal, Depends(require_admin)]
