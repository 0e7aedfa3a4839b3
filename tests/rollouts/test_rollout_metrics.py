"""What `/metrics` says of rollouts, read with Prometheus's own parser from an in-process
gateway with real models: `maas_rollout_phase{model,alias}` follows the alias's newest rollout
through every phase (the codes the alerts and the dashboard read), and
`maas_rollout_weight{model,alias,version}` shows the split only while the rollout runs or is
paused. The deploy/ rules and panels are checked against these families in tests/deploy."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from support.inprocess_gateway import ADMIN, Gateway, make_settings, running_gateway
from support.model_files import mlp_meta, tiny_mlp, torchscript_bytes
from support.prometheus import Sample, parse, value
from support.rollout_models import instances, picky

# A rollout that stays where it is put: without traffic no interval ever ends in a verdict.
HELD = {"candidate": 2, "steps": [20, 50, 100], "interval_s": 3600, "min_requests": 5}

Phases = dict[tuple[str, str], float]
Weights = dict[tuple[str, str, str], float]


@pytest.fixture
async def gw(tmp_path: Path) -> AsyncIterator[Gateway]:
    """mlp@1 on production, with the leader ticking and gateways reporting every 50 ms (a failing
    candidate is rolled back within a second of its evidence)."""
    async with running_gateway(
        make_settings(tmp_path, rollout_tick_s=0.05, rollout_report_s=0.05)
    ) as gateway:
        await gateway.deploy("mlp", torchscript_bytes(tiny_mlp(seed=1)), mlp_meta())
        yield gateway


async def scrape(gw: Gateway) -> tuple[set[str], dict[Sample, float]]:
    answer = await gw.client.get("/metrics")
    assert answer.status_code == 200, answer.text
    return parse(answer.text)


def rollout_series(samples: dict[Sample, float]) -> tuple[Phases, Weights]:
    """maas_rollout_phase by (model, alias), maas_rollout_weight by (model, alias, version)."""
    phases: Phases = {}
    weights: Weights = {}
    for (name, pairs), number in samples.items():
        labels = dict(pairs)
        if name == "maas_rollout_phase":
            phases[labels["model"], labels["alias"]] = number
        elif name == "maas_rollout_weight":
            weights[labels["model"], labels["alias"], labels["version"]] = number
    return phases, weights


async def scraped_when(
    gw: Gateway, ready: Callable[[Phases], bool], what: str, timeout_s: float = 30.0
) -> tuple[Phases, Weights, dict[Sample, float]]:
    """The first scrape whose phases satisfy `ready` (the gateway reads the registry's change
    on its own schedule); fails saying `what` never showed."""
    for _ in range(int(timeout_s / 0.02)):
        _, samples = await scrape(gw)
        phases, weights = rollout_series(samples)
        if ready(phases):
            return phases, weights, samples
        await asyncio.sleep(0.02)
    raise AssertionError(f"/metrics never showed {what} within {timeout_s:.0f} s: {phases}")


def phase_is(code: int) -> Callable[[Phases], bool]:
    return lambda phases: phases.get(("mlp", "production")) == code


async def start(gw: Gateway, **body: Any) -> dict[str, Any]:
    answer = await gw.client.post("/admin/models/mlp/rollouts", json=body, headers=ADMIN)
    assert answer.status_code == 201, answer.text
    return answer.json()  # type: ignore[no-any-return]


async def verb(gw: Gateway, rollout: int, name: str, body: Any = None) -> dict[str, Any]:
    answer = await gw.client.post(
        f"/admin/models/mlp/rollouts/{rollout}/{name}", json=body, headers=ADMIN
    )
    assert answer.status_code == 200, answer.text
    return answer.json()  # type: ignore[no-any-return]


@contextlib.asynccontextmanager
async def traffic(gw: Gateway, rows: list[list[float]]) -> AsyncIterator[None]:
    """Two clients sending mlp (its production alias) one instance each, round the rows,
    until the block ends."""

    async def send() -> None:
        index = 0
        while True:
            row = rows[index % len(rows)]
            index += 1
            await gw.predict("/v1/models/mlp:predict", {"instances": [row]})

    tasks = [asyncio.create_task(send()) for _ in range(2)]
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def test_a_rollout_shows_its_phase_and_split_until_it_is_aborted(gw: Gateway) -> None:
    families, samples = await scrape(gw)
    assert {"maas_rollout_phase", "maas_rollout_weight"} <= families
    assert rollout_series(samples) == ({}, {})  # there from the start, without series
    await gw.deploy("mlp", torchscript_bytes(tiny_mlp(seed=2)), mlp_meta(), alias=None)

    rollout = await start(gw, **HELD)
    phases, weights, samples = await scraped_when(gw, phase_is(2), "the steps phase (2)")
    assert phases == {("mlp", "production"): 2}
    assert weights == {("mlp", "production", "1"): 80, ("mlp", "production", "2"): 20}
    # The same split the alias routes, as maas_alias_target's shares.
    target = {"model": "mlp", "alias": "production"}
    assert value(samples, "maas_alias_target", version="1", **target) == pytest.approx(0.8)
    assert value(samples, "maas_alias_target", version="2", **target) == pytest.approx(0.2)

    await verb(gw, rollout["id"], "pause")
    _, weights, _ = await scraped_when(gw, phase_is(3), "the paused phase (3)")
    assert weights == {("mlp", "production", "1"): 80, ("mlp", "production", "2"): 20}

    await verb(gw, rollout["id"], "abort")
    phases, weights, samples = await scraped_when(gw, phase_is(6), "the aborted phase (6)")
    assert phases == {("mlp", "production"): 6}
    assert weights == {}  # ended: the alias is the stable version's alone again
    assert value(samples, "maas_alias_target", version="1", **target) == 1.0

    # The series follow the alias's newest rollout.
    await start(gw, **{**HELD, "steps": [10, 100]})
    _, weights, _ = await scraped_when(gw, phase_is(2), "the next rollout's steps (2)")
    assert weights == {("mlp", "production", "1"): 90, ("mlp", "production", "2"): 10}


async def test_the_shadow_phase_shows_phase_1_and_the_candidate_at_weight_0(gw: Gateway) -> None:
    await gw.deploy("mlp", torchscript_bytes(tiny_mlp(seed=2)), mlp_meta(), alias=None)
    await start(gw, **HELD, shadow_s=3600)
    phases, weights, _ = await scraped_when(gw, phase_is(1), "the shadow phase (1)")
    assert phases == {("mlp", "production"): 1}
    assert weights == {("mlp", "production", "1"): 100, ("mlp", "production", "2"): 0}


async def test_a_promoted_rollout_shows_succeeded_without_a_split(gw: Gateway) -> None:
    await gw.deploy("mlp", torchscript_bytes(tiny_mlp(seed=2)), mlp_meta(), alias=None)
    rollout = await start(gw, **HELD)
    await verb(gw, rollout["id"], "promote", {"full": True})
    phases, weights, samples = await scraped_when(gw, phase_is(4), "the succeeded phase (4)")
    assert phases == {("mlp", "production"): 4}
    assert weights == {}
    target = {"model": "mlp", "alias": "production", "version": "2"}
    assert value(samples, "maas_alias_target", **target) == 1.0


async def test_a_rolled_back_rollout_shows_failed(gw: Gateway) -> None:
    await gw.deploy("mlp", torchscript_bytes(picky(seed=1)), mlp_meta(), alias=None)
    body = {
        "candidate": 2,
        "steps": [50, 100],
        "interval_s": 5.0,
        "min_requests": 20,
        "guards": {"max_error_rate": 0.05},
    }
    async with traffic(gw, instances(100, flagged_every=10)):  # the candidate fails 10 %
        rollout = await start(gw, **body)
        phases, weights, samples = await scraped_when(gw, phase_is(5), "the failed phase (5)")
    assert phases == {("mlp", "production"): 5}
    assert weights == {}
    target = {"model": "mlp", "alias": "production", "version": "1"}
    assert value(samples, "maas_alias_target", **target) == 1.0
    status = await gw.client.get(f"/admin/models/mlp/rollouts/{rollout['id']}", headers=ADMIN)
    assert status.json()["state"] == "failed"
