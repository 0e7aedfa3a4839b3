"""The worker process's entry point (`maas worker`): thread settings first, then torch, then
the loop."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
from collections.abc import Callable
from pathlib import Path

from maas.store.sealing import ArtifactKey
from maas.transport.curve import DeploymentKeys
from maas.worker.cache import worker_cache
from maas.worker.loop import WorkerServer


def choose_device(index: int) -> str:
    """CUDA devices round-robin over local workers when there are any, else the CPU."""
    import torch

    if torch.cuda.is_available() and torch.cuda.device_count() > 0:
        return f"cuda:{index % torch.cuda.device_count()}"
    return "cpu"


def run_worker(
    *,
    endpoint: str,
    worker_id: str,
    index: int,
    device: str | None,
    threads: int,
    restarts: int,
    keys: DeploymentKeys | None = None,
    cache_dir: Path | None = None,
    artifact_key: ArtifactKey | None = None,
    artifact_url: str | None = None,
    on_serving: Callable[[WorkerServer], None] | None = None,
) -> None:
    """Process entry point (`maas worker`): thread settings first, then torch, then serve."""
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(threads)
    import torch

    torch.set_num_threads(threads)
    with contextlib.suppress(RuntimeError):  # settable once per process
        torch.set_num_interop_threads(1)
    gc.set_threshold(20_000, 20, 50)
    server = WorkerServer(
        endpoint=endpoint,
        worker_id=worker_id,
        device=device or choose_device(index),
        restarts=restarts,
        threads=threads,
        keys=keys,
        cache=worker_cache(cache_dir, artifact_key, artifact_url),
        artifact_key=artifact_key,
    )
    if on_serving is not None:
        on_serving(server)  # the caller's announcement, once device and threads are known
    asyncio.run(server.serve())
