"""Shadow traffic through the in-process gateway with real models: an alias mirrors its
requests to a candidate version; the client's answers stay the primary's (byte for byte), and
`/metrics` shows how the candidate compared, failed, or was dropped."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from maas.types import Shadow
from support.inprocess_gateway import Gateway, make_settings, running_gateway
from support.model_files import (
    IN,
    SlowMLP,
    expected,
    mlp_meta,
    tiny_mlp,
    torchscript_bytes,
)
from support.prometheus import parse, value
from support.waiting import until

OUTCOMES = ("agree", "disagree", "error", "dropped")


def batches(count: int, size: int = 3, seed: int = 7) -> list[list[list[float]]]:
    rng = np.random.default_rng(seed)
    return [rng.normal(size=(size, IN)).round(3).tolist() for _ in range(count)]


async def shadow(gateway: Gateway, candidate: int | None, percent: int = 100) -> None:
    """Set (None: remove) mlp@production's shadow."""
    registry = gateway.services.registry
    mirror = None if candidate is None else Shadow(candidate, percent)
    await registry.set_shadow("mlp", "production", mirror, actor="test")


async def predict(gateway: Gateway, rows: list[list[float]], ref: str = "mlp") -> bytes:
    answer = await gateway.predict(f"/v1/models/{ref}:predict", {"instances": rows})
    assert answer.status_code == 200, answer.text
    return answer.content


async def shadow_samples(gateway: Gateway) -> dict[Any, float]:
    await until(lambda: gateway.services.shadow.in_flight == 0, "the mirrors to end")
    response = await gateway.client.get("/metrics")
    assert response.status_code == 200
    _, samples = parse(response.text)
    return samples


def outcomes(samples: dict[Any, float], candidate: int) -> dict[str, float | None]:
    pair = {"model": "mlp", "primary": "1", "candidate": str(candidate)}
    return {o: value(samples, "maas_shadow_requests_total", outcome=o, **pair) for o in OUTCOMES}


async def test_the_families_are_there_from_the_start_and_a_shadows_series_at_0(
    gateway: Gateway,
) -> None:
    response = await gateway.client.get("/metrics")
    families, _ = parse(response.text)
    assert {
        "maas_shadow_requests",
        "maas_shadow_instances",
        "maas_shadow_abs_diff",
        "maas_shadow_latency_ratio",
    } <= families
    await gateway.deploy("mlp", torchscript_bytes(tiny_mlp(seed=1)), mlp_meta())
    await gateway.deploy("mlp", torchscript_bytes(tiny_mlp(seed=1)), mlp_meta(), alias=None)
    await shadow(gateway, 2)
    samples = await shadow_samples(gateway)
    assert outcomes(samples, 2) == dict.fromkeys(OUTCOMES, 0.0)


async def test_an_identical_candidate_agrees_on_every_request_and_answers_stay_the_same(
    gateway: Gateway,
) -> None:
    same = torchscript_bytes(tiny_mlp(seed=1))
    await gateway.deploy("mlp", same, mlp_meta())
    await gateway.deploy("mlp", same, mlp_meta(), alias=None)
    requests = batches(10)
    before = [await predict(gateway, rows) for rows in requests]
    await shadow(gateway, 2)
    assert [await predict(gateway, rows) for rows in requests] == before
    samples = await shadow_samples(gateway)
    assert outcomes(samples, 2) == {"agree": 10, "disagree": 0, "error": 0, "dropped": 0}
    pair = {"model": "mlp", "primary": "1", "candidate": "2"}
    assert value(samples, "maas_shadow_instances_total", outcome="agree", **pair) == 30
    assert value(samples, "maas_shadow_abs_diff_count", **pair) == 10
    assert (value(samples, "maas_shadow_abs_diff_sum", **pair) or 0) < 1e-4
    assert value(samples, "maas_shadow_latency_ratio_count", **pair) == 10
    await shadow(gateway, None)  # removed: mirrored no more
    await predict(gateway, requests[0])
    assert outcomes(await shadow_samples(gateway), 2)["agree"] == 10


async def test_a_different_candidate_reports_the_share_it_disagrees_on(gateway: Gateway) -> None:
    primary, candidate = tiny_mlp(seed=1), tiny_mlp(seed=2)
    await gateway.deploy("mlp", torchscript_bytes(primary), mlp_meta())
    await gateway.deploy("mlp", torchscript_bytes(candidate), mlp_meta(), alias=None)
    await shadow(gateway, 2)
    requests = batches(20)
    agreeing_requests = agreeing_instances = 0
    for rows in requests:
        same = np.argmax(expected(primary, rows), -1) == np.argmax(expected(candidate, rows), -1)
        agreeing_requests += int(same.all())
        agreeing_instances += int(same.sum())
        await predict(gateway, rows)
    assert 0 < agreeing_instances < 60, "the two seeds were meant to disagree on some rows"
    samples = await shadow_samples(gateway)
    assert outcomes(samples, 2) == {
        "agree": agreeing_requests,
        "disagree": 20 - agreeing_requests,
        "error": 0,
        "dropped": 0,
    }
    pair = {"model": "mlp", "primary": "1", "candidate": "2"}
    instances = "maas_shadow_instances_total"
    assert value(samples, instances, outcome="agree", **pair) == agreeing_instances
    assert value(samples, instances, outcome="disagree", **pair) == 60 - agreeing_instances
    assert (value(samples, "maas_shadow_abs_diff_sum", **pair) or 0) > 0


async def test_refs_naming_a_version_or_an_alias_without_a_shadow_are_not_mirrored(
    gateway: Gateway,
) -> None:
    await gateway.deploy("mlp", torchscript_bytes(tiny_mlp(seed=1)), mlp_meta())
    await gateway.deploy("mlp", torchscript_bytes(tiny_mlp(seed=2)), mlp_meta(), alias="staging")
    await shadow(gateway, 2)
    for ref in ("mlp@1", "mlp@2", "mlp@staging"):
        await predict(gateway, batches(1)[0], ref)
    assert sum(outcomes(await shadow_samples(gateway), 2).values()) == 0  # type: ignore[arg-type]
    await predict(gateway, batches(1)[0], "mlp@production")
    assert outcomes(await shadow_samples(gateway), 2)["agree"] is not None
    assert sum(outcomes(await shadow_samples(gateway), 2).values()) == 1  # type: ignore[arg-type]


async def test_a_candidate_that_fails_counts_errors_while_every_primary_request_succeeds(
    gateway: Gateway,
) -> None:
    model = torchscript_bytes(tiny_mlp(seed=1))
    await gateway.deploy("mlp", model, mlp_meta())
    # Takes one instance at a time: the data plane refuses it a request of three.
    one_at_a_time = mlp_meta(batching={"max_batch_size": 1, "max_delay_ms": 0, "max_queue": 1})
    await gateway.deploy("mlp", model, one_at_a_time, alias=None)
    # Its input is named otherwise: no request decoded for the primary fits it.
    renamed = mlp_meta()
    renamed["inputs"][0]["name"] = "features"
    await gateway.deploy("mlp", model, renamed, alias=None)
    for candidate in (2, 3):
        await shadow(gateway, candidate)
        for rows in batches(4):
            await predict(gateway, rows)
    samples = await shadow_samples(gateway)
    for candidate in (2, 3):
        assert outcomes(samples, candidate) == {
            "agree": 0,
            "disagree": 0,
            "error": 4,
            "dropped": 0,
        }
    ok = {"model": "mlp", "version": "1", "protocol": "v1"}
    assert value(samples, "maas_requests_total", code="200", **ok) == 8
    codes = {
        dict(labels)["code"]
        for (name, labels), count in samples.items()
        if name == "maas_requests_total" and ("model", "mlp") in labels and count
    }
    assert codes == {"200"}  # the candidate's refusals reached no client


async def test_a_full_mirror_drops_and_counts_while_the_primary_answers(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, shadow_max_in_flight=1)
    async with running_gateway(settings) as gateway:
        await gateway.deploy("mlp", torchscript_bytes(tiny_mlp(seed=1)), mlp_meta())
        slow = torchscript_bytes(SlowMLP(rounds=20))  # tens of ms a forward
        await gateway.deploy("mlp", slow, mlp_meta(), alias=None)
        await shadow(gateway, 2)
        sent = 0
        for _ in range(10):  # bursts, until one ended while a mirror was in flight
            bodies = await asyncio.gather(*(predict(gateway, rows) for rows in batches(8)))
            sent += len(bodies)
            if (outcomes(await shadow_samples(gateway), 2)["dropped"] or 0) > 0:
                break
        counted = outcomes(await shadow_samples(gateway), 2)
        assert (counted["dropped"] or 0) > 0
        assert sum(v or 0 for v in counted.values()) == sent  # every request counted once
        assert counted["error"] == 0


async def test_a_gateway_stopping_cancels_its_mirrors_in_flight(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with running_gateway(make_settings(tmp_path)) as gateway:
        await gateway.deploy("mlp", torchscript_bytes(tiny_mlp(seed=1)), mlp_meta())
        slow = torchscript_bytes(SlowMLP(rounds=400))  # a slow forward
        await gateway.deploy("mlp", slow, mlp_meta(), alias=None)
        await shadow(gateway, 2)
        await predict(gateway, batches(1)[0])
        mirror = gateway.services.shadow
        assert mirror.in_flight == 1
    assert mirror.in_flight == 0  # cancelled by the lifespan, before the backend closed
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING or r.exc_info]
