"""The registry generation, and alias changes that return once every live gateway serves them.

Two gateways in this process share one SQLite registry, as gateways on two hosts would: no
datagrams between them, only the one-row generation poll and the `gateways` rows.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from maas.registry.records import Route
from maas.types import VersionKey
from support.inprocess_gateway import ADMIN, Gateway, make_settings, running_gateway
from support.model_files import mlp_meta, tiny_mlp, torchscript_bytes

ROW = {"instances": [[1.0, 2.0, 3.0, 4.0]]}


@contextlib.asynccontextmanager
async def two_gateways(tmp_path: Path, **extra: Any) -> AsyncIterator[tuple[Gateway, Gateway]]:
    settings = make_settings(tmp_path, **extra)
    async with running_gateway(settings) as a, running_gateway(settings) as b:
        yield a, b


async def _until_loaded(gateway: Gateway, *versions: int) -> None:
    """Each in-process gateway loads versions on its own backend (its own "workers"): a
    version ready in the registry may not be loaded on this one yet."""
    for _ in range(400):
        if all(gateway.services.backend.is_loaded(VersionKey("mlp", v)) for v in versions):
            return
        await asyncio.sleep(0.025)
    raise AssertionError(f"mlp@{versions} never loaded")


async def _generation(gateway: Gateway) -> int:
    response = await gateway.client.get("/admin/gateways", headers=ADMIN)
    assert response.status_code == 200, response.text
    generation: int = response.json()["generation"]
    return generation


async def _served_version(gateway: Gateway, ref: str = "mlp") -> int:
    response = await gateway.predict(f"/v1/models/{ref}:predict", ROW)
    assert response.status_code == 200, response.text
    version: int = response.json()["version"]
    return version


async def _promote(gateway: Gateway, version: int) -> dict[str, Any]:
    response = await gateway.client.post(
        "/admin/models/mlp/promote", json={"version": version}, headers=ADMIN
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_every_change_raises_the_generation_and_an_alias_answer_names_it(
    gateway: Gateway,
) -> None:
    start = await _generation(gateway)
    await gateway.create_model("mlp")
    assert await _generation(gateway) == start + 1
    await gateway.deploy("mlp", torchscript_bytes(tiny_mlp(seed=1)), mlp_meta())
    await gateway.deploy("mlp", torchscript_bytes(tiny_mlp(seed=2)), mlp_meta(), alias=None)
    moved = await _generation(gateway)
    assert moved > start + 1  # versions added, loading, ready, the alias set

    body = await _promote(gateway, 2)
    assert body["generation"] == moved + 1 == await _generation(gateway)
    assert body["propagated"] == {"gateways": 1, "confirmed": 1, "missing": []}
    assert body["routes"] == [{"version": 2, "weight": 100}]

    # A promotion that moves nothing records nothing and raises nothing.
    again = await _promote(gateway, 2)
    assert again["generation"] == body["generation"] == await _generation(gateway)
    history = await gateway.client.get(
        "/admin/models/mlp/aliases/production/history", headers=ADMIN
    )
    assert len(history.json()["history"]) == 2

    listed = (await gateway.client.get("/admin/gateways", headers=ADMIN)).json()["gateways"]
    assert len(listed) == 1
    assert listed[0]["generation"] == body["generation"]
    assert listed[0]["leader"] is False  # in-process models: no lease, it places alone


async def test_a_promotion_returns_once_the_other_gateway_serves_it(tmp_path: Path) -> None:
    async with two_gateways(tmp_path) as (a, b):
        await a.deploy("mlp", torchscript_bytes(tiny_mlp(seed=1)), mlp_meta())
        await a.deploy("mlp", torchscript_bytes(tiny_mlp(seed=2)), mlp_meta(), alias=None)
        await _until_loaded(b, 1, 2)
        for flip in range(12):
            target = 2 if flip % 2 == 0 else 1
            body = await _promote(a, target)
            assert body["propagated"] == {"gateways": 2, "confirmed": 2, "missing": []}
            # Served by the new target on the other gateway the moment the call returned.
            assert await _served_version(b) == target
            assert b.services.plane.served >= body["generation"]
        listed = (await b.client.get("/admin/gateways", headers=ADMIN)).json()
        assert len(listed["gateways"]) == 2
        assert {g["generation"] for g in listed["gateways"]} == {listed["generation"]}


async def test_a_gateway_that_does_not_confirm_is_named_and_the_call_returns(
    tmp_path: Path,
) -> None:
    async with two_gateways(tmp_path, propagation_timeout_ms=300) as (a, b):
        await a.deploy("mlp", torchscript_bytes(tiny_mlp(seed=1)), mlp_meta())
        await a.deploy("mlp", torchscript_bytes(tiny_mlp(seed=2)), mlp_meta(), alias=None)
        await _until_loaded(b, 1, 2)
        watch = next(t for t in b.services.plane._tasks if t.get_name() == "generation watch")
        watch.cancel()  # b still says it is alive, but no longer learns of changes
        await asyncio.gather(watch, return_exceptions=True)
        body = await _promote(a, 2)
        assert body["propagated"] == {
            "gateways": 2,
            "confirmed": 1,
            "missing": [b.services.plane.identity.id],
        }
        listed = (await a.client.get("/admin/gateways", headers=ADMIN)).json()
        behind = [g for g in listed["gateways"] if g["generation"] < body["generation"]]
        assert [g["id"] for g in behind] == [b.services.plane.identity.id]


async def test_a_model_created_elsewhere_is_served_within_the_poll(tmp_path: Path) -> None:
    async with two_gateways(tmp_path) as (a, b):
        assert (await b.predict("/v1/models/mlp:predict", ROW)).status_code == 404
        version = await a.deploy("mlp", torchscript_bytes(tiny_mlp(seed=1)), mlp_meta())
        # The alias change waited for b; b loads the version on its own backend, then serves.
        assert (await b.wait_ready()).status_code == 200
        assert await _served_version(b) == version


@pytest.mark.parametrize("path", ["/admin/gateways"])
async def test_gateways_needs_the_admin_scope(gateway: Gateway, path: str) -> None:
    assert (await gateway.client.get(path)).status_code == 401


async def test_an_upload_that_waited_returns_once_the_other_gateway_serves_it(
    tmp_path: Path,
) -> None:
    async with two_gateways(tmp_path) as (a, b):
        response = await a.client.post(
            "/admin/models/mlp/versions",
            params={"wait": "true", "create_model": "true"},
            files={"file": ("model.pt", torchscript_bytes(tiny_mlp(seed=1)))},
            data={"meta": json.dumps(mlp_meta())},
            headers=ADMIN,
        )
        assert response.status_code == 201, response.text
        assert response.json()["status"] == "ready"
        # The first ready version became production; b served that generation before the
        # answer, so a request by bare name there finds it (once b's own backend holds it).
        assert b.services.plane.served >= await a.services.registry.generation()
        assert b.services.router.snapshot.models["mlp"].aliases["production"] == (Route(1, 100),)
        await _until_loaded(b, 1)
        assert await _served_version(b) == 1
