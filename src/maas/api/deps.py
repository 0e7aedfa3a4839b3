"""Every route dependency, as an `Annotated` alias."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Header, Request

from maas.api.services import Services
from maas.auth.keys import Principal
from maas.errors import Forbidden, RegistryUnavailable
from maas.types import Scope

F = TypeVar("F", bound=Callable[..., Any])


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


def model_in_body(endpoint: F) -> F:
    """Mark an admin route that names its model in the body, not the path, or lists models:
    the route itself checks a key limited to models (`allow_admin` with the body's model), or
    shows such a key only its own."""
    endpoint.model_in_body = True  # type: ignore[attr-defined]
    return endpoint


async def require_admin(
    request: Request,
    services: ServicesDep,
    authorization: Annotated[str | None, Header()] = None,
) -> Principal:
    """The admin key of the request, allowed to act on the path's model (a key limited to
    models may act on those only, and on nothing that is not one model). A key that is
    refused is written in the audit log with what it asked for."""
    principal = await services.auth.authenticate(authorization)
    request.state.principal = principal
    endpoint = getattr(request.scope.get("route"), "endpoint", None)
    if getattr(endpoint, "model_in_body", False):
        await allow_admin(request, services, principal, model=None, any_model=True)
    else:
        await allow_admin(request, services, principal, model=request.path_params.get("name"))
    return principal


async def allow_admin(
    request: Request,
    services: Services,
    principal: Principal,
    *,
    model: str | None,
    any_model: bool = False,
) -> None:
    """Forbidden, and audited, unless `principal` may administer `model` (with `any_model`:
    has the admin scope; the route checks the model named in its body)."""
    try:
        services.auth.allow(principal, Scope.ADMIN, model, any_model=any_model)
    except Forbidden as exc:
        route = request.scope.get("route")
        template = getattr(route, "path", request.url.path)
        with contextlib.suppress(RegistryUnavailable):  # the refusal stands either way
            await services.registry.record_refusal(
                actor=principal.name,
                request=f"{request.method} {template}",
                target=model or request.url.path,
                reason=exc.message,
            )
        raise


AdminDep = Annotated[Principal, Depends(require_admin)]
