"""An admin change (an alias moved or deleted, a key revoked) answers once every live gateway
serves it: `once_served` waits for that, or for MAAS_PROPAGATION_TIMEOUT_MS, and `answered`
is what the answer then says of it (`generation`, `propagated`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

from pydantic import BaseModel, Field

if TYPE_CHECKING:
    from maas.api.services import Services
    from maas.control import plane

Generation = Annotated[
    int,
    Field(
        description="the registry generation this change committed with (it rises with every "
        "change); once the call returns, every gateway that confirmed serves it"
    ),
]


class Propagation(BaseModel):
    """Which live gateways serve the change (within MAAS_PROPAGATION_TIMEOUT_MS)."""

    gateways: int = Field(description="live gateways of this registry")
    confirmed: int = Field(description="those that serve the generation")
    missing: list[str] = Field(description='those that did not confirm in time ("host:pid")')


def answered(p: plane.Propagation) -> dict[str, Any]:
    """The `generation` and `propagated` fields of the answer to a change, once `p` was
    waited for."""
    propagated = Propagation(gateways=p.gateways, confirmed=p.confirmed, missing=p.missing)
    return {"generation": p.generation, "propagated": propagated}


async def once_served(services: Services, generation: int | None) -> plane.Propagation:
    """Wait until every live gateway serves `generation` (or the propagation timeout passed).
    None, for a change that moved nothing, waits for the registry's generation now: the alias
    may have got its target from a change this gateway has not heard of yet (a version that
    became production on turning ready), and an answer promises every gateway serves it."""
    if generation is None:
        generation = await services.registry.generation()
    return await services.plane.propagate(generation)
