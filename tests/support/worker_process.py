"""A real worker process (`maas worker`) and a WorkerPool connected to it, for tests."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import torch

from maas.dispatch.link import WorkerLink
from maas.dispatch.pool import WorkerPool
from maas.types import ArtifactFormat, LoadSpec, TensorSpec, VersionKey
from support.model_files import SlowMLP
from support.processes import Child, maas_worker

__all__ = ["SlowMLP"]


def write_artifact(directory: Path, module: torch.nn.Module) -> tuple[Path, str]:
    buffer = io.BytesIO()
    torch.jit.save(torch.jit.script(module.eval()), buffer)
    data = buffer.getvalue()
    digest = hashlib.sha256(data).hexdigest()
    path = directory / f"{digest}.pt"
    path.write_bytes(data)
    return path, digest


def load_spec(path: Path, digest: str, name: str = "m", **batching: Any) -> LoadSpec:
    return LoadSpec(
        key=VersionKey(name, 1),
        path=str(path),
        sha256=digest,
        format=ArtifactFormat.TORCHSCRIPT,
        inputs=(TensorSpec("x", "float32", (4,)),),
        outputs=(TensorSpec("y", "float32", (3,)),),
        device="cpu",
        **batching,
    )


@contextlib.contextmanager
def worker_process(endpoint: str, worker_id: str = "w0") -> Iterator[Child]:
    """`maas worker` listening on `endpoint` (`support.processes.maas_worker`)."""
    with maas_worker(endpoint, worker_id) as process:
        yield process


async def wait_healthy(pool: WorkerPool, healthy: bool = True, timeout_s: float = 60) -> None:
    for _ in range(int(timeout_s / 0.02)):
        if all(link.healthy == healthy for link in pool.links):
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"workers did not become healthy={healthy}: {pool.describe()}")


@contextlib.asynccontextmanager
async def connected_pool(
    endpoints: list[str], booted: list[WorkerLink] | None = None
) -> AsyncIterator[WorkerPool]:
    async def on_boot(link: WorkerLink) -> None:
        if booted is not None:
            booted.append(link)

    pool = WorkerPool(endpoints, on_worker_boot=on_boot)
    await pool.start()
    try:
        yield pool
    finally:
        await pool.close()
