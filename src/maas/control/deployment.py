"""Putting versions onto workers and taking them off, so the workers match the registry.

The registry holds what should be: a version `loading` or `ready` should be on the workers
placement chose for it, any other version on none. The API only writes that (`start_load`,
`unload`); the gateway that leads placement (`maas.control.leader`) makes the workers match, in
`reconcile`, whenever the routing table moves, a worker (re)starts or goes away, and every
second as a backstop. It touches only the workers of the sets it leads (`Leadership.led`), each
set planned on its own (`replicas` counts per worker set), and checks that it still leads a
worker's set right before each load or unload. Nothing is lost when the leader dies: the next
one finds the same registry and the same workers, and a worker asked to load what it is loading
already just answers both requests.

`loading` → `ready` once every worker chosen for the version in one worker set holds it; `failed`
with the error kept when a load fails, or after a version's load killed a worker
CRASHES_BEFORE_FAILED times.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict

from maas.control import placement
from maas.control.leader import Leadership
from maas.control.routing import Router
from maas.dispatch.backend import InferenceBackend
from maas.errors import (
    Conflict,
    MaasError,
    RegistryUnavailable,
    Unavailable,
    WorkerCrashedLoading,
)
from maas.registry.records import VersionRecord
from maas.registry.service import Registry
from maas.store.base import ArtifactStore
from maas.types import VersionKey, VersionStatus, WorkerState

log = logging.getLogger(__name__)

# A version whose load killed a worker this many times is marked failed, not tried again.
CRASHES_BEFORE_FAILED = 2
RECONCILE_S = 1.0

_LOADABLE = frozenset(
    {
        VersionStatus.REGISTERED,
        VersionStatus.LOADING,
        VersionStatus.READY,
        VersionStatus.FAILED,
        VersionStatus.UNLOADED,
    }
)
_SERVING = frozenset({VersionStatus.LOADING, VersionStatus.READY})
_SETTLED_POLL_S = 0.05
_CLOSE_S = 5.0


class Deployer:
    def __init__(
        self,
        registry: Registry,
        backend: InferenceBackend,
        store: ArtifactStore,
        router: Router,
        leadership: Leadership,
    ) -> None:
        self._registry = registry
        self._backend = backend
        self._store = store
        self._router = router
        self._leadership = leadership
        self._wake = asyncio.Event()
        self._tasks: dict[tuple[str, str], asyncio.Task[None]] = {}
        # The worker deaths seen while loading each version (a death is counted once).
        self._crashes: dict[VersionKey, set[str]] = defaultdict(set)
        # (worker boot, version) loads that failed: not tried again on that same process.
        self._failed_on: set[tuple[str, str]] = set()
        self._loop_task: asyncio.Task[None] | None = None

    # what the API asks ----------------------------------------------------------------------

    async def start_load(self, key: VersionKey) -> VersionRecord:
        """Mark the version `loading`; the leader loads it. Returns the new record."""
        record = await self._registry.set_status(key, VersionStatus.LOADING, only_from=_LOADABLE)
        if record is None:
            current = await self._registry.get_version(key)
            raise Conflict(f"{key} is {current.status.value} and cannot be loaded")
        self._crashes.pop(key, None)
        self.wake()
        return record

    async def wait_settled(self, key: VersionKey, timeout_s: float = 600.0) -> VersionRecord:
        """The version once its load finished one way or the other (whoever loads it)."""
        deadline = time.monotonic() + timeout_s
        while True:
            record = await self._registry.get_version(key)
            if record.status not in (VersionStatus.LOADING, VersionStatus.REGISTERED):
                return record
            if time.monotonic() > deadline:
                return record
            await asyncio.sleep(_SETTLED_POLL_S)

    # making the workers match ---------------------------------------------------------------

    def wake(self) -> None:
        self._wake.set()

    def start(self) -> None:
        self._leadership.on_elected(self.wake)
        self._loop_task = asyncio.create_task(self._run(), name="placement")

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(RECONCILE_S):  # not wait_for: it can lose a cancel
                    await self._wake.wait()
            self._wake.clear()
            if not self._leadership.is_leader:
                continue
            try:
                await self.reconcile()
            except RegistryUnavailable as exc:
                log.debug("placement waits for the registry: %s", exc.message)
            except Exception:
                log.exception("placement failed; trying again")

    async def reconcile(self) -> None:
        snapshot = await self._router.current()
        records = sorted(
            (v for entry in snapshot.models.values() for v in entry.versions.values()),
            key=lambda v: str(v.key),
        )
        # Only the workers of the sets this gateway leads, each set planned on its own: a
        # version gets its replicas in every set, and no worker hears from two leaders.
        for workers in self._leadership.led(self._backend.workers()):
            await self._reconcile_set(records, workers)

    async def _reconcile_set(
        self, records: list[VersionRecord], workers: list[WorkerState]
    ) -> None:
        held = {w.name: w.versions for w in workers if w.healthy}
        boots = {w.name: w.boot for w in workers}
        # Versions already serving first: a restarted worker gets back what was known good
        # before it tries what is new (which might be what killed it).
        serving = sorted(
            (v for v in records if v.status in _SERVING),
            key=lambda v: v.status is not VersionStatus.READY,
        )
        chosen = placement.plan(
            [(str(v.key), v.replicas) for v in serving],
            workers,
            {str(v.key): v.device for v in serving},
            {str(v.key): v.size for v in serving},
        )
        for record in serving:
            key = str(record.key)
            wanted = chosen[key]
            for worker in wanted:
                if key not in held[worker] and (boots[worker], key) not in self._failed_on:
                    self._spawn(worker, key, self._load(worker, boots[worker], record))
            if not wanted or not all(key in held[w] for w in wanted):
                continue
            if record.status is VersionStatus.LOADING:
                await self._registry.set_status(
                    record.key, VersionStatus.READY, only_from=frozenset({VersionStatus.LOADING})
                )
            for worker, versions in held.items():  # replicas left where placement moved off
                if key in versions and worker not in wanted:
                    self._spawn(worker, key, self._unload(worker, record.key))
        for record in records:
            if record.status in _SERVING:
                continue
            key = str(record.key)
            for worker, versions in held.items():
                if key in versions:
                    self._spawn(worker, key, self._unload(worker, record.key))

    def _spawn(self, worker: str, key: str, work: object) -> None:
        assert asyncio.iscoroutine(work)
        if not self._leadership.leads(worker):
            # The lease lapsed since the plan (the registry answered slowly, another gateway
            # took over): the new leader does it.
            work.close()
            return
        if any(busy == worker for busy, _ in self._tasks):
            # One operation per worker at a time: if a load kills it, that load is the one to
            # blame, and memory never holds two half-loaded models. The next pass goes on.
            work.close()
            return
        task = asyncio.create_task(work, name=f"{worker}: {key}")
        self._tasks[(worker, key)] = task

        def done(t: asyncio.Task[None]) -> None:
            self._tasks.pop((worker, key), None)
            if not t.cancelled() and t.exception() is not None:
                log.error("placement task %s failed", t.get_name(), exc_info=t.exception())
            self.wake()  # look again: the version may be ready everywhere now

        task.add_done_callback(done)

    async def _load(self, worker: str, boot: str, record: VersionRecord) -> None:
        spec = record.load_spec(self._store.location(record.sha256))
        try:
            await self._backend.load_on(worker, spec)
        except WorkerCrashedLoading as exc:
            await self._note_crash(record.key, exc)
        except Unavailable as exc:
            # The worker left between the plan and the load (let go by the pool): not the
            # version's fault; the next pass plans without it.
            log.info("loading %s on %s skipped: %s", record.key, worker, exc.message)
        except MaasError as exc:
            self._failed_on.add((boot, str(record.key)))
            await self._load_failed(record, worker, exc.message)
        except Exception as exc:
            self._failed_on.add((boot, str(record.key)))
            log.exception("loading %s on %s failed unexpectedly", record.key, worker)
            await self._load_failed(record, worker, f"{type(exc).__name__}: {exc}")

    async def _load_failed(self, record: VersionRecord, worker: str, message: str) -> None:
        log.warning("loading %s on worker %s failed: %s", record.key, worker, message)
        # A version being loaded fails; one already serving stays ready on its other workers.
        await self._registry.set_status(
            record.key,
            VersionStatus.FAILED,
            load_error=message,
            only_from=frozenset({VersionStatus.LOADING}),
        )

    async def _unload(self, worker: str, key: VersionKey) -> None:
        try:
            await self._backend.unload_on(worker, key)
        except MaasError as exc:
            log.warning("unloading %s from worker %s failed: %s", key, worker, exc.message)

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
            only_from=_SERVING,
        )

    async def wait_idle(self) -> None:
        """Until no load or unload this gateway started is running (tests)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks.values()), return_exceptions=True)

    async def close(self) -> None:
        tasks = [*self._tasks.values(), *([self._loop_task] if self._loop_task else [])]
        for task in tasks:
            task.cancel()
        if tasks:  # bounded: a stop must never hang on a task that missed its cancel
            _, stuck = await asyncio.wait(tasks, timeout=_CLOSE_S)
            for task in stuck:
                log.error("%s did not stop when cancelled", task.get_name())
