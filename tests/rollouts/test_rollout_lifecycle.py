"""Rollouts through an in-process gateway with real models and real traffic: the leader walks a
good candidate to 100 %, rolls a failing one back, holds on a trickle, and the operator's verbs
(pause, resume, promote, abort) and the refusal of manual alias changes."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from support.inprocess_gateway import ADMIN, Gateway, make_settings, running_gateway
from support.model_files import mlp_meta, tiny_mlp, torchscript_bytes
from support.rollout_models import contrary, instances, picky

FAST = {"rollout_tick_s": 0.05, "rollout_report_s": 0.05}


@pytest.fixture
async def gw(tmp_path: Path) -> AsyncIterator[Gateway]:
    async with running_gateway(make_settings(tmp_path, **FAST)) as gateway:
        await gateway.deploy("mlp", torchscript_bytes(tiny_mlp(seed=1)), mlp_meta())
        yield gateway


async def start(gw: Gateway, **body: Any) -> dict[str, Any]:
    answer = await gw.client.post("/admin/models/mlp/rollouts", json=body, headers=ADMIN)
    assert answer.status_code == 201, answer.text
    return answer.json()  # type: ignore[no-any-return]


async def status(gw: Gateway, rollout: int) -> dict[str, Any]:
    answer = await gw.client.get(f"/admin/models/mlp/rollouts/{rollout}", headers=ADMIN)
    assert answer.status_code == 200, answer.text
    return answer.json()  # type: ignore[no-any-return]


async def ended(gw: Gateway, rollout: int, timeout_s: float = 30.0) -> dict[str, Any]:
    for _ in range(int(timeout_s / 0.05)):
        body = await status(gw, rollout)
        if body["state"] not in ("running", "paused"):
            return body
        await asyncio.sleep(0.05)
    raise AssertionError(f"rollout {rollout} still {body['state']} after {timeout_s} s: {body}")


@contextlib.asynccontextmanager
async def traffic(
    gw: Gateway, rows: list[list[float]], pause_s: float = 0.0
) -> AsyncIterator[dict[int, int]]:
    """Requests to mlp (its production alias), one instance each, round the rows, until the
    block ends; yields the count of answers by status."""
    codes: dict[int, int] = {}

    async def send() -> None:
        index = 0
        while True:
            row = rows[index % len(rows)]
            index += 1
            answer = await gw.predict("/v1/models/mlp:predict", {"instances": [row]})
            codes[answer.status_code] = codes.get(answer.status_code, 0) + 1
            await asyncio.sleep(pause_s)

    tasks = [asyncio.create_task(send()) for _ in range(2)]
    try:
        yield codes
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def audit_actions(gw: Gateway) -> list[str]:
    answer = await gw.client.get("/admin/events?model=mlp&action=rollout&limit=500", headers=ADMIN)
    assert answer.status_code == 200, answer.text
    return [e["action"] for e in reversed(answer.json()["events"])]


async def production(gw: Gateway) -> list[dict[str, int]]:
    answer = await gw.client.get("/admin/models/mlp/aliases/production", headers=ADMIN)
    return answer.json()["routes"]  # type: ignore[no-any-return]


async def test_a_good_candidate_walks_every_step_to_the_whole_alias(gw: Gateway) -> None:
    await gw.deploy("mlp", torchscript_bytes(tiny_mlp(seed=1)), mlp_meta(), alias=None)
    async with traffic(gw, instances(50)) as codes:
        rollout = await start(gw, candidate=2, steps=[20, 50, 100], interval_s=0.4, min_requests=5)
        assert (rollout["state"], rollout["step"], rollout["weight"]) == ("running", 0, 20)
        assert rollout["weights"] == {"1": 80, "2": 20}
        assert await production(gw) == [{"version": 1, "weight": 80}, {"version": 2, "weight": 20}]
        final = await ended(gw, rollout["id"])
    assert final["state"] == "succeeded", final
    verdicts = [(i["weight"], i["verdict"]) for i in final["intervals"]]
    assert verdicts[-3:] == [(20, "pass"), (50, "pass"), (100, "pass")]
    assert all(i["requests"] >= 5 and i["errors"] == 0 for i in final["intervals"])
    assert await production(gw) == [{"version": 2, "weight": 100}]
    assert set(codes) == {200}
    actions = await audit_actions(gw)
    assert actions[0] == "rollout.start"
    assert actions[-1] == "rollout.succeeded"
    assert actions.count("rollout.step") == 2
    assert actions.count("rollout.pass") == 3


async def test_a_failing_candidate_is_rolled_back_and_the_stable_version_never_fails(
    gw: Gateway,
) -> None:
    await gw.deploy("mlp", torchscript_bytes(picky(seed=1)), mlp_meta(), alias=None)
    rows = instances(100, flagged_every=10)  # the candidate refuses 10 % of them
    async with traffic(gw, rows) as codes:
        rollout = await start(
            gw,
            candidate=2,
            steps=[50, 100],
            interval_s=5.0,
            min_requests=20,
            guards={"max_error_rate": 0.05},
        )
        final = await ended(gw, rollout["id"])
    assert final["state"] == "failed", final
    [interval] = final["intervals"]
    assert (interval["verdict"], interval["weight"]) == ("fail", 50)
    assert interval["error_rate"] > 0.05
    assert "error rate" in interval["breaches"][0]
    assert interval["elapsed_s"] < 5.0  # acted on as soon as the evidence was in
    assert await production(gw) == [{"version": 1, "weight": 100}]
    history = await gw.client.get("/admin/models/mlp/aliases/production/history", headers=ADMIN)
    assert history.json()["history"][0]["action"] == "rollback"
    assert codes.get(200, 0) > 0
    # Every failure came from the candidate: none of the stable version's requests failed.
    metrics = (await gw.client.get("/metrics")).text
    assert 'maas_requests_total{code="422",model="mlp",protocol="v1",version="1"}' not in metrics
    assert "rollout.rollback" in await audit_actions(gw)
    # A refusal names the version that refused, as an answer does.
    flagged = {"instances": instances(1, flagged_every=1)}
    refused = await gw.predict("/v1/models/mlp@2:predict", flagged)
    assert refused.status_code == 422
    assert (refused.headers["x-model-name"], refused.headers["x-model-version"]) == ("mlp", "2")
    missing = await gw.predict("/v1/models/mlp@9:predict", flagged)
    assert missing.status_code == 404
    assert "x-model-version" not in missing.headers


async def test_a_trickle_holds_the_rollout_and_never_fails_it(gw: Gateway) -> None:
    await gw.deploy("mlp", torchscript_bytes(picky(seed=1)), mlp_meta(), alias=None)
    rows = instances(10, flagged_every=2)  # half of what reaches the candidate fails
    async with traffic(gw, rows, pause_s=0.1):  # ~20 requests a second, ~4 to the candidate
        rollout = await start(gw, candidate=2, steps=[20, 100], interval_s=0.3, min_requests=1000)
        await asyncio.sleep(2.0)
        now = await status(gw, rollout["id"])
    assert (now["state"], now["step"], now["weight"]) == ("running", 0, 20)
    verdicts = {i["verdict"] for i in now["intervals"]}
    assert verdicts == {"inconclusive"}, now["intervals"]
    # The held window goes on counting: each inconclusive interval saw at least the last's.
    counts = [i["requests"] for i in now["intervals"]]
    assert counts == sorted(counts)
    assert counts[-1] > 0
    assert now["window"]["requests"] >= counts[-1]


async def test_a_shadow_phase_measures_the_disagreement_and_fails_on_it(gw: Gateway) -> None:
    await gw.deploy("mlp", torchscript_bytes(contrary(seed=1)), mlp_meta(), alias=None)
    rows = instances(40, flagged_every=4)  # the candidate disagrees on exactly a quarter
    async with traffic(gw, rows) as codes:
        rollout = await start(
            gw,
            candidate=2,
            steps=[50, 100],
            interval_s=0.3,
            min_requests=40,
            shadow_s=0.3,
            guards={"max_disagreement": 0.1},
        )
        assert (rollout["phase"], rollout["step"], rollout["weight"]) == ("shadow", -1, 0)
        shadowed = await gw.client.get("/admin/models/mlp/aliases/production", headers=ADMIN)
        assert shadowed.json()["shadow"] == {"version": 2, "percent": 100}
        final = await ended(gw, rollout["id"])
    assert final["state"] == "failed", final
    [interval] = final["intervals"]
    assert (interval["phase"], interval["verdict"]) == ("shadow", "fail")
    # Judged as soon as the window had 40 mirrors: each client is part way through its cycle
    # of the rows, where a quarter are flagged.
    assert interval["disagreement"] == pytest.approx(0.25, abs=0.06)
    assert "disagreement" in interval["breaches"][0]
    after = await gw.client.get("/admin/models/mlp/aliases/production", headers=ADMIN)
    assert after.json()["routes"] == [{"version": 1, "weight": 100}]
    assert after.json().get("shadow") is None
    assert set(codes) == {200}  # the client only ever heard the stable version


async def test_a_shadow_phase_that_agrees_enough_moves_on_to_the_steps(gw: Gateway) -> None:
    await gw.deploy("mlp", torchscript_bytes(contrary(seed=1)), mlp_meta(), alias=None)
    async with traffic(gw, instances(40, flagged_every=4)):
        rollout = await start(
            gw,
            candidate=2,
            steps=[100],
            interval_s=0.3,
            min_requests=10,
            shadow_s=0.3,
            guards={"max_disagreement": 0.5},
        )
        final = await ended(gw, rollout["id"])
    assert final["state"] == "succeeded", final
    assert [(i["phase"], i["verdict"]) for i in final["intervals"]] == [
        ("shadow", "pass"),
        ("steps", "pass"),
    ]


async def test_on_failure_pause_holds_the_weights_for_the_operator(gw: Gateway) -> None:
    await gw.deploy("mlp", torchscript_bytes(picky(seed=1)), mlp_meta(), alias=None)
    async with traffic(gw, instances(20, flagged_every=5)):
        rollout = await start(
            gw,
            candidate=2,
            steps=[50, 100],
            interval_s=5.0,
            min_requests=10,
            failure_limit=2,
            on_failure="pause",
        )
        for _ in range(200):
            now = await status(gw, rollout["id"])
            if now["state"] == "paused":
                break
            await asyncio.sleep(0.05)
    assert (now["state"], now["weight"]) == ("paused", 50), now
    assert [i["verdict"] for i in now["intervals"]] == ["fail", "fail"]  # held once, then paused
    assert now["reason"].startswith("2 failed interval(s): error rate")
    assert await production(gw) == [{"version": 1, "weight": 50}, {"version": 2, "weight": 50}]
    aborted = await gw.client.post(
        f"/admin/models/mlp/rollouts/{rollout['id']}/abort", headers=ADMIN
    )
    assert aborted.json()["state"] == "aborted"
    assert await production(gw) == [{"version": 1, "weight": 100}]
