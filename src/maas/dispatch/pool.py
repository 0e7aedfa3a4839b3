"""The gateway's side of the workers: an `InferenceBackend` that talks to worker processes.

One link per worker (`maas.dispatch.link`, over a channel of `maas.dispatch.channels`: a Unix
stream socket to a worker on this host, ZeroMQ to one elsewhere or in this process); which
workers there are and whether they answer is `maas.dispatch.membership`'s, and the artifacts
workers fetch come from `maas.dispatch.artifacts`. This is the facade that routes the calls:
an inference goes to the least busy worker holding the version, and is retried once on another
one when its worker is lost mid-call.

No torch here: tensors arrive as numpy arrays and leave as raw frames. The channels are
non-blocking sockets read from the event loop's `add_reader`: zmq.asyncio's futures cost more
per message than the rest of the hop.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import Awaitable
from typing import Any, Protocol

import zmq

from maas.dispatch.artifacts import ArtifactSource, send_artifact
from maas.dispatch.link import WorkerLink
from maas.dispatch.membership import DEAD_AFTER_S, BootHook, Membership
from maas.errors import ModelLoadError, Unavailable, WorkerCrashedLoading, WorkerLost
from maas.transport import messages as msg
from maas.transport.curve import DeploymentKeys
from maas.transport.telemetry import BackendTelemetry
from maas.transport.version import PROTOCOL
from maas.types import LoadSpec, Timing, VersionKey, WorkerState

log = logging.getLogger(__name__)

_NO_DEADLINE_S = 3600.0


class LocalWorker(Protocol):
    """A worker this pool runs itself (the in-process one): started before the pool connects,
    stopped after it closes. Both calls block, so the pool makes them off the loop."""

    context: zmq.Context[zmq.Socket[bytes]]
    endpoint: str

    def start(self) -> None: ...

    def stop(self) -> None: ...


class WorkerPool:
    enforces_deadlines = True

    def __init__(
        self,
        endpoints: list[str],
        *,
        on_worker_boot: BootHook | None = None,
        local: LocalWorker | None = None,
        keys: DeploymentKeys | None = None,
        artifacts: ArtifactSource | None = None,
    ) -> None:
        """`local`: a worker to run alongside (its `inproc://` endpoint is added to `endpoints`
        and its context shared). `artifacts`: where workers that fetch an artifact (`Fetch`)
        get it from."""
        self._local = local
        self._artifacts = artifacts
        self._endpoints = [*endpoints, local.endpoint] if local else endpoints
        self._context: zmq.Context[zmq.Socket[bytes]] = local.context if local else zmq.Context()
        self._members = Membership(self._context, keys, own=self._own, on_fetch=self._on_fetch)
        self._members.on_worker_boot = on_worker_boot
        # The members' own list, changed in place: routing reads it without a hop.
        self._links = self._members.links
        self._ids = itertools.count(1)
        self._tasks: set[asyncio.Task[None]] = set()

    # life cycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        if self._local is not None:
            await asyncio.to_thread(self._local.start)
        for endpoint in self._endpoints:
            self._members.open(endpoint)
        self._own(self._members.heartbeat(), "heartbeat")
        await self._members.hear_from_every_worker(DEAD_AFTER_S)

    @property
    def runs_local(self) -> bool:
        return self._local is not None

    @property
    def endpoints(self) -> list[str]:
        return self._members.endpoints

    @property
    def on_worker_boot(self) -> BootHook | None:
        return self._members.on_worker_boot

    @on_worker_boot.setter
    def on_worker_boot(self, hook: BootHook | None) -> None:
        self._members.on_worker_boot = hook

    def connect(self, endpoint: str) -> None:
        """Start using the worker at `endpoint` (one that announced itself); its first
        heartbeat makes it healthy and wakes placement."""
        self._members.connect(endpoint)

    def disconnect(self, endpoint: str) -> None:
        """Stop using the worker at `endpoint` (gone for good): its calls fail over."""
        self._members.disconnect(endpoint)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._members.close()
        if self._local is not None:
            await asyncio.to_thread(self._local.stop)  # ends the shared context too
        else:
            self._context.term()

    async def refresh(self, timeout_s: float = 0.5) -> None:
        """Ask every healthy worker for its figures now, and wait (up to `timeout_s`) for the
        answers: what a scrape shows then includes the last request, not the last heartbeat."""
        calls = [
            link.call(msg.Ping(next(self._ids), PROTOCOL)) for link in self._links if link.healthy
        ]
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                await asyncio.gather(*calls, return_exceptions=True)

    def _own(self, coro: Awaitable[None], name: str) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        task.set_name(name)
        self._tasks.add(task)

        def done(t: asyncio.Task[None]) -> None:
            self._tasks.discard(t)
            if not t.cancelled() and t.exception() is not None:
                log.error("worker pool task %r failed", name, exc_info=t.exception())

        task.add_done_callback(done)

    def _on_fetch(self, link: WorkerLink, fetch: msg.Fetch) -> None:
        self._own(send_artifact(link, fetch, self._artifacts), f"artifact to {link.name}")

    # InferenceBackend -----------------------------------------------------------------------

    async def load(self, spec: LoadSpec) -> None:
        """Load on every healthy worker; fails if any of them cannot. Which workers a version
        belongs on is placement's business (`maas.control.placement`, through `load_on`)."""
        await self._members.wait_for_a_worker()
        targets = [link for link in self._links if link.healthy]
        if not targets:
            raise ModelLoadError("no healthy worker to load it on")
        await asyncio.gather(*(self._load_on_link(link, spec) for link in targets))

    async def _load_on_link(self, link: WorkerLink, spec: LoadSpec) -> None:
        boot = link.status.boot if link.status else link.endpoint
        try:
            reply, _ = await link.call(msg.Load(next(self._ids), spec))
        except WorkerLost:
            raise WorkerCrashedLoading(
                f"worker {link.name} died while loading {spec.key}", death=f"{link.name}:{boot}"
            ) from None
        if isinstance(reply, msg.Failed):
            raise ModelLoadError(reply.message)
        link.mark_loaded(str(spec.key))

    async def check(self, spec: LoadSpec) -> None:
        """Trial-load `spec` on one healthy worker, which keeps nothing; ModelLoadError with the
        cause if it cannot load (also when the trial killed the worker)."""
        await self._members.wait_for_a_worker()
        healthy = [link for link in self._links if link.healthy]
        if not healthy:
            raise Unavailable("no healthy worker to check the artifact on; try again shortly")
        link = min(healthy, key=lambda lk: lk.status.queue_depth if lk.status else 0)
        try:
            reply, _ = await link.call(msg.Check(next(self._ids), spec))
        except WorkerLost:
            raise ModelLoadError(
                f"loading the artifact killed worker {link.name} (it is being restarted); "
                "nothing was registered"
            ) from None
        if isinstance(reply, msg.Failed):
            raise ModelLoadError(reply.message)

    def workers(self) -> list[WorkerState]:
        return self._members.workers()

    def _link(self, worker: str) -> WorkerLink:
        for link in self._links:
            if link.name == worker:
                return link
        raise Unavailable(f"no worker named {worker}")

    async def load_on(self, worker: str, spec: LoadSpec) -> None:
        await self._load_on_link(self._link(worker), spec)

    async def unload_on(self, worker: str, key: VersionKey) -> None:
        link = self._link(worker)
        await link.call(msg.Unload(next(self._ids), key.model, key.version))
        link.mark_unloaded(str(key))

    async def unload(self, key: VersionKey) -> None:
        calls = [
            link.call(msg.Unload(next(self._ids), key.model, key.version))
            for link in self._links
            if link.healthy
        ]
        await asyncio.gather(*calls, return_exceptions=True)
        for link in self._links:
            link.mark_unloaded(str(key))

    def is_loaded(self, key: VersionKey) -> bool:
        name = str(key)
        return any(link.holds(name) for link in self._links)

    async def infer(
        self,
        key: VersionKey,
        inputs: list[Any],
        *,
        timeout_s: float | None = None,
        timing: Timing | None = None,
    ) -> list[Any]:
        metas, buffers = msg.array_frames(inputs)
        tried: set[int] = set()
        for _ in range(2):  # a worker lost mid-call gets one retry elsewhere
            link = self._pick(str(key), tried)
            budget_s = timeout_s if timeout_s is not None else _NO_DEADLINE_S
            request = msg.Infer(next(self._ids), key.model, key.version, budget_s * 1000, metas)
            try:
                reply, outputs = await link.call(
                    request, buffers, cancellable=True, timeout_s=timeout_s, timing=timing
                )
            except WorkerLost:
                tried.add(link.index)
                continue
            if isinstance(reply, msg.Failed):
                msg.raise_failure(reply)
            assert isinstance(reply, msg.Results)
            return outputs
        raise Unavailable(f"the workers holding {key} went away; try again")

    def _pick(self, key: str, exclude: set[int]) -> WorkerLink:
        holders = [link for link in self._links if link.holds(key) and link.index not in exclude]
        if not holders:
            # The status may lag a load another gateway did; a healthy worker answers for itself.
            holders = [link for link in self._links if link.healthy and link.index not in exclude]
        if not holders:
            raise Unavailable(f"no ready worker holds {key}")
        return min(holders, key=lambda link: len(link.pending))

    # worker views ---------------------------------------------------------------------------

    @property
    def links(self) -> list[WorkerLink]:
        return list(self._links)

    def describe(self) -> list[dict[str, Any]]:
        return self._members.describe()

    def telemetry(self) -> BackendTelemetry:
        return self._members.telemetry()
