"""Putting versions onto the backend and taking them off, keeping the registry's status true.

`loading` → `ready` on success; `failed` with the error kept on any failure, and nothing else
stops serving. Every load runs as a task this object owns; failures are logged, never lost.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable

from maas.artifacts import ArtifactStore
from maas.errors import Conflict, MaasError, WorkerCrashedLoading
from maas.registry.records import VersionRecord
from maas.registry.service import Registry
from maas.types import InferenceBackend, LoadSpec, VersionKey, VersionStatus

log = logging.getLogger(__name__)

# A version whose load killed a worker this many times is marked failed, not tried again.
CRASHES_BEFORE_FAILED = 2

_LOADABLE = frozenset(
    {
        VersionStatus.REGISTERED,
        VersionStatus.LOADING,
        VersionStatus.READY,
        VersionStatus.FAILED,
        VersionStatus.UNLOADED,
    }
)


class Deployer:
    def __init__(self, registry: Registry, backend: InferenceBackend, store: ArtifactStore) -> None:
        self._registry = registry
        self._backend = backend
        self._store = store
        self._tasks: dict[VersionKey, asyncio.Task[None]] = {}
        # The worker deaths seen while loading each version (a death is counted once, however
        # many load calls it ended).
        self._crashes: dict[VersionKey, set[str]] = defaultdict(set)

    async def start_load(self, key: VersionKey) -> VersionRecord:
        """Mark the version `loading` and load it in the background; returns the new record."""
        record = await self._registry.set_status(key, VersionStatus.LOADING, only_from=_LOADABLE)
        if record is None:
            current = await self._registry.get_version(key)
            raise Conflict(f"{key} is {current.status.value} and cannot be loaded")
        self._spawn(record)
        return record

    def _spawn(self, record: VersionRecord) -> None:
        previous = self._tasks.get(record.key)
        if previous is not None and not previous.done():
            return  # a load of this version is already running
        task = asyncio.create_task(self._load(record), name=f"load {record.key}")
        self._tasks[record.key] = task
        task.add_done_callback(self._forget)

    def _forget(self, task: asyncio.Task[None]) -> None:
        for key, owned in list(self._tasks.items()):
            if owned is task:
                del self._tasks[key]
        if not task.cancelled() and task.exception() is not None:
            log.error("load task %s crashed", task.get_name(), exc_info=task.exception())

    async def _load(self, record: VersionRecord) -> None:
        spec = record.load_spec(str(self._store.path_for(record.sha256)))
        try:
            await self._backend.load(spec)
        except WorkerCrashedLoading as exc:
            # The worker comes back and `resync` loads the version again, unless this was
            # one death too many.
            await self._note_crash(record.key, exc)
            return
        except MaasError as exc:
            log.warning("loading %s failed: %s", record.key, exc.message)
            await self._registry.set_status(
                record.key, VersionStatus.FAILED, load_error=exc.message
            )
            return
        except Exception as exc:
            message = f"{type(exc).__name__}: {exc}"
            log.exception("loading %s failed unexpectedly", record.key)
            await self._registry.set_status(record.key, VersionStatus.FAILED, load_error=message)
            return
        # Another gateway may have loaded the same version meanwhile and marked it ready
        # already: that is success too. Only an unload or archive meanwhile undoes the load.
        done = await self._registry.set_status(
            record.key,
            VersionStatus.READY,
            only_from=frozenset({VersionStatus.LOADING, VersionStatus.READY}),
        )
        if done is None:
            current = await self._registry.get_version(record.key)
            if current.status in (VersionStatus.UNLOADED, VersionStatus.ARCHIVED):
                await self._backend.unload(record.key)

    async def unload(self, key: VersionKey) -> VersionRecord:
        record = await self._registry.get_version(key)
        if record.status is VersionStatus.ARCHIVED:
            return record
        await self._backend.unload(key)
        updated = await self._registry.set_status(key, VersionStatus.UNLOADED)
        assert updated is not None
        return updated

    async def restore(self) -> None:
        """At start: load again every version the registry says should be serving."""
        for record in await self._registry.versions_to_restore():
            await self._registry.set_status(record.key, VersionStatus.LOADING)
            self._spawn(record)

    async def resync(
        self,
        load: Callable[[LoadSpec], Awaitable[None]],
        worker: str,
        belongs: Callable[[LoadSpec], bool] = lambda spec: True,
    ) -> None:
        """A worker (re)started: load onto it every version the registry says is serving or
        being loaded; a version whose load keeps killing the worker ends `failed`."""
        # `loading` ones too: a load that started before this worker answered did not reach it.
        for record in await self._registry.versions_to_restore():
            spec = record.load_spec(str(self._store.path_for(record.sha256)))
            if not belongs(spec):  # `replicas` keeps it on other workers
                continue
            try:
                await load(spec)
            except WorkerCrashedLoading as exc:
                await self._note_crash(record.key, exc)
                return  # the worker is gone; its next start syncs again
            except MaasError as exc:
                log.warning("reloading %s on worker %s failed: %s", record.key, worker, exc.message)
                continue
            if record.status is VersionStatus.LOADING:
                # The load that began it may have died with a worker; this one finished it.
                await self._registry.set_status(
                    record.key, VersionStatus.READY, only_from=frozenset({VersionStatus.LOADING})
                )

    async def _note_crash(self, key: VersionKey, exc: WorkerCrashedLoading) -> None:
        """A worker died while loading `key`: after CRASHES_BEFORE_FAILED deaths the version
        is marked failed, so one bad artifact cannot keep a worker in a crash loop."""
        deaths = self._crashes[key]
        deaths.add(exc.death)
        if len(deaths) < CRASHES_BEFORE_FAILED:
            log.warning("%s; loading it again once the worker is back", exc.message)
            return
        log.error("%s keeps killing its worker; marking it failed", key)
        await self._registry.set_status(
            key,
            VersionStatus.FAILED,
            load_error=f"{exc.message} ({len(deaths)} times)",
            only_from=frozenset({VersionStatus.LOADING, VersionStatus.READY}),
        )

    async def wait_idle(self) -> None:
        while self._tasks:
            await asyncio.gather(*list(self._tasks.values()), return_exceptions=True)

    async def close(self) -> None:
        for task in list(self._tasks.values()):
            task.cancel()
        await asyncio.gather(*list(self._tasks.values()), return_exceptions=True)
