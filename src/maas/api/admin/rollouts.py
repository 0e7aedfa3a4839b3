"""Admin routes of rollouts: start one on an alias, read them, and the operator's verbs (pause,
resume, promote, abort). The leader moves a running rollout on by itself
(`maas.control.rollouts`); a change made here answers once every live gateway serves it."""

from __future__ import annotations

from typing import Annotated

from fastapi import Body, Path

from maas.api.admin.propagation import once_served
from maas.api.admin.revalidation import admin_router
from maas.api.admin.rollout_bodies import PromoteRollout, RolloutList, RolloutOut, StartRollout
from maas.api.deps import AdminDep, ServicesDep
from maas.api.openapi import BAD_JSON, INVALID, VERSION_NOT_FOUND, admin_errors
from maas.control.rollouts import window_so_far
from maas.registry.aliasing import check_alias_name
from maas.types import VERSION_MAX

router = admin_router()

RolloutId = Annotated[int, Path(ge=1, le=VERSION_MAX, description="the rollout's id")]
_NOT_FOUND = "`model_not_found` or `rollout_not_found`"
_ENDED = "`rollout_ended`: the rollout has succeeded, failed or been aborted"
_VERBS = {
    "pause": "Hold a running rollout where it is: no verdicts, the weights stay.",
    "resume": "Go on with a paused rollout, on a fresh window at its step.",
    "abort": "Stop the rollout and send the alias's traffic back to the stable version.",
}


@router.post(
    "/models/{name}/rollouts",
    status_code=201,
    response_model=RolloutOut,
    response_description="The rollout, running, once every live gateway serves its first step",
    responses=admin_errors(
        {
            400: BAD_JSON + "; `bad_request`: the candidate is the alias's version already",
            404: VERSION_NOT_FOUND + ", or `alias_not_found`",
            409: "`rollout_in_progress`: the alias has a running or paused rollout; "
            "`version_not_ready`: the candidate is not ready; `conflict`: the alias splits its "
            "traffic over several versions; `below_agreement`: a derived version below its bound",
            422: INVALID,
        }
    ),
)
async def start_rollout(
    name: str, body: StartRollout, services: ServicesDep, who: AdminDep
) -> RolloutOut:
    """Walk `candidate` onto the alias: a shadow phase first (`shadow_s`), then each weight
    step for at least `interval_s`, judged from every gateway's figures against `guards`."""
    check_alias_name(body.alias)
    record = await services.registry.start_rollout(
        model=name, alias=body.alias, candidate=body.candidate, plan=body.plan(), actor=who.name
    )
    await once_served(services, record.generation)
    return RolloutOut.from_record(record)


@router.get(
    "/models/{name}/rollouts",
    response_model=RolloutList,
    response_description="The model's rollouts, newest first",
    responses=admin_errors({404: "`model_not_found`"}),
)
async def list_rollouts(name: str, services: ServicesDep) -> RolloutList:
    rollouts = await services.registry.list_rollouts(model=name)
    return RolloutList(rollouts=[RolloutOut.from_record(r) for r in rollouts])


@router.get(
    "/models/{name}/rollouts/{rollout_id}",
    response_model=RolloutOut,
    response_description="The rollout: its state, step, weights, every interval's verdict and "
    "figures, and (running) its current window so far",
    responses=admin_errors({404: _NOT_FOUND, 422: INVALID}),
)
async def get_rollout(name: str, rollout_id: RolloutId, services: ServicesDep) -> RolloutOut:
    record = await services.registry.get_rollout(model=name, rollout_id=rollout_id)
    return RolloutOut.from_record(record, await window_so_far(services.registry, record))


@router.post(
    "/models/{name}/rollouts/{rollout_id}/promote",
    response_model=RolloutOut,
    response_description="The rollout at its next step (or succeeded), once gateways serve it",
    responses=admin_errors({400: BAD_JSON, 404: _NOT_FOUND, 409: _ENDED, 422: INVALID}),
)
async def promote_rollout(
    name: str,
    rollout_id: RolloutId,
    services: ServicesDep,
    who: AdminDep,
    body: Annotated[PromoteRollout | None, Body()] = None,
) -> RolloutOut:
    """On to the next step now (from the shadow phase: the first), or with `full` to the end:
    the candidate takes the whole alias and the rollout has succeeded."""
    full = body.full if body is not None else False
    record = await services.registry.rollout_verb(
        model=name, rollout_id=rollout_id, verb="promote", actor=who.name, full=full
    )
    await once_served(services, record.generation)
    return RolloutOut.from_record(record)


def _verb_route(verb: str) -> None:
    async def act(
        name: str, rollout_id: RolloutId, services: ServicesDep, who: AdminDep
    ) -> RolloutOut:
        record = await services.registry.rollout_verb(
            model=name, rollout_id=rollout_id, verb=verb, actor=who.name
        )
        await once_served(services, record.generation)
        return RolloutOut.from_record(record)

    act.__doc__ = _VERBS[verb]
    router.post(
        f"/models/{{name}}/rollouts/{{rollout_id}}/{verb}",
        response_model=RolloutOut,
        response_description="The rollout after it, once every live gateway serves it",
        responses=admin_errors({404: _NOT_FOUND, 409: _ENDED, 422: INVALID}),
        name=f"{verb}_rollout",
    )(act)


for _verb in _VERBS:
    _verb_route(_verb)
