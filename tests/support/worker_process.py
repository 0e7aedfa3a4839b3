"""A real worker process (`maas worker`) and a WorkerPool connected to it, for tests."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import torch

from maas.dispatch.link import WorkerLink
from maas.dispatch.pool import WorkerPool
from maas.transport.messages import WorkerStatus
from maas.types import ArtifactFormat, LoadSpec, TensorSpec, VersionKey
from support.model_files import SlowMLP
from support.processes import Child, maas_worker
from support.waiting import until

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


async def heartbeats(pool: WorkerPool, count: int) -> None:
    """Until `count` more statuses of the (first) worker have arrived (its heartbeats)."""
    seen = [pool.links[0].status]

    def fresh() -> bool:
        if pool.links[0].status is not seen[-1]:
            seen.append(pool.links[0].status)
        return len(seen) > count

    await until(fresh, f"{count} heartbeats of {pool.links[0].name}")


def taken(status: WorkerStatus, key: VersionKey) -> int:
    """How many requests of `key` the worker has taken into batches: one is counted as its
    forward begins (its queue wait ends)."""
    stats = (s.telemetry.queue_wait.count for s in status.stats if s.key == str(key))
    return next(stats, 0)


async def until_worker(
    pool: WorkerPool, check: Callable[[WorkerStatus], bool], what: str, timeout_s: float = 30
) -> None:
    """Until the status the (first) worker gives when asked now satisfies `check`: what it is
    doing, a round trip after it does it, rather than at its next heartbeat."""
    deadline = time.monotonic() + timeout_s
    while True:
        await pool.refresh()
        status = pool.links[0].status
        if status is not None and check(status):
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened within {timeout_s:.0f} s: {what}: {status}")
        await asyncio.sleep(0.005)


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
