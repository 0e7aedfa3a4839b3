"""The rules around a rollout, through the admin API: what a start refuses, the operator's
verbs, and that nobody else moves an alias while a rollout owns it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from support.inprocess_gateway import ADMIN, Gateway, make_settings, running_gateway
from support.model_files import failing_meta, mlp_meta, tiny_mlp, torchscript_bytes

# No traffic here: the rollouts only move when an operator says so.
SLOW = {"steps": [10, 50, 100], "interval_s": 3600}


@pytest.fixture
async def gw(tmp_path: Path) -> AsyncIterator[Gateway]:
    settings = make_settings(tmp_path, rollout_tick_s=0.05, rollout_report_s=0.05)
    async with running_gateway(settings) as gateway:
        await gateway.deploy("mlp", torchscript_bytes(tiny_mlp(seed=1)), mlp_meta())
        await gateway.deploy("mlp", torchscript_bytes(tiny_mlp(seed=2)), mlp_meta(), alias=None)
        yield gateway


async def post(gw: Gateway, path: str, body: Any = None) -> tuple[int, dict[str, Any]]:
    answer = await gw.client.post(f"/admin/models/{path}", json=body, headers=ADMIN)
    return answer.status_code, answer.json()


async def production(gw: Gateway) -> list[dict[str, int]]:
    answer = await gw.client.get("/admin/models/mlp/aliases/production", headers=ADMIN)
    return answer.json()["routes"]  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({}, "candidate"),
        ({"candidate": "2"}, "candidate"),
        ({"candidate": 2, "steps": []}, "steps"),
        ({"candidate": 2, "steps": [50, 10]}, "must rise"),
        ({"candidate": 2, "steps": [10, 10]}, "must rise"),
        ({"candidate": 2, "steps": [0, 100]}, "steps"),
        ({"candidate": 2, "steps": [50, 101]}, "steps"),
        ({"candidate": 2, "interval_s": 0}, "interval_s"),
        ({"candidate": 2, "interval_s": True}, "interval_s"),
        ({"candidate": 2, "interval_s": 100_000}, "interval_s"),
        ({"candidate": 2, "min_requests": -1}, "min_requests"),
        ({"candidate": 2, "shadow_s": -1}, "shadow_s"),
        ({"candidate": 2, "guards": {"max_error_rate": 1.5}}, "max_error_rate"),
        ({"candidate": 2, "guards": {"max_p99_ratio": 0}}, "max_p99_ratio"),
        ({"candidate": 2, "guards": {"max_latency": 3}}, "max_latency"),
        ({"candidate": 2, "on_failure": "explode"}, "on_failure"),
        ({"candidate": 2, "failure_limit": 0}, "failure_limit"),
        ({"candidate": 2, "colour": "blue"}, "colour"),
    ],
)
async def test_a_malformed_start_is_refused_with_the_field_named(
    gw: Gateway, body: dict[str, Any], says: str
) -> None:
    status, answer = await post(gw, "mlp/rollouts", body)
    assert status == 422, answer
    assert says in answer["error"]["message"]
    assert (await gw.client.get("/admin/models/mlp/rollouts", headers=ADMIN)).json() == {
        "rollouts": []
    }


async def test_a_start_the_registry_refuses_says_why(gw: Gateway) -> None:
    broken = await gw.upload("mlp", torchscript_bytes(tiny_mlp()), failing_meta())
    assert broken.status_code == 201
    assert (await gw.wait_settled("mlp", 3))["status"] == "failed"
    cases = [
        ("nope/rollouts", {"candidate": 2}, 404, "model_not_found"),
        ("mlp/rollouts", {"candidate": 9}, 404, "version_not_found"),
        ("mlp/rollouts", {"candidate": 2, "alias": "beta"}, 404, "alias_not_found"),
        ("mlp/rollouts", {"candidate": 2, "alias": "Bad Name"}, 400, "bad_request"),
        ("mlp/rollouts", {"candidate": 1}, 400, "bad_request"),
        ("mlp/rollouts", {"candidate": 3}, 409, "version_not_ready"),
    ]
    for path, body, status, code in cases:
        got, answer = await post(gw, path, body)
        assert (got, answer["error"]["code"]) == (status, code), (body, answer)
    split = {"routes": [{"version": 1, "weight": 90}, {"version": 2, "weight": 10}]}
    moved = await gw.client.put("/admin/models/mlp/aliases/canary", json=split, headers=ADMIN)
    assert moved.status_code == 200
    got, answer = await post(gw, "mlp/rollouts", {"candidate": 2, "alias": "canary"})
    assert (got, answer["error"]["code"]) == (409, "conflict")
    assert "splits its traffic" in answer["error"]["message"]


async def test_while_a_rollout_owns_the_alias_nobody_else_moves_it(gw: Gateway) -> None:
    status, rollout = await post(gw, "mlp/rollouts", {"candidate": 2, **SLOW})
    assert status == 201, rollout
    assert await production(gw) == [{"version": 1, "weight": 90}, {"version": 2, "weight": 10}]
    a = "/admin/models/mlp/aliases/production"
    refused = [
        await gw.client.put(a, json={"version": 2}, headers=ADMIN),
        await gw.client.put(a, json={"shadow": {"version": 2, "percent": 5}}, headers=ADMIN),
        await gw.client.post("/admin/models/mlp/promote", json={"version": 2}, headers=ADMIN),
        await gw.client.post("/admin/models/mlp/rollback", json={}, headers=ADMIN),
        await gw.client.delete(a, headers=ADMIN),
        await gw.client.post("/admin/models/mlp/rollouts", json={"candidate": 2}, headers=ADMIN),
    ]
    for answer in refused:
        assert answer.status_code == 409, answer.text
        assert answer.json()["error"]["code"] == "rollout_in_progress"
        assert f"rollout {rollout['id']}" in answer.json()["error"]["message"]
    # Its versions are the alias's targets: neither can be unloaded from under it.
    unload = await gw.client.post("/admin/models/mlp/versions/2/unload", headers=ADMIN)
    assert unload.status_code == 409
    assert await production(gw) == [{"version": 1, "weight": 90}, {"version": 2, "weight": 10}]
    # Another alias is free.
    other = await gw.client.put(
        "/admin/models/mlp/aliases/staging", json={"version": 2}, headers=ADMIN
    )
    assert other.status_code == 200
    # Aborted, the alias is the operator's again.
    status, aborted = await post(gw, f"mlp/rollouts/{rollout['id']}/abort")
    assert (status, aborted["state"]) == (200, "aborted")
    assert await production(gw) == [{"version": 1, "weight": 100}]
    moved = await gw.client.put(a, json={"version": 2}, headers=ADMIN)
    assert moved.status_code == 200


async def test_the_verbs_walk_a_rollout_by_hand_and_an_ended_one_refuses_them(
    gw: Gateway,
) -> None:
    status, rollout = await post(gw, "mlp/rollouts", {"candidate": 2, **SLOW})
    one = f"mlp/rollouts/{rollout['id']}"
    status, paused = await post(gw, f"{one}/pause")
    assert (status, paused["state"], paused["phase"]) == (200, "paused", "paused")
    assert paused["reason"].startswith("paused by ")
    status, again = await post(gw, f"{one}/pause")  # nothing to do: answered as it is
    assert (status, again["state"]) == (200, "paused")
    status, resumed = await post(gw, f"{one}/resume")
    assert (resumed["state"], resumed["reason"], resumed["weight"]) == ("running", None, 10)
    status, promoted = await post(gw, f"{one}/promote", {})
    assert (promoted["step"], promoted["weight"]) == (1, 50)
    assert await production(gw) == [{"version": 1, "weight": 50}, {"version": 2, "weight": 50}]
    status, bad = await post(gw, f"{one}/promote", {"full": "yes"})
    assert (status, bad["error"]["code"]) == (422, "invalid_request")
    status, done = await post(gw, f"{one}/promote", {"full": True})
    assert (done["state"], done["weight"], done["weights"]) == ("succeeded", 100, {})
    assert done["ended_at"] is not None
    assert await production(gw) == [{"version": 2, "weight": 100}]
    for verb in ("pause", "resume", "promote", "abort"):
        status, answer = await post(gw, f"{one}/{verb}")
        assert (status, answer["error"]["code"]) == (409, "rollout_ended"), verb
    for path, code in (
        ("mlp/rollouts/99/pause", "rollout_not_found"),
        ("x/rollouts/1/abort", "model_not_found"),
    ):
        status, answer = await post(gw, path)
        assert (status, answer["error"]["code"]) == (404, code)
    missing = await gw.client.get("/admin/models/mlp/rollouts/99", headers=ADMIN)
    assert missing.status_code == 404
    junk = await gw.client.get("/admin/models/mlp/rollouts/zero", headers=ADMIN)
    assert junk.status_code == 422
    events = await gw.client.get("/admin/events?model=mlp&action=rollout", headers=ADMIN)
    actions = [e["action"] for e in reversed(events.json()["events"])]
    assert actions == [
        "rollout.start",
        "rollout.pause",
        "rollout.resume",
        "rollout.step",
        "rollout.promote",
        "rollout.succeeded",
        "rollout.promote",
    ]
    listed = (await gw.client.get("/admin/models/mlp/rollouts", headers=ADMIN)).json()
    assert [r["id"] for r in listed["rollouts"]] == [rollout["id"]]
