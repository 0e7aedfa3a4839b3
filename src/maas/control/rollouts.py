"""The rollout driver: the one gateway of a registry holding the `control/rollouts` lease
judges every running rollout's window and moves it on, from registry state alone.

Every `tick_s` the holder reads each alias's newest rollout (from its routing table: every
rollout change raises the generation); for a running one it adds up what
every gateway reported for its current window (`Registry.tallies`, one row per gateway process
and epoch: `maas.observability.rollout_tallies`), asks `rollout_judge.judge` for a verdict, and
records the verdict and its move in one registry transaction (`Registry.judge_rollout`, which
refuses a stale one). A move (new weights, a new epoch) is then propagated to every live
gateway before the driver goes on, so the next window counts only requests routed by the new
weights. Nothing lives in the driver's memory: a gateway that takes the lease over after the
holder died picks the rollouts up where the registry says they are.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from maas.control.leader import LeaseLeader
from maas.control.plane import ControlPlane
from maas.control.rollout_judge import judge, measure
from maas.control.routing import Router
from maas.errors import MaasError, RegistryUnavailable
from maas.registry.coordination import Coordination
from maas.registry.records import RolloutRecord
from maas.registry.service import Registry
from maas.rollout import RolloutState, WindowFigures

log = logging.getLogger(__name__)

LEASE = "control/rollouts"


class RolloutDriver:
    def __init__(
        self,
        registry: Registry,
        router: Router,
        coordination: Coordination,
        plane: ControlPlane,
        *,
        holder: str,
        tick_s: float,
    ) -> None:
        self._registry = registry
        self._router = router
        self._plane = plane
        self._tick_s = tick_s
        # Competed for only while a rollout runs: an idle deployment writes no lease for it.
        self.lease = LeaseLeader(
            coordination,
            name=LEASE,
            holder=holder,
            wanted=self._running,
            unwanted_because="no rollout is running",
        )
        self._task: asyncio.Task[None] | None = None

    def _running(self) -> bool:
        return any(r.state is RolloutState.RUNNING for r in self._router.snapshot.rollouts.values())

    async def start(self) -> None:
        await self.lease.start()
        self._task = asyncio.create_task(self._run(), name="rollout driver")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self.lease.close()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._tick_s)
            if not self.lease.is_leader:
                continue
            try:
                await self.tick()
            except RegistryUnavailable as exc:
                log.debug("rollouts not judged this tick: %s", exc.message)
            except Exception:
                log.exception("judging the rollouts failed")

    async def tick(self, now: float | None = None) -> list[RolloutRecord]:
        """Judge every running rollout once; the rollouts that moved."""
        moved = []
        snapshot = await self._router.current()  # every rollout change raises the generation
        for rollout in snapshot.rollouts.values():
            if rollout.state is not RolloutState.RUNNING:
                continue
            try:
                after = await self._judge(rollout, time.time() if now is None else now)
            except RegistryUnavailable:
                raise
            except MaasError as exc:  # the model or alias went away meanwhile
                log.warning("rollout %d of %s: %s", rollout.id, rollout.model, exc.message)
                continue
            if after is not None:
                moved.append(after)
        return moved

    async def _judge(self, rollout: RolloutRecord, now: float) -> RolloutRecord | None:
        reports = await self._registry.tallies(rollout_id=rollout.id, epoch=rollout.epoch)
        judgement = judge(rollout, WindowFigures.total(reports), now)
        if judgement is None:
            return None
        after = await self._registry.judge_rollout(
            model=rollout.model,
            rollout_id=rollout.id,
            epoch=rollout.epoch,
            verdict=judgement.verdict,
            interval=judgement.interval,
            now=now,
        )
        if after is None:
            return None
        log.info(
            "rollout %d of %s/%s (%s@%d): %s at weight %d -> %s, weight %d",
            rollout.id,
            rollout.model,
            rollout.alias,
            rollout.model,
            rollout.candidate,
            judgement.verdict.value,
            rollout.weight,
            after.state.value,
            after.weight,
        )
        if after.generation is not None:
            await self._plane.propagate(after.generation)
        return after


async def window_so_far(registry: Registry, rollout: RolloutRecord) -> dict[str, Any] | None:
    """What every gateway counted in a running rollout's current window, measured as its
    interval will be (`rollout_judge.measure`); None when it is not running."""
    if rollout.state is not RolloutState.RUNNING:
        return None
    reports = await registry.tallies(rollout_id=rollout.id, epoch=rollout.epoch)
    return measure(rollout, WindowFigures.total(reports), time.time())
