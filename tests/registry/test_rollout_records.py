"""Rollouts in the registry, on SQLite and on a real PostgreSQL server: the moves a start, a
verdict and a verb make on the alias, in one transaction with their audit row; a stale verdict
refused; the newest rollout per alias; and every gateway's tallies of a window added up."""

from __future__ import annotations

import time

import pytest

from maas.errors import RolloutEnded, RolloutInProgress, RolloutNotFound
from maas.registry.records import Route
from maas.registry.service import Registry
from maas.rollout import RolloutPlan, RolloutState, Verdict, VersionFigures, WindowFigures
from maas.types import Shadow
from support.registry_setup import model_with_ready_versions

PLAN = RolloutPlan(steps=(10, 100), interval_s=1.0, min_requests=1)


async def routes(registry: Registry) -> tuple[tuple[Route, ...], Shadow | None]:
    alias = await registry.get_alias(model="m", alias="production")
    return alias.routes, alias.shadow


async def test_a_rollout_walks_its_steps_through_verdicts(registry: Registry) -> None:
    await model_with_ready_versions(registry, 2)  # production -> 1
    started = await registry.start_rollout(
        model="m", alias="production", candidate=2, plan=PLAN, actor="ops"
    )
    assert (started.state, started.step, started.weight, started.epoch) == (
        RolloutState.RUNNING,
        0,
        10,
        1,
    )
    assert started.generation == await registry.generation()
    assert await routes(registry) == ((Route(1, 90), Route(2, 10)), None)
    with pytest.raises(RolloutInProgress):
        await registry.promote(model="m", alias="production", version=2, actor="ops")
    with pytest.raises(RolloutInProgress):
        await registry.start_rollout(
            model="m", alias="production", candidate=2, plan=PLAN, actor="ops"
        )

    now = time.time()
    interval = {"verdict": "pass", "requests": 5}
    stepped = await registry.judge_rollout(
        model="m", rollout_id=started.id, epoch=1, verdict=Verdict.PASS, interval=interval, now=now
    )
    assert stepped is not None
    assert (stepped.step, stepped.weight, stepped.epoch) == (1, 100, 2)
    assert stepped.interval_started_at == now
    assert await routes(registry) == ((Route(2, 100),), None)
    # A verdict on the window that just ended (another leader's, late) changes nothing.
    stale = await registry.judge_rollout(
        model="m", rollout_id=started.id, epoch=1, verdict=Verdict.FAIL, interval={}, now=now
    )
    assert stale is None
    done = await registry.judge_rollout(
        model="m", rollout_id=started.id, epoch=2, verdict=Verdict.PASS, interval=interval, now=now
    )
    assert done is not None
    assert done.state is RolloutState.SUCCEEDED
    assert done.ended_at is not None
    assert len(done.intervals) == 2
    history = await registry.alias_history(model="m", alias="production", limit=10)
    # Each step is a move of the alias (the last one already gave 2 all of it).
    assert [(h.action, h.key) for h in history][:2] == [
        ("rollout", "rollout:1"),
        ("rollout", "ops"),
    ]
    events = await registry.events(limit=20, model="m", action="rollout")
    assert [e.action for e in reversed(events)] == [
        "rollout.start",
        "rollout.pass",
        "rollout.step",
        "rollout.pass",
        "rollout.succeeded",
    ]
    assert events[-1].target == "m/production#1"
    with pytest.raises(RolloutEnded):
        await registry.rollout_verb(model="m", rollout_id=started.id, verb="abort", actor="ops")
    # Ended, the alias is the operator's again.
    await registry.promote(model="m", alias="production", version=1, actor="ops")


async def test_a_failure_rolls_back_and_a_shadow_phase_owns_the_shadow(registry: Registry) -> None:
    await model_with_ready_versions(registry, 2)
    await registry.promote(model="m", alias="production", version=1, actor="ops")
    plan = RolloutPlan(steps=(50,), interval_s=1.0, min_requests=1, shadow_s=1.0)
    started = await registry.start_rollout(
        model="m", alias="production", candidate=2, plan=plan, actor="ops"
    )
    assert (started.step, started.weight, started.phase) == (-1, 0, "shadow")
    assert await routes(registry) == ((Route(1, 100),), Shadow(2, 100))
    passed = await registry.judge_rollout(
        model="m", rollout_id=1, epoch=1, verdict=Verdict.PASS, interval={}, now=time.time()
    )
    assert passed is not None
    assert (passed.step, passed.weight) == (0, 50)
    assert await routes(registry) == ((Route(1, 50), Route(2, 50)), None)
    failed = await registry.judge_rollout(
        model="m",
        rollout_id=1,
        epoch=2,
        verdict=Verdict.FAIL,
        interval={"breaches": ["error rate 9.00% > 1.00%"]},
        now=time.time(),
    )
    assert failed is not None
    assert failed.state is RolloutState.FAILED
    assert failed.reason == "1 failed interval(s): error rate 9.00% > 1.00%"
    assert await routes(registry) == ((Route(1, 100),), None)
    (newest,) = await registry.newest_rollouts()
    assert (newest.id, newest.state) == (1, RolloutState.FAILED)
    again = await registry.start_rollout(
        model="m", alias="production", candidate=2, plan=PLAN, actor="ops"
    )
    assert [r.id for r in await registry.newest_rollouts()] == [again.id]
    assert [r.id for r in await registry.list_rollouts(model="m")] == [again.id, 1]
    with pytest.raises(RolloutNotFound):
        await registry.get_rollout(model="m", rollout_id=99)


async def test_every_gateways_report_of_a_window_is_kept_and_replaced(registry: Registry) -> None:
    await model_with_ready_versions(registry, 2)
    started = await registry.start_rollout(
        model="m", alias="production", candidate=2, plan=PLAN, actor="ops"
    )

    def served(requests: int) -> dict[str, object]:
        figures = WindowFigures(candidate=VersionFigures())
        for _ in range(requests):
            figures.candidate.observe(0.001, False)
        return figures.to_json()

    key = (started.id, started.epoch)
    await registry.report_tallies(reporter="a:1", figures={key: served(3)})
    await registry.report_tallies(reporter="b:2", figures={key: served(4)})
    await registry.report_tallies(reporter="a:1", figures={key: served(5)})  # replaces a's
    await registry.report_tallies(reporter="c:3", figures={(999, 1): served(1)})  # no rollout
    reports = await registry.tallies(rollout_id=started.id, epoch=started.epoch)
    assert WindowFigures.total(reports).candidate.requests == 9
    assert await registry.tallies(rollout_id=started.id, epoch=2) == []
