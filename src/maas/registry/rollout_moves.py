"""The writes a rollout makes inside a registry transaction (the caller owns it and has locked
the model row): finding the rollout that owns an alias, refusing manual changes of that
alias, and pointing the alias where the rollout stands (its routes and its shadow)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, select

from maas.errors import RolloutInProgress, RolloutNotFound
from maas.registry import repository as repo
from maas.registry.aliasing import audit, move_alias, write_shadow
from maas.registry.records import RolloutRecord, Route
from maas.registry.tables import Model, Rollout, RolloutTally
from maas.rollout import RolloutState
from maas.types import AliasAction, Shadow

ACTIVE = (RolloutState.RUNNING.value, RolloutState.PAUSED.value)


def rollout_actor(rollout_id: int) -> str:
    """Who the alias history and audit log name for a move the rollout made on its own."""
    return f"rollout:{rollout_id}"


async def owning_rollout(session: Any, model_row: Model, alias: str) -> Rollout | None:
    """The running or paused rollout of the alias, if it has one."""
    query = select(Rollout).where(
        Rollout.model_id == model_row.id, Rollout.alias == alias, Rollout.state.in_(ACTIVE)
    )
    return (await session.execute(query)).scalars().first()  # type: ignore[no-any-return]


async def refuse_if_rolling(session: Any, model_row: Model, alias: str) -> None:
    """RolloutInProgress when a rollout owns the alias: a manual change would fight it."""
    row = await owning_rollout(session, model_row, alias)
    if row is not None:
        name = model_row.name
        raise RolloutInProgress(
            f"alias '{alias}' of '{name}' is in rollout {row.id} ({name}@{row.candidate}, "
            f"{row.state}); abort it first (POST /admin/models/{name}/rollouts/{row.id}/abort, "
            f"or: maas rollout abort {name} --alias {alias})"
        )


async def locked_rollout(session: Any, model: str, rollout_id: int) -> tuple[Model, Rollout]:
    """The model's row (locked) and its rollout `rollout_id`; RolloutNotFound else."""
    model_row = await repo.get_model(session, name=model, lock=True)
    row = await session.get(Rollout, rollout_id, with_for_update=True)
    if row is None or row.model_id != model_row.id:
        raise RolloutNotFound(f"model '{model}' has no rollout {rollout_id}")
    return model_row, row


def routes_at(row: Rollout, weight: int | None) -> tuple[list[Route], Shadow | None]:
    """The alias's routes and shadow with the candidate at `weight` percent (None: the shadow
    phase, every request to the stable version and mirrored to the candidate)."""
    if weight is None:
        return [Route(row.stable, 100)], Shadow(row.candidate, 100)
    if weight <= 0:
        return [Route(row.stable, 100)], None
    if weight >= 100:
        return [Route(row.candidate, 100)], None
    return [Route(row.stable, 100 - weight), Route(row.candidate, weight)], None


async def point_alias(
    session: Any,
    model_row: Model,
    row: Rollout,
    weight: int | None,
    *,
    action: AliasAction,
    actor: str | None = None,
) -> None:
    """Point the rollout's alias at `routes_at(row, weight)`: its history row and audit events
    name `actor` (the rollout itself by default). The caller bumps the generation."""
    routes, shadow = routes_at(row, weight)
    who = actor or rollout_actor(row.id)
    current = await repo.require_alias(session, model=model_row, name=row.alias)
    await move_alias(
        session, model_row, row.alias, current, routes, actor=who, action=action, force=True
    )
    current = await repo.require_alias(session, model=model_row, name=row.alias)
    await write_shadow(session, model_row, current, shadow, actor=who)


def finish(row: Rollout, state: RolloutState, reason: str | None) -> None:
    now = datetime.now(UTC)
    row.state = state.value
    row.reason = reason
    row.updated_at = now
    row.ended_at = now


def new_window(row: Rollout, now: float) -> None:
    """A new measuring window: a new epoch, from `now`."""
    row.epoch += 1
    row.interval_started_at = now
    row.updated_at = datetime.now(UTC)


async def drop_tallies(session: Any, row: Rollout, *, below_epoch: int | None = None) -> None:
    """Forget what gateways counted for the rollout (before `below_epoch`, else all)."""
    query = delete(RolloutTally).where(RolloutTally.rollout_id == row.id)
    if below_epoch is not None:
        query = query.where(RolloutTally.epoch < below_epoch)
    await session.execute(query)


def audit_rollout(
    session: Any, actor: str, action: str, model: str, row: Rollout, after: Any
) -> None:
    audit(session, actor, f"rollout.{action}", f"{model}/{row.alias}#{row.id}", None, after)


def summary(row: Rollout) -> dict[str, Any]:
    """What an audit row says of where a rollout stands."""
    return {
        "rollout": row.id,
        "state": row.state,
        "step": row.step,
        "weight": row.weight,
        "stable": row.stable,
        "candidate": row.candidate,
    }


def record(row: Rollout, model: str, generation: int | None) -> RolloutRecord:
    return RolloutRecord.from_row(row, model, generation)
