"""Liveness, readiness, and a restart that brings serving versions back from the registry."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from maas.api.services import Services
from maas.config import Settings
from maas.types import VersionKey
from support.fake_gateway import fake_archive, fake_gateway, meta
from support.inprocess_gateway import ADMIN, Gateway, make_settings


@pytest.fixture
async def gateway(settings: Settings) -> AsyncIterator[Gateway]:
    # Health is the gateway's: a handler stands in for the model (`fake_gateway`).
    async with fake_gateway(settings) as gw:
        yield gw


async def test_health_and_readiness(gateway: Gateway) -> None:
    assert (await gateway.client.get("/healthz")).json() == {"status": "ok"}
    assert (await gateway.client.get("/readyz")).status_code == 200
    await gateway.deploy("mlp", fake_archive(), meta())
    assert (await gateway.client.get("/readyz")).status_code == 200
    # An aliased version that is not loaded makes the gateway not ready, and says why.
    await gateway.services.backend.unload(VersionKey("mlp", 1))
    response = await gateway.client.get("/readyz")
    assert response.status_code == 503
    assert "mlp/production -> version 1 is not loaded" in response.json()["reasons"]


async def test_not_ready_until_startup_hook_finishes(tmp_path: Path) -> None:
    import asyncio

    release = asyncio.Event()

    async def slow_hook(_: Services) -> None:
        await release.wait()

    async with fake_gateway(make_settings(tmp_path), on_started=slow_hook) as gw:
        pending = await gw.client.get("/readyz")
        assert pending.status_code == 503
        assert "demo models" in pending.json()["reasons"][0]
        release.set()
        for _ in range(100):
            if (await gw.client.get("/readyz")).status_code == 200:
                break
            await asyncio.sleep(0.01)
        assert (await gw.client.get("/readyz")).status_code == 200


async def test_restart_reloads_serving_versions(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    async with fake_gateway(settings) as gw:
        await gw.deploy("mlp", fake_archive(), meta())
        await gw.create_model("other")
        await gw.upload("other", fake_archive(), meta(load=False))
    async with fake_gateway(settings) as gw:  # a new backend: it holds nothing
        # Placement loads what was serving in the background; ready once it is loaded.
        assert (await gw.wait_ready()).status_code == 200
        response = await gw.predict("/v1/models/mlp:predict", {"instances": [[1, 2, 3, 4]]})
        assert response.status_code == 200
        other = await gw.client.get("/admin/models/other/versions/1", headers=ADMIN)
        assert other.json()["status"] == "registered"
        assert list(gw.services.backend.loaded) == [VersionKey("mlp", 1)]  # and only it
        assert (await gw.client.get("/readyz")).status_code == 200


async def test_unknown_route_and_method_are_json(gateway: Gateway) -> None:
    missing = await gateway.client.get("/nope")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "not_found"
    wrong = await gateway.client.get("/v1/models/mlp:predict")
    assert wrong.status_code == 405
    assert wrong.json()["error"]["code"] == "method_not_allowed"


async def test_a_draining_gateway_is_not_ready_and_closes_each_connection(
    gateway: Gateway,
) -> None:
    assert (await gateway.wait_ready()).status_code == 200
    gateway.app.drain.begin()
    ready = await gateway.client.get("/readyz")
    assert ready.status_code == 503
    assert "draining: this gateway process is stopping" in ready.json()["reasons"]
    assert ready.headers["connection"] == "close"
    models = await gateway.client.get("/v1/models")
    assert models.status_code == 200  # still answered, on its way out
    assert models.headers["connection"] == "close"
