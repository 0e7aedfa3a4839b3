"""A gateway app run in-process (lifespan entered, httpx over ASGITransport) and test helpers."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx

from maas.app import BackendFactory, StartupHook, create_app
from maas.config import Settings

ADMIN_SECRET = "test-admin-secret-0123456789"
ADMIN = {"Authorization": f"Bearer {ADMIN_SECRET}"}


def make_settings(tmp_path: Path, database_url: str | None = None, **extra: object) -> Settings:
    return Settings(
        database_url=database_url or f"sqlite:///{tmp_path}/registry.db",
        artifact_dir=tmp_path / "artifacts",
        data_dir=tmp_path,
        bootstrap_admin_key=ADMIN_SECRET,
        torch_threads=1,
        **extra,  # type: ignore[arg-type]
    )


class Gateway:
    def __init__(self, client: httpx.AsyncClient, app: Any) -> None:
        self.client = client
        self.app = app

    @property
    def services(self) -> Any:
        return self.app.state.services

    async def create_model(self, name: str, description: str = "") -> httpx.Response:
        return await self.client.post(
            "/admin/models", json={"name": name, "description": description}, headers=ADMIN
        )

    async def upload(
        self, name: str, artifact: bytes, meta: dict[str, Any] | str, **headers: str
    ) -> httpx.Response:
        meta_text = meta if isinstance(meta, str) else json.dumps(meta)
        return await self.client.post(
            f"/admin/models/{name}/versions",
            files={"file": ("model.bin", artifact, "application/octet-stream")},
            data={"meta": meta_text},
            headers={**ADMIN, **headers},
        )

    async def wait_settled(self, name: str, version: int) -> dict[str, Any]:
        """Poll the version until its load finished one way or the other."""
        for _ in range(600):
            response = await self.client.get(
                f"/admin/models/{name}/versions/{version}", headers=ADMIN
            )
            body: dict[str, Any] = response.json()
            if body["status"] not in ("loading", "registered"):
                return body
            await asyncio.sleep(0.05)
        raise AssertionError(f"{name}@{version} still loading")

    async def wait_ready(self) -> httpx.Response:
        """Poll /readyz until it answers 200 (or give up after ~20 s and return the last answer)."""
        for _ in range(400):
            response = await self.client.get("/readyz")
            if response.status_code == 200:
                break
            await asyncio.sleep(0.05)
        return response

    async def deploy(
        self, name: str, artifact: bytes, meta: dict[str, Any], alias: str | None = "production"
    ) -> int:
        """Create (if needed), upload, wait until ready, and point `alias` at the version."""
        created = await self.create_model(name)
        assert created.status_code in (201, 409), created.text
        uploaded = await self.upload(name, artifact, meta)
        assert uploaded.status_code == 201, uploaded.text
        version: int = uploaded.json()["version"]
        settled = await self.wait_settled(name, version)
        assert settled["status"] == "ready", settled
        if alias is not None:
            response = await self.client.put(
                f"/admin/models/{name}/aliases/{alias}", json={"version": version}, headers=ADMIN
            )
            assert response.status_code == 200, response.text
        return version

    async def deploy_three_versions(self, name: str = "mlp") -> None:
        """`name`@1 (production), @2 (staging) and @3, whose artifact failed to load."""
        from support.model_files import failing_meta, mlp_meta, tiny_mlp, torchscript_bytes

        await self.deploy(name, torchscript_bytes(tiny_mlp(seed=1)), mlp_meta())
        await self.deploy(name, torchscript_bytes(tiny_mlp(seed=2)), mlp_meta(), alias="staging")
        broken = await self.upload(name, torchscript_bytes(tiny_mlp()), failing_meta())
        assert broken.status_code == 201, broken.text
        assert (await self.wait_settled(name, 3))["status"] == "failed"

    async def predict(self, path: str, body: Any, **headers: str) -> httpx.Response:
        if isinstance(body, bytes | str):
            return await self.client.post(
                path, content=body, headers={"Content-Type": "application/json", **headers}
            )
        return await self.client.post(path, json=body, headers=headers)


@contextlib.asynccontextmanager
async def running_gateway(
    settings: Settings,
    on_started: StartupHook | None = None,
    backend_factory: BackendFactory | None = None,
) -> AsyncIterator[Gateway]:
    if backend_factory is None:
        app = create_app(settings, on_started=on_started)
    else:
        app = create_app(settings, on_started=on_started, backend_factory=backend_factory)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://maas.test") as client:
            yield Gateway(client, app)
