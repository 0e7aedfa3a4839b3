"""The versions a worker serves, and their loads: the Load, Check and Unload messages, and the
artifact's chunks a load asks a gateway for.

A load runs on a thread, so the loop goes on serving the versions already loaded. It finds the
artifact where this host sees the gateway's path (one host, a shared volume), else in the
worker's cache (`maas.worker.cache`), filled by sha256 from the object store or, chunk by
chunk, from the gateway that asked; then `maas.worker.runtime` loads it (with torch, or ONNX
Runtime for an ONNX version), warms it up and replays its golden examples; a version of device
`auto` runs on the worker's device. Gateways asking for a version already loading share that
load, each answered with its own id. A check loads the same way and keeps nothing; an unload
fails the version's queued requests.

Torch is imported here only after the thread settings are in the environment.
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import itertools
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

from maas.errors import MaasError, ModelLoadError, Unavailable
from maas.store.sealing import ArtifactKey
from maas.transport import messages as msg
from maas.types import LoadSpec, VersionKey
from maas.worker.batcher import Batcher
from maas.worker.cache import ArtifactCache

if TYPE_CHECKING:
    from maas.worker.checking import Model

log = logging.getLogger(__name__)

FETCH_TIMEOUT_S = 30.0  # for one chunk of an artifact from the gateway


@dataclasses.dataclass(slots=True)
class LoadedVersion:
    model: Model
    batcher: Batcher


class Loader:
    """A worker's versions: `versions`, the loaded ones (the loop serves from this very dict),
    and `loading`, those on their way with the gateways waiting for each."""

    def __init__(
        self,
        *,
        worker_id: str,
        device: str,
        send: Callable[[bytes, msg.Reply], None],
        torch_threads: int | None = None,
        cache: ArtifactCache | None = None,
        artifact_key: ArtifactKey | None = None,
    ) -> None:
        """`send` answers a gateway; `torch_threads`, when given, is set at the first load."""
        self.worker_id = worker_id
        self.device = device
        self._send = send
        self._torch_threads = torch_threads
        self._cache = cache
        self._artifact_key = artifact_key  # opens sealed artifacts (maas.store.sealing)
        self._fetches: dict[int, asyncio.Future[tuple[msg.Chunk, bytes]]] = {}
        self._fetch_ids = itertools.count(1)
        self.versions: dict[VersionKey, LoadedVersion] = {}
        self.loading: dict[VersionKey, list[tuple[bytes, int]]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        """The loop the loads run on: the worker's, once it serves."""
        self._loop = loop

    # messages -------------------------------------------------------------------------------

    def on_load(self, identity: bytes, request: msg.Load) -> None:
        spec = request.spec
        if spec.key in self.versions:
            self._send(identity, msg.Done(request.id))
            return
        waiters = self.loading.get(spec.key)
        if waiters is not None:  # several gateways asked: one load answers them all
            waiters.append((identity, request.id))
            return
        self.loading[spec.key] = [(identity, request.id)]
        assert self._loop is not None
        load = self._load(spec, identity)
        task = self._loop.create_task(load, name=f"load {spec.key}")
        task.add_done_callback(_log_crash)

    def on_check(self, identity: bytes, request: msg.Check) -> None:
        assert self._loop is not None
        check = self._check(identity, request.id, request.spec)
        task = self._loop.create_task(check, name="check")
        task.add_done_callback(_log_crash)

    def on_unload(self, identity: bytes, request: msg.Unload) -> None:
        version = self.versions.pop(VersionKey(request.model, request.version), None)
        if version is not None:
            gone = Unavailable(f"{request.model}@{request.version} was unloaded")
            for item in version.batcher.drain():
                self._send(item.reply_to, msg.failure(item.request_id, gone))
        self._send(identity, msg.Done(request.id))

    def on_chunk(self, request: msg.Chunk, frames: list[Any]) -> None:
        fetch = self._fetches.get(request.id)
        if fetch is not None and not fetch.done():
            fetch.set_result((request, bytes(frames[0]) if frames else b""))

    # loading --------------------------------------------------------------------------------

    async def _load(self, spec: LoadSpec, identity: bytes) -> None:
        model, reply = await self._load_off_loop(spec, identity)
        if model is not None:
            gc.collect()
            gc.freeze()  # the model's objects leave every later collection (see maas.app)
            batcher = Batcher(spec)
            batcher.stats.mean_batch_s = model.warmup_batch_s or batcher.stats.mean_batch_s
            self.versions[spec.key] = LoadedVersion(model, batcher)
            log.info("worker %s loaded %s", self.worker_id, spec.key)
        for identity, request_id in self.loading.pop(spec.key, []):
            self._send(identity, msgspec.structs.replace(reply, id=request_id))

    async def _check(self, identity: bytes, request_id: int, spec: LoadSpec) -> None:
        model, reply = await self._load_off_loop(spec, identity)
        del model  # a check keeps nothing
        gc.collect()
        self._send(identity, msgspec.structs.replace(reply, id=request_id))

    async def _load_off_loop(
        self, spec: LoadSpec, identity: bytes
    ) -> tuple[Model | None, msg.Done | msg.Failed]:
        """Load `spec` on a thread (its artifact fetched from the gateway `identity` first when
        this host has no copy): the model and Done, or None and the failure (id 0: the caller
        answers each asker with its own id)."""
        try:
            spec = await self._artifact_here(spec, identity)
            return await asyncio.to_thread(self._load_blocking, spec), msg.Done(0)
        except MaasError as exc:
            return None, msg.failure(0, exc)
        except Exception as exc:
            return None, msg.failure(0, ModelLoadError(f"{type(exc).__name__}: {exc}"))

    async def _artifact_here(self, spec: LoadSpec, identity: bytes) -> LoadSpec:
        """`spec` naming a file on this host with the artifact: the gateway's path where this
        host sees it (one host, a shared volume), else this worker's cache, filled by sha256
        from the object store or the gateway that asked when it is not there yet."""
        if await asyncio.to_thread(Path(spec.path).is_file):
            return spec
        if self._cache is None:
            raise ModelLoadError(f"{spec.path} is not on this host and the worker has no cache")
        cached = await self._cache.obtain(
            spec.sha256, lambda o, n: self._ask(identity, spec.sha256, o, n)
        )
        return dataclasses.replace(spec, path=str(cached))

    async def _ask(
        self, identity: bytes, sha256: str, offset: int, length: int
    ) -> tuple[msg.Chunk, bytes]:
        assert self._loop is not None
        fetch_id = next(self._fetch_ids)
        future: asyncio.Future[tuple[msg.Chunk, bytes]] = self._loop.create_future()
        self._fetches[fetch_id] = future
        try:
            self._send(identity, msg.Fetch(fetch_id, sha256, offset, length))
            async with asyncio.timeout(FETCH_TIMEOUT_S):
                return await future
        except TimeoutError:
            raise ModelLoadError(
                f"the gateway did not send artifact {sha256[:12]} within {FETCH_TIMEOUT_S:.0f} s"
            ) from None
        finally:
            self._fetches.pop(fetch_id, None)

    def _load_blocking(self, spec: LoadSpec) -> Model:
        if self._torch_threads is not None:
            threads, self._torch_threads = self._torch_threads, None
            os.environ.setdefault("OMP_NUM_THREADS", str(threads))
            import torch

            torch.set_num_threads(threads)
        from maas.worker.runtime import load_model

        return load_model(spec, self._artifact_key, auto_device=self.device)


def _log_crash(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("worker task %s crashed", task.get_name(), exc_info=task.exception())
