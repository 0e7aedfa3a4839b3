"""A gateway over a `FakeBackend` (`maas.dispatch.fake`): the HTTP, serving and control layers
whole, with no torch and no worker, for tests in which the model itself is incidental."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from maas.app import StartupHook
from maas.config import Settings
from maas.dispatch.fake import FakeBackend, FakeCall, Handler, LoadHook, fake_archive
from maas.errors import ModelLoadError
from maas.types import LoadSpec
from support.inprocess_gateway import Gateway, running_gateway

__all__ = [
    "deploy_three_versions",
    "fake_archive",
    "fake_gateway",
    "halve",
    "loads_as_halve",
    "meta",
]


def meta(**extra: Any) -> dict[str, Any]:
    """The meta of a version declared as `artifacts.mlp_meta()` declares one (4 numbers in, 3
    out), for `fake_archive()`."""
    out: dict[str, Any] = {
        "format": "torchscript",
        "inputs": [{"name": "x", "dtype": "float32", "shape": [4]}],
        "outputs": [{"name": "y", "dtype": "float32", "shape": [3]}],
        "batching": {"max_batch_size": 8, "max_delay_ms": 2, "max_queue": 64},
    }
    out.update(extra)
    return out


def halve(call: FakeCall) -> list[Any]:
    """What a model `meta()` declares answers here: the first three numbers, halved."""
    (x,) = call.inputs
    return [x[:, :3] / 2]


def loads_as_halve(spec: LoadSpec) -> None:
    """The check a worker's load makes, for a model that is `halve`: a version whose meta
    declares another signature fails to load (an `on_load`)."""
    declared = [(t.dtype, t.shape) for t in (*spec.inputs, *spec.outputs)]
    if declared != [("float32", (4,)), ("float32", (3,))]:
        raise ModelLoadError(f"the model takes float32[4] to float32[3], meta says {declared}")


async def deploy_three_versions(gateway: Gateway, name: str = "mlp") -> None:
    """`Gateway.deploy_three_versions` for a gateway loading with `loads_as_halve`: `name`@1
    (production), @2 (staging) and @3, whose load failed."""
    await gateway.deploy(name, fake_archive(tag="1"), meta())
    await gateway.deploy(name, fake_archive(tag="2"), meta(), alias="staging")
    broken = meta()
    broken["outputs"][0]["shape"] = [7]
    uploaded = await gateway.upload(name, fake_archive(tag="3"), broken)
    assert uploaded.status_code == 201, uploaded.text
    assert (await gateway.wait_settled(name, 3))["status"] == "failed"


@contextlib.asynccontextmanager
async def fake_gateway(
    settings: Settings,
    handler: Handler = halve,
    *,
    on_load: LoadHook | None = None,
    on_started: StartupHook | None = None,
) -> AsyncIterator[Gateway]:
    """A running gateway whose backend is `FakeBackend(handler)`: `services.backend`."""
    backend = FakeBackend(handler, on_load=on_load)
    async with running_gateway(
        settings, on_started=on_started, backend_factory=lambda _: backend
    ) as gateway:
        yield gateway
