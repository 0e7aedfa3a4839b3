"""Registry operations on rollouts (CONTRACT: Shadow and rollouts): starting one on an alias,
the leader's verdict on an interval and the move it makes, the operator's verbs (pause,
resume, promote, abort), reading them, and what gateways counted for them.

A rollout owns its alias while it runs or is paused: it moves the alias's routes and shadow
itself (history action `rollout`, actor `rollout:<id>`), and manual changes of the alias are
refused (`rollout_moves.refuse_if_rolling`). Every change here is one transaction with its
audit row (`rollout.<what>`, with the figures that decided it) and a generation bump, so every
gateway reads the new weights and starts counting the new epoch."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, func, select

from maas.errors import BadRequest, BelowAgreement, Conflict, RolloutEnded, VersionNotReady
from maas.registry import repository as repo
from maas.registry.aliasing import below_bound
from maas.registry.base import RegistryBase
from maas.registry.records import RolloutRecord
from maas.registry.rollout_moves import (
    audit_rollout,
    drop_tallies,
    finish,
    locked_rollout,
    new_window,
    owning_rollout,
    point_alias,
    record,
    refuse_if_rolling,
    summary,
)
from maas.registry.tables import Model, Rollout, RolloutTally
from maas.rollout import OnFailure, RolloutPlan, RolloutState, Verdict
from maas.types import AliasAction, VersionStatus


class Rollouts(RegistryBase):
    async def start_rollout(
        self, *, model: str, alias: str, candidate: int, plan: RolloutPlan, actor: str
    ) -> RolloutRecord:
        """Start walking `candidate` onto `alias` (which must point at one version, the stable
        one): the shadow phase first when the plan has one, else the first weight step.
        RolloutInProgress when the alias already has a running or paused rollout."""
        now = time.time()
        async with self._writes.begin() as session:
            model_row = await repo.get_model(session, name=model, lock=True)
            alias_row = await repo.require_alias(session, model=model_row, name=alias)
            await refuse_if_rolling(session, model_row, alias)
            targets = [r.version for r in alias_row.routes]
            if len(targets) != 1:
                raise Conflict(
                    f"alias '{alias}' of '{model}' splits its traffic over versions "
                    f"{', '.join(map(str, targets))}; a rollout starts from one stable version "
                    f"(point it at one first: maas models promote {model}@V --alias {alias})"
                )
            stable = targets[0]
            if candidate == stable:
                raise BadRequest(f"alias '{alias}' of '{model}' already points at {candidate}")
            version = await repo.get_version(session, model=model_row, version=candidate)
            if version.status != VersionStatus.READY.value:
                raise VersionNotReady(
                    f"{model}@{candidate} is {version.status}; a rollout's candidate must be "
                    f"ready (load it first: maas models load {model}@{candidate})"
                )
            if below_bound(version) is not None:
                raise BelowAgreement(
                    f"{model}@{candidate} is a derived version below its agreement bound; "
                    "roll it out by hand with maas models canary ... --force"
                )
            shadowing = plan.shadow_s > 0
            row = Rollout(
                model_id=model_row.id,
                alias=alias,
                stable=stable,
                candidate=candidate,
                plan=plan.to_json(),
                state=RolloutState.RUNNING.value,
                step=-1 if shadowing else 0,
                weight=0 if shadowing else plan.steps[0],
                epoch=1,
                interval_started_at=now,
                failures=0,
                intervals=[],
                key_name=actor,
            )
            session.add(row)
            await session.flush()
            await point_alias(
                session,
                model_row,
                row,
                None if shadowing else row.weight,
                action=AliasAction.ROLLOUT,
                actor=actor,
            )
            audit_rollout(session, actor, "start", model, row, {**summary(row), **plan.to_json()})
            generation = await repo.bump_generation(session)
            result = record(row, model, generation)
        self._changed(generation)
        return result

    async def judge_rollout(
        self,
        *,
        model: str,
        rollout_id: int,
        epoch: int,
        verdict: Verdict,
        interval: dict[str, Any],
        now: float,
    ) -> RolloutRecord | None:
        """The leader's verdict on the rollout's window `epoch`, and what it leads to: pass →
        the next step (after the last: the candidate takes the whole alias, `succeeded`);
        fail → hold at this step until `failure_limit` failures, then roll back to the stable
        version (`failed`) or pause; inconclusive → hold and keep counting the same window.
        None when the rollout moved meanwhile (another verdict, an operator's verb)."""
        async with self._writes.begin() as session:
            model_row, row = await locked_rollout(session, model, rollout_id)
            if row.state != RolloutState.RUNNING.value or row.epoch != epoch:
                return None
            plan = RolloutPlan.from_json(row.plan)
            row.intervals = [*row.intervals, interval]
            actor = f"rollout:{row.id}"
            audit_rollout(session, actor, verdict.value, model, row, interval)
            if interval.get("stable_forward_p99_ms") is not None:
                row.stable_forward_p99_ms = interval["stable_forward_p99_ms"]
            if verdict is Verdict.INCONCLUSIVE:  # held: the same window goes on counting
                row.interval_started_at = now
                row.updated_at = datetime.now(UTC)
            elif verdict is Verdict.PASS:
                row.failures = 0
                await self._step(session, model_row, row, plan, full=False, now=now, actor=actor)
            else:
                row.failures += 1
                await self._failed(session, model_row, row, plan, interval, now, actor)
            generation = await repo.bump_generation(session)
            result = record(row, model, generation)
        self._changed(generation)
        return result

    async def _step(
        self,
        session: Any,
        model_row: Model,
        row: Rollout,
        plan: RolloutPlan,
        *,
        full: bool,
        now: float,
        actor: str,
    ) -> None:
        """On to the next step (the first, from the shadow phase), or to the end."""
        last = len(plan.steps) - 1
        if full or row.step >= last or (row.step >= 0 and plan.steps[row.step] >= 100):
            row.step, row.weight = last, 100
            await point_alias(session, model_row, row, 100, action=AliasAction.PROMOTE, actor=actor)
            finish(row, RolloutState.SUCCEEDED, None)
            await drop_tallies(session, row)
            audit_rollout(session, actor, "succeeded", model_row.name, row, summary(row))
            return
        row.step += 1
        row.weight = plan.steps[row.step]
        await point_alias(
            session, model_row, row, row.weight, action=AliasAction.ROLLOUT, actor=actor
        )
        new_window(row, now)
        await drop_tallies(session, row, below_epoch=row.epoch - 1)
        audit_rollout(session, actor, "step", model_row.name, row, summary(row))

    async def _failed(
        self,
        session: Any,
        model_row: Model,
        row: Rollout,
        plan: RolloutPlan,
        interval: dict[str, Any],
        now: float,
        actor: str,
    ) -> None:
        breach = "; ".join(interval.get("breaches") or ()) or "a guard was breached"
        if row.failures < plan.failure_limit:
            new_window(row, now)  # held at this step: judged again on a fresh window
            return
        reason = f"{row.failures} failed interval(s): {breach}"
        if plan.on_failure is OnFailure.PAUSE:
            row.state = RolloutState.PAUSED.value
            row.reason = reason
            row.updated_at = datetime.now(UTC)
            audit_rollout(
                session, actor, "pause", model_row.name, row, {**summary(row), "reason": reason}
            )
            return
        await point_alias(session, model_row, row, 0, action=AliasAction.ROLLBACK, actor=actor)
        finish(row, RolloutState.FAILED, reason)
        await drop_tallies(session, row)
        audit_rollout(
            session, actor, "rollback", model_row.name, row, {**summary(row), "reason": reason}
        )

    async def rollout_verb(
        self, *, model: str, rollout_id: int, verb: str, actor: str, full: bool = False
    ) -> RolloutRecord:
        """An operator's verb: `pause` (a running rollout holds where it is), `resume` (a
        paused one goes on with a fresh window), `promote` (the next step, or with `full` the
        end: the candidate takes the whole alias), `abort` (back to the stable version).
        RolloutEnded for a rollout that has ended; pausing a paused rollout (or resuming a
        running one) changes nothing."""
        now = time.time()
        async with self._writes.begin() as session:
            model_row, row = await locked_rollout(session, model, rollout_id)
            state = RolloutState(row.state)
            if not state.active:
                raise RolloutEnded(
                    f"rollout {rollout_id} of '{model}' has {state.value}; start a new one"
                )
            plan = RolloutPlan.from_json(row.plan)
            if verb == "pause" and state is RolloutState.RUNNING:
                row.state = RolloutState.PAUSED.value
                row.reason = f"paused by {actor}"
                row.updated_at = datetime.now(UTC)
            elif verb == "resume" and state is RolloutState.PAUSED:
                row.state = RolloutState.RUNNING.value
                row.reason = None
                row.failures = 0
                new_window(row, now)
            elif verb == "promote":
                row.state = RolloutState.RUNNING.value
                row.failures = 0
                await self._step(session, model_row, row, plan, full=full, now=now, actor=actor)
            elif verb == "abort":
                await point_alias(
                    session, model_row, row, 0, action=AliasAction.ROLLBACK, actor=actor
                )
                finish(row, RolloutState.ABORTED, f"aborted by {actor}")
                await drop_tallies(session, row)
            else:
                return record(row, model, None)
            audit_rollout(session, actor, verb, model, row, {**summary(row), "full": full})
            generation = await repo.bump_generation(session)
            result = record(row, model, generation)
        self._changed(generation)
        return result

    async def get_rollout(self, *, model: str, rollout_id: int) -> RolloutRecord:
        async with self._sessions() as session:
            model_row, row = await locked_rollout(session, model, rollout_id)
            return record(row, model_row.name, None)

    async def list_rollouts(self, *, model: str, alias: str | None = None) -> list[RolloutRecord]:
        """The model's rollouts (of `alias` only, when given), newest first."""
        async with self._sessions() as session:
            model_row = await repo.get_model(session, name=model)
            query = select(Rollout).where(Rollout.model_id == model_row.id)
            if alias is not None:
                query = query.where(Rollout.alias == alias)
            rows = (await session.execute(query.order_by(Rollout.id.desc()))).scalars()
            return [record(row, model, None) for row in rows]

    async def active_rollout(self, *, model: str, alias: str) -> RolloutRecord | None:
        async with self._sessions() as session:
            model_row = await repo.get_model(session, name=model)
            row = await owning_rollout(session, model_row, alias)
            return None if row is None else record(row, model, None)

    async def newest_rollouts(self) -> list[RolloutRecord]:
        """Each alias's newest rollout, of every model (the routing table reads them)."""
        async with self._sessions() as session:
            newest = (
                select(func.max(Rollout.id)).group_by(Rollout.model_id, Rollout.alias)
            ).scalar_subquery()
            query = (
                select(Rollout, Model.name)
                .join(Model, Model.id == Rollout.model_id)
                .where(Rollout.id.in_(newest))
            )
            rows = (await session.execute(query)).all()
            return [record(row, name, None) for row, name in rows]

    async def report_tallies(
        self, *, reporter: str, figures: dict[tuple[int, int], dict[str, Any]]
    ) -> None:
        """What gateway `reporter` counted, by (rollout, epoch): replaces its earlier report
        of each (only its own rows: gateways never write each other's)."""
        if not figures:
            return
        now = time.time()
        async with self._writes.begin() as session:
            live = set(
                (
                    await session.execute(
                        select(Rollout.id).where(Rollout.id.in_({r for r, _ in figures}))
                    )
                ).scalars()
            )
            for (rollout_id, epoch), counted in figures.items():
                if rollout_id not in live:
                    continue  # its model was deleted meanwhile
                await session.execute(
                    delete(RolloutTally).where(
                        RolloutTally.rollout_id == rollout_id,
                        RolloutTally.epoch == epoch,
                        RolloutTally.reporter == reporter,
                    )
                )
                session.add(
                    RolloutTally(
                        rollout_id=rollout_id,
                        epoch=epoch,
                        reporter=reporter,
                        figures=counted,
                        updated_at=now,
                    )
                )

    async def tallies(self, *, rollout_id: int, epoch: int) -> list[dict[str, Any]]:
        """Every gateway's report of the rollout's window `epoch`."""
        async with self._sessions() as session:
            query = select(RolloutTally.figures).where(
                RolloutTally.rollout_id == rollout_id, RolloutTally.epoch == epoch
            )
            return list((await session.execute(query)).scalars())
