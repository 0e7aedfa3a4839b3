"""`GET /admin/models/{name}/traffic`: what every gateway answered per version, per time bin,
from the traffic samples each gateway writes (two in-process gateways on one registry stand
for a deployment), and every bad query refused with its reason."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from support.inprocess_gateway import ADMIN, Gateway, make_settings, running_gateway
from support.model_files import IN, mlp_meta, tiny_mlp, torchscript_bytes

FAST = {"traffic_report_s": 0.1}
GOOD = {"instances": [[0.5] * IN]}
BAD = {"instances": [[0.5] * (IN + 1)]}  # reaches the version, refused as the wrong shape


@pytest.fixture
async def gw(tmp_path: Path) -> AsyncIterator[Gateway]:
    async with running_gateway(make_settings(tmp_path, **FAST)) as gateway:
        await gateway.deploy("mlp", torchscript_bytes(tiny_mlp(seed=1)), mlp_meta())
        yield gateway


async def traffic(gw: Gateway, query: str = "minutes=1&step_s=1", **headers: str) -> Any:
    answer = await gw.client.get(f"/admin/models/mlp/traffic?{query}", headers={**ADMIN, **headers})
    assert answer.status_code == 200, answer.text
    return answer.json()


def totals(body: dict[str, Any], version: int) -> dict[str, float]:
    """Requests, 5xx and 4xx a version's points add up to, and its busiest bin."""
    (entry,) = [v for v in body["versions"] if v["version"] == version]
    step = body["step_s"]
    out = {"requests": 0.0, "errors": 0.0, "refused": 0.0}
    for p in entry["points"]:
        n = p["requests_per_s"] * step
        out["requests"] += n
        out["errors"] += (p["error_rate"] or 0) * n
        out["refused"] += (p["refused_rate"] or 0) * n
    return {k: round(v, 6) for k, v in out.items()}


async def settled(gw: Gateway, version: int, requests: int, query: str = "") -> Any:
    """The traffic answer once the bins holding `requests` of `version` are over."""
    for _ in range(100):
        body = await traffic(gw, query or "minutes=1&step_s=1")
        versions = [v["version"] for v in body["versions"]]
        if version in versions and totals(body, version)["requests"] >= requests:
            return body
        await asyncio.sleep(0.1)
    raise AssertionError(f"traffic never showed {requests} requests: {body}")


async def test_a_versions_requests_refusals_latency_and_batches(gw: Gateway) -> None:
    for _ in range(3):
        answers = await asyncio.gather(
            *(gw.predict("/v1/models/mlp:predict", GOOD) for _ in range(20))
        )
        assert {a.status_code for a in answers} == {200}
    refused = [await gw.predict("/v1/models/mlp:predict", BAD) for _ in range(4)]
    assert {a.status_code for a in refused} == {422}, refused[0].text
    body = await settled(gw, 1, 64)
    assert totals(body, 1) == {"requests": 64, "errors": 0, "refused": 4}
    assert body["model"] == "mlp"
    assert body["step_s"] == 1
    assert body["report_s"] == 0.1
    assert body["gateways"] == 1
    points = next(v for v in body["versions"] if v["version"] == 1)["points"]
    assert len(points) == 60  # a minute in steps of a second
    assert points == sorted(points, key=lambda p: p["at"])
    busy = [p for p in points if p["requests_per_s"]]
    assert all(0 < p["p50_ms"] <= p["p99_ms"] < 30_000 for p in busy)
    # 60 good instances went through the batcher, up to 8 at a time
    batched = [p["mean_batch_size"] for p in points if p["mean_batch_size"] is not None]
    assert batched
    assert all(1 <= size <= 8 for size in batched)
    assert all(p["queue_depth"] >= 0 for p in points)
    idle = [p for p in points if not p["requests_per_s"]]
    assert idle
    assert all(p["p99_ms"] is None and p["error_rate"] is None for p in idle)


async def test_every_gateway_of_the_deployment_is_added_up(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, **FAST)
    async with contextlib.AsyncExitStack() as stack:
        first = await stack.enter_async_context(running_gateway(settings))
        await first.deploy("mlp", torchscript_bytes(tiny_mlp(seed=1)), mlp_meta())
        second = await stack.enter_async_context(running_gateway(settings))
        assert (await second.wait_ready()).status_code == 200
        for gateway, count in ((first, 7), (second, 11)):
            for _ in range(count):
                answer = await gateway.predict("/v1/models/mlp:predict", GOOD)
                assert answer.status_code == 200, answer.text
        for asked in (first, second):  # either gateway answers for both
            body = await settled(asked, 1, 18)
            assert totals(body, 1)["requests"] == 18
            assert body["gateways"] == 2


@pytest.mark.parametrize(
    ("query", "status", "says"),
    [
        ("minutes=0", 422, "minutes"),
        ("minutes=abc", 422, "minutes"),
        ("minutes=-5", 422, "minutes"),
        ("step_s=0.5", 422, "step_s"),
        ("step_s=99999", 422, "step_s"),
        ("minutes=nan", 422, "minutes"),
    ],
)
async def test_bad_queries_are_refused_with_their_reason(
    gw: Gateway, query: str, status: int, says: str
) -> None:
    answer = await gw.client.get(f"/admin/models/mlp/traffic?{query}", headers=ADMIN)
    assert answer.status_code == status, answer.text
    assert says in answer.text


async def test_too_many_points_unknown_models_and_other_keys_are_refused(tmp_path: Path) -> None:
    async with running_gateway(make_settings(tmp_path, traffic_keep_s=7200, **FAST)) as gw:
        await gw.deploy("mlp", torchscript_bytes(tiny_mlp(seed=1)), mlp_meta())
        answer = await gw.client.get("/admin/models/mlp/traffic?minutes=60&step_s=1", headers=ADMIN)
        assert answer.status_code == 400, answer.text
        assert "3600 points; at most 900" in answer.json()["error"]["message"]
        body = await traffic(gw, "minutes=60&step_s=4")  # 900 points: fine
        assert len(body["versions"]) in (0, 1)
        missing = await gw.client.get("/admin/models/nope/traffic", headers=ADMIN)
        assert missing.status_code == 404
        assert missing.json()["error"]["code"] == "model_not_found"
        await gw.create_model("other")
        made = await gw.client.post(
            "/admin/keys",
            json={"name": "o", "scopes": ["admin"], "models": ["other"]},
            headers=ADMIN,
        )
        limited = {"Authorization": f"Bearer {made.json()['secret']}"}
        refused = await gw.client.get("/admin/models/mlp/traffic", headers=limited)
        assert refused.status_code == 403
        own = await gw.client.get("/admin/models/other/traffic", headers=limited)
        assert own.status_code == 200
        assert own.json()["versions"] == []


async def test_a_gateway_without_traffic_samples_says_so(tmp_path: Path) -> None:
    async with running_gateway(make_settings(tmp_path, traffic_report_s=0)) as gw:
        await gw.create_model("mlp")
        answer = await gw.client.get("/admin/models/mlp/traffic", headers=ADMIN)
        assert answer.status_code == 400
        assert "MAAS_TRAFFIC_REPORT_S=0" in answer.json()["error"]["message"]
