"""An inference backend that runs models in this process, on threads off the event loop.

It stands behind `maas.types.InferenceBackend`, the seam the worker-process pool will fill;
torch is imported only when the first model loads.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from maas.errors import Unavailable
from maas.telemetry import BackendTelemetry, VersionTelemetry, WorkerHealth
from maas.types import LoadSpec, VersionKey, WorkerState

WORKER_NAME = "inprocess"

if TYPE_CHECKING:
    from maas.workers.runtime import LoadedModel


class InProcessBackend:
    enforces_deadlines = False

    def __init__(self, *, torch_threads: int) -> None:
        self._torch_threads = torch_threads
        self._models: dict[VersionKey, LoadedModel] = {}
        self._telemetry: dict[VersionKey, VersionTelemetry] = {}
        # One thread runs forwards (torch parallelises inside an op); loads get their own so a
        # slow load never stalls traffic to versions already serving.
        self._run_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="maas-infer")
        self._load_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="maas-load")
        self._torch_ready = False

    def _init_torch(self) -> None:
        if self._torch_ready:
            return
        os.environ.setdefault("OMP_NUM_THREADS", str(self._torch_threads))
        import torch

        torch.set_num_threads(self._torch_threads)
        self._torch_ready = True

    def _load_blocking(self, spec: LoadSpec) -> LoadedModel:
        self._init_torch()
        from maas.workers.runtime import load_model

        return load_model(spec)

    async def start(self) -> None:
        return None

    async def load(self, spec: LoadSpec) -> None:
        loop = asyncio.get_running_loop()
        model = await loop.run_in_executor(self._load_pool, self._load_blocking, spec)
        self._models[spec.key] = model
        self._telemetry[spec.key] = VersionTelemetry()

    async def check(self, spec: LoadSpec) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._load_pool, self._load_blocking, spec)

    async def unload(self, key: VersionKey) -> None:
        self._models.pop(key, None)
        self._telemetry.pop(key, None)

    def is_loaded(self, key: VersionKey) -> bool:
        return key in self._models

    def loaded(self) -> list[VersionKey]:
        return list(self._models)

    def workers(self) -> list[WorkerState]:
        return [WorkerState(WORKER_NAME, True, frozenset(str(k) for k in self._models))]

    async def load_on(self, worker: str, spec: LoadSpec) -> None:
        await self.load(spec)

    async def unload_on(self, worker: str, key: VersionKey) -> None:
        await self.unload(key)

    async def infer(
        self, key: VersionKey, inputs: list[Any], *, timeout_s: float | None = None
    ) -> list[Any]:
        model = self._models.get(key)
        if model is None:
            raise Unavailable(f"{key} is not loaded on any worker")
        telemetry = self._telemetry[key]
        queued = time.perf_counter()

        def run() -> list[Any]:
            started = time.perf_counter()
            try:
                return model.run(inputs)
            finally:
                telemetry.queue_wait.observe(started - queued)
                telemetry.inference.observe(time.perf_counter() - started)
                telemetry.batch_size.observe(len(inputs[0]) if inputs else 0)

        return await asyncio.get_running_loop().run_in_executor(self._run_pool, run)

    def telemetry(self) -> BackendTelemetry:
        return BackendTelemetry(
            workers=[WorkerHealth(WORKER_NAME, True, 0)],
            versions={str(key): t for key, t in self._telemetry.items()},
        )

    def describe(self) -> list[dict[str, Any]]:
        return [
            {
                "id": WORKER_NAME,
                "pid": os.getpid(),
                "host": socket.gethostname(),
                "device": "cpu",
                "healthy": True,
                "queue_depth": 0,
                "versions": [str(k) for k in self._models],
                "restarts": 0,
            }
        ]

    async def close(self) -> None:
        self._models.clear()
        self._run_pool.shutdown(wait=False, cancel_futures=True)
        self._load_pool.shutdown(wait=False, cancel_futures=True)
