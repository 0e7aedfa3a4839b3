"""The gateway's side of the workers: an `InferenceBackend` that talks to worker processes.

One channel per worker (`maas.dispatch.channels`: a Unix stream socket to a worker on this
host, ZeroMQ to one elsewhere or in this process). Every request carries an id; its reply
resolves the future kept under that id, and a reply nobody waits for any more is dropped. A
worker is healthy while it answers the heartbeat; when its connection drops (the channel says
so at once) or it stays silent for `DEAD_AFTER_S`, every call it held fails, and an inference
is retried once on another worker that holds the version. A worker seen with a new boot id (a
restart, or the first sight of it) is handed to `on_worker_boot`, which loads what it should
serve.

No torch here: tensors arrive as numpy arrays and leave as raw frames. The channels are
non-blocking sockets read from the event loop's `add_reader`: zmq.asyncio's futures cost more
per message than the rest of the hop.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import msgspec
import zmq

from maas.dispatch.channels import Channel, Unconnected, open_channel
from maas.dispatch.clock import WorkerClock
from maas.errors import (
    DeadlineExceeded,
    InvalidInput,
    MaasError,
    ModelLoadError,
    Unavailable,
    WorkerCrashedLoading,
)
from maas.telemetry import BackendTelemetry, WorkerHealth
from maas.transport import messages as msg
from maas.transport.curve import DeploymentKeys, needs_curve
from maas.transport.stream import NotConnected
from maas.transport.version import PROTOCOL
from maas.types import LoadSpec, Timing, VersionKey, WorkerState

log = logging.getLogger(__name__)

HEARTBEAT_S = 0.2
DEAD_AFTER_S = 1.0
# A heartbeat tick this much later than planned means this process stalled, not the worker.
_STALL_S = 0.25
_LOAD_WAIT_S = 60.0
_NO_DEADLINE_S = 3600.0


# A reply, and the arrays it carries for its request (results only).
Outcome = tuple[msg.Reply, list[Any]]


class WorkerLost(Unavailable):
    """The worker holding a call went away before answering."""


@dataclass(eq=False)
class WorkerLink:
    index: int
    endpoint: str
    channel: Channel = field(default_factory=Unconnected)
    status: msg.WorkerStatus | None = None
    last_seen: float = 0.0
    healthy: bool = False
    refused: str = ""  # why this gateway will not use the worker (another protocol)
    pending: dict[int, asyncio.Future[Outcome]] = field(default_factory=dict)
    deadlines: dict[int, float] = field(default_factory=dict)
    timings: dict[int, Timing] = field(default_factory=dict)  # calls whose phases are kept
    outbox: list[tuple[msg.Single, list[Any]]] = field(default_factory=list)
    clock: WorkerClock = field(init=False)

    def __post_init__(self) -> None:
        # ipc:// and inproc:// workers run on this host and read its clock.
        self.clock = WorkerClock(same_host=not needs_curve(self.endpoint))

    @property
    def name(self) -> str:
        return self.status.worker if self.status else f"w{self.index}"

    def holds(self, key: str) -> bool:
        return self.healthy and self.status is not None and key in self.status.versions


BootHook = Callable[[WorkerLink], Awaitable[None]]


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
        artifacts: Callable[[str], Path] | None = None,
    ) -> None:
        """`local`: a worker to run alongside (its `inproc://` endpoint is added to `endpoints`
        and its context shared)."""
        self._local = local
        self._keys = keys
        self._artifacts = artifacts  # sha256 → the file, for workers that fetch one (`Fetch`)
        self._endpoints = [*endpoints, local.endpoint] if local else endpoints
        self.on_worker_boot = on_worker_boot
        self._context: zmq.Context[zmq.Socket[bytes]] = local.context if local else zmq.Context()
        self._links: list[WorkerLink] = []
        self._ids = itertools.count(1)
        self._link_ids = itertools.count()
        self._tasks: set[asyncio.Task[None]] = set()
        self._changed = asyncio.Event()

    # life cycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        if self._local is not None:
            await asyncio.to_thread(self._local.start)
        for endpoint in self._endpoints:
            self._connect(endpoint)
        self._own(self._heartbeat(), "heartbeat")
        await self._hear_from_every_worker(DEAD_AFTER_S)

    @property
    def runs_local(self) -> bool:
        return self._local is not None

    @property
    def endpoints(self) -> list[str]:
        return [link.endpoint for link in self._links]

    def connect(self, endpoint: str) -> None:
        """Start using the worker at `endpoint` (one that announced itself); its first
        heartbeat makes it healthy and wakes placement."""
        if endpoint not in self.endpoints:
            self._connect(endpoint)
            self._changed.set()

    def disconnect(self, endpoint: str) -> None:
        """Stop using the worker at `endpoint` (gone for good): its calls fail over."""
        for link in self._links:
            if link.endpoint == endpoint:
                self._links.remove(link)
                self._lose(link, "it is no longer registered")
                self._close_link(link)
                self._changed.set()
                return

    def _connect(self, endpoint: str) -> WorkerLink:
        link = WorkerLink(next(self._link_ids), endpoint)
        if needs_curve(endpoint) and self._keys is None:
            link.refused = "tcp:// needs the deployment's keys (MAAS_WORKER_KEYS_DIR)"
            log.error("worker at %s not used: %s", endpoint, link.refused)
        else:
            link.channel = open_channel(
                endpoint,
                loop=asyncio.get_running_loop(),
                context=self._context,
                keys=self._keys,
                on_message=lambda frames: self._dispatch(link, frames),
                on_lost=lambda why: self._lose(link, why),
                on_refused=lambda why: self._refuse_wire(link, why),
            )
        self._links.append(link)
        return link

    def _close_link(self, link: WorkerLink) -> None:
        link.channel.close()

    async def _hear_from_every_worker(self, timeout_s: float) -> None:
        """Until every worker has answered once (or `timeout_s`): a gateway that starts serving
        before it knows who holds what would answer 'no ready worker' to its first requests
        (after a restart, the kernel hands it connections at once)."""
        deadline = time.monotonic() + timeout_s
        while any(link.status is None and not link.refused for link in self._links):
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(left):  # not wait_for: it can lose a cancel
                    await self._changed.wait()

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for link in self._links:
            self._fail_pending(link, WorkerLost("the gateway is shutting down"))
            self._close_link(link)
        if self._local is not None:
            await asyncio.to_thread(self._local.stop)  # ends the shared context too
        else:
            self._context.term()

    async def refresh(self, timeout_s: float = 0.5) -> None:
        """Ask every healthy worker for its figures now, and wait (up to `timeout_s`) for the
        answers: what a scrape shows then includes the last request, not the last heartbeat."""
        calls = [
            self._call(link, msg.Ping(next(self._ids), PROTOCOL))
            for link in self._links
            if link.healthy
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

    # InferenceBackend -----------------------------------------------------------------------

    async def load(self, spec: LoadSpec) -> None:
        """Load on every healthy worker; fails if any of them cannot. Which workers a version
        belongs on is placement's business (`maas.control.placement`, through `load_on`)."""
        await self._wait_for_a_worker()
        targets = [link for link in self._links if link.healthy]
        if not targets:
            raise ModelLoadError("no healthy worker to load it on")
        await asyncio.gather(*(self._load_on_link(link, spec) for link in targets))

    async def _load_on_link(self, link: WorkerLink, spec: LoadSpec) -> None:
        boot = link.status.boot if link.status else link.endpoint
        try:
            reply, _ = await self._call(link, msg.Load(next(self._ids), spec))
        except WorkerLost:
            raise WorkerCrashedLoading(
                f"worker {link.name} died while loading {spec.key}", death=f"{link.name}:{boot}"
            ) from None
        if isinstance(reply, msg.Failed):
            raise ModelLoadError(reply.message)
        self._mark_loaded(link, str(spec.key))

    async def check(self, spec: LoadSpec) -> None:
        """Trial-load `spec` on one healthy worker, which keeps nothing; ModelLoadError with the
        cause if it cannot load (also when the trial killed the worker)."""
        await self._wait_for_a_worker()
        healthy = [link for link in self._links if link.healthy]
        if not healthy:
            raise Unavailable("no healthy worker to check the artifact on; try again shortly")
        link = min(healthy, key=lambda lk: lk.status.queue_depth if lk.status else 0)
        try:
            reply, _ = await self._call(link, msg.Check(next(self._ids), spec))
        except WorkerLost:
            raise ModelLoadError(
                f"loading the artifact killed worker {link.name} (it is being restarted); "
                "nothing was registered"
            ) from None
        if isinstance(reply, msg.Failed):
            raise ModelLoadError(reply.message)

    def workers(self) -> list[WorkerState]:
        return [
            WorkerState(
                link.name,
                link.healthy,
                frozenset(link.status.versions) if link.status else frozenset(),
                link.status.boot if link.status else "",
                link.status.device if link.status else "",
                link.status.memory_free if link.status else 0,
            )
            for link in self._links
        ]

    def _link(self, worker: str) -> WorkerLink:
        for link in self._links:
            if link.name == worker:
                return link
        raise Unavailable(f"no worker named {worker}")

    async def load_on(self, worker: str, spec: LoadSpec) -> None:
        await self._load_on_link(self._link(worker), spec)

    async def unload_on(self, worker: str, key: VersionKey) -> None:
        link = self._link(worker)
        await self._call(link, msg.Unload(next(self._ids), key.model, key.version))
        if link.status is not None and str(key) in link.status.versions:
            versions = tuple(v for v in link.status.versions if v != str(key))
            link.status = _with_versions(link.status, versions)

    async def unload(self, key: VersionKey) -> None:
        calls = [
            self._call(link, msg.Unload(next(self._ids), key.model, key.version))
            for link in self._links
            if link.healthy
        ]
        await asyncio.gather(*calls, return_exceptions=True)
        for link in self._links:
            if link.status is not None and str(key) in link.status.versions:
                versions = tuple(v for v in link.status.versions if v != str(key))
                link.status = _with_versions(link.status, versions)

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
                reply, outputs = await self._call(
                    link, request, buffers, cancellable=True, timeout_s=timeout_s, timing=timing
                )
            except WorkerLost:
                tried.add(link.index)
                continue
            if isinstance(reply, msg.Failed):
                msg.raise_failure(reply)
            assert isinstance(reply, msg.Results)
            return outputs
        raise Unavailable(f"the workers holding {key} went away; try again")

    # worker views ---------------------------------------------------------------------------

    @property
    def links(self) -> list[WorkerLink]:
        return list(self._links)

    def describe(self) -> list[dict[str, Any]]:
        out = []
        for link in self._links:
            status = link.status
            out.append(
                {
                    "id": link.name,
                    "pid": status.pid if status else None,
                    "host": status.host if status else None,
                    "device": status.device if status else None,
                    # 0 means the worker could not tell: null
                    "memory_total_bytes": (status.memory_total or None) if status else None,
                    "memory_free_bytes": (status.memory_free or None) if status else None,
                    "threads": (status.threads or None) if status else None,
                    "healthy": link.healthy,
                    "queue_depth": status.queue_depth if status else 0,
                    "versions": list(status.versions) if status else [],
                    "loading": list(status.loading) if status else [],
                    "restarts": status.restarts if status else 0,
                    "endpoint": link.endpoint,
                    "gateways": status.gateways if status else 0,
                    "reason": link.refused or (None if link.healthy else _silent(link)),
                    "stats": [_stats_view(s) for s in status.stats] if status else [],
                }
            )
        return out

    def telemetry(self) -> BackendTelemetry:
        out = BackendTelemetry()
        for link in self._links:
            status = link.status
            out.workers.append(
                WorkerHealth(link.name, link.healthy, status.restarts if status else 0)
            )
            if status is None or not link.healthy:
                continue
            for stats in status.stats:
                out.merge(stats.key, stats.telemetry, worker=link.name)
        return out

    # internals ------------------------------------------------------------------------------

    def _pick(self, key: str, exclude: set[int]) -> WorkerLink:
        holders = [link for link in self._links if link.holds(key) and link.index not in exclude]
        if not holders:
            # The status may lag a load another gateway did; a healthy worker answers for itself.
            holders = [link for link in self._links if link.healthy and link.index not in exclude]
        if not holders:
            raise Unavailable(f"no ready worker holds {key}")
        return min(holders, key=lambda link: len(link.pending))

    async def _call(
        self,
        link: WorkerLink,
        request: msg.Single,
        buffers: list[Any] | None = None,
        *,
        cancellable: bool = False,
        timeout_s: float | None = None,
        timing: Timing | None = None,
    ) -> Outcome:
        if not link.healthy:
            raise WorkerLost(f"worker {link.name} is not available")
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        request_id = request.id
        link.pending[request_id] = future
        if timeout_s is not None:
            link.deadlines[request_id] = time.monotonic() + timeout_s
        if timing is not None:
            link.timings[request_id] = timing
        try:
            self._send(link, request, buffers)
            try:
                return await future
            except asyncio.CancelledError:
                if cancellable and link.healthy:  # the caller left: do not compute for nobody
                    self._send(link, msg.Cancel(request_id))
                raise
        finally:
            link.pending.pop(request_id, None)
            link.deadlines.pop(request_id, None)
            link.timings.pop(request_id, None)

    def _send(
        self, link: WorkerLink, request: msg.Single, buffers: list[Any] | None = None
    ) -> None:
        """Queue `request` for the worker; what one turn of the loop queued goes as one message
        (a ZeroMQ send wakes the socket's I/O thread: once per turn, not once per request)."""
        link.outbox.append((request, buffers or []))
        if len(link.outbox) == 1:
            asyncio.get_running_loop().call_soon(self._flush, link)

    def _flush(self, link: WorkerLink) -> None:
        queued, link.outbox = link.outbox, []
        if not queued:
            return
        header: msg.Request
        if len(queued) == 1:
            header, frames = queued[0]
        else:
            header = msg.Envelope(tuple(request for request, _ in queued))
            frames = [frame for _, buffers in queued for frame in buffers]
        if link.timings:
            now = time.monotonic()
            for sent, _ in queued:
                timing = link.timings.get(sent.id)
                if timing is not None:
                    timing.sent = now
        try:
            link.channel.send([msg.encode(header), *frames])
        except NotConnected:  # the heartbeat notices the worker is gone
            lost = WorkerLost(f"worker {link.name} is not connected")
            for sent, _ in queued:
                future = link.pending.get(sent.id)
                if future is not None and not future.done():
                    future.set_exception(lost)

    def _dispatch(self, link: WorkerLink, frames: list[Any]) -> None:
        try:
            reply = msg.decode_reply(frames[0])
        except Exception:  # msgspec raises its own types for junk
            log.warning("dropped an undecodable reply from %s", link.endpoint)
            return
        if isinstance(reply, msg.WorkerStatus):
            self._on_status(link, reply)
            if reply.id:
                self._resolve(link, reply.id, (reply, []))
        elif isinstance(reply, msg.Results):
            self._on_results(link, reply, frames[1:])
        elif isinstance(reply, msg.Fetch):
            self._own(self._send_artifact(link, reply), f"artifact to {link.name}")
        else:
            self._resolve(link, reply.id, (reply, []))

    async def _send_artifact(self, link: WorkerLink, fetch: msg.Fetch) -> None:
        """A worker without the artifact on its host asked for a piece of it."""
        if self._artifacts is None:
            self._send(link, msg.Chunk(fetch.id, 0, "this gateway keeps no artifacts"), [b""])
            return
        try:
            path = self._artifacts(fetch.sha256)
            data, total = await asyncio.to_thread(_read_piece, path, fetch.offset, fetch.length)
        except (OSError, MaasError) as exc:
            self._send(link, msg.Chunk(fetch.id, 0, f"{type(exc).__name__}: {exc}"), [b""])
            return
        self._send(link, msg.Chunk(fetch.id, total), [data])

    def _on_results(self, link: WorkerLink, reply: msg.Results, frames: list[Any]) -> None:
        try:
            arrays = msg.frames_to_arrays(reply.arrays, frames)
        except InvalidInput as exc:
            log.warning("dropped malformed results from %s: %s", link.name, exc.message)
            for request_id in reply.ids:
                self._resolve(
                    link, request_id, (msg.failure(request_id, Unavailable(exc.message)), [])
                )
            return
        if link.timings and reply.done:
            self._stamp(link, reply)
        start = 0
        for request_id, count in zip(reply.ids, reply.counts, strict=True):
            rows = slice(start, start + count)
            self._resolve(link, request_id, (reply, [array[rows] for array in arrays]))
            start += count

    def _stamp(self, link: WorkerLink, reply: msg.Results) -> None:
        """The worker's instants for the calls of `reply` that keep their phases."""
        clock = link.clock
        taken, done = clock.here(reply.taken), clock.here(reply.done)
        for request_id, arrived in zip(reply.ids, reply.arrived, strict=False):
            timing = link.timings.get(request_id)
            if timing is not None:
                timing.arrived, timing.taken, timing.done = clock.here(arrived), taken, done

    def _resolve(self, link: WorkerLink, request_id: int, outcome: Outcome) -> None:
        future = link.pending.get(request_id)
        if future is None or future.done():
            log.debug("late reply %d from %s dropped", request_id, link.name)
            return
        future.set_result(outcome)

    def _on_status(self, link: WorkerLink, status: msg.WorkerStatus) -> None:
        if status.protocol != PROTOCOL:
            self._refuse(link, status)
            return
        link.refused = ""
        link.clock.sample(status.ping_sent, status.clock, time.monotonic())
        rebooted = link.status is None or link.status.boot != status.boot
        if rebooted and link.status is not None:
            # A new process answers on the old address: what the old one held is gone.
            self._fail_pending(link, WorkerLost(f"worker {link.name} restarted"))
        link.status = status
        link.last_seen = time.monotonic()
        if not link.healthy or rebooted:
            link.healthy = True
            self._changed.set()
            if rebooted and self.on_worker_boot is not None:
                self._own(self.on_worker_boot(link), f"sync {status.worker}")

    def _refuse(self, link: WorkerLink, status: msg.WorkerStatus) -> None:
        """A worker of another release: known to be there, never used, and shown with why."""
        why = f"speaks protocol {status.protocol}, this gateway {PROTOCOL} (mixed releases)"
        if link.refused != why:
            log.warning("worker %s at %s refused: %s", status.worker, link.endpoint, why)
        link.refused = why
        link.status = _with_versions(status, ())
        link.last_seen = time.monotonic()
        if link.healthy:
            link.healthy = False
            self._fail_pending(link, WorkerLost(f"worker {status.worker} {why}"))
        self._changed.set()

    def _refuse_wire(self, link: WorkerLink, why: str) -> None:
        """The worker's socket speaks another wire (a release from before the stream wire)."""
        why = f"speaks another wire: {why}"
        if link.refused != why:
            log.warning("worker at %s refused: %s", link.endpoint, why)
        link.refused = why
        if link.healthy:
            link.healthy = False
            self._fail_pending(link, WorkerLost(f"worker {link.name} {why}"))
        self._changed.set()

    async def _heartbeat(self) -> None:
        last_tick = time.monotonic()
        while True:
            now = time.monotonic()
            stalled = now - last_tick - HEARTBEAT_S
            last_tick = now
            for link in self._links:
                if stalled > _STALL_S:
                    # This process did not run for a while (a long import, a GC pause, a busy
                    # machine): the replies it did not read are its own silence, not the
                    # worker's. The worker gets a fresh window to be heard.
                    link.last_seen += stalled
                if link.healthy and now - link.last_seen > DEAD_AFTER_S:
                    self._lose(link, f"it was silent for {DEAD_AFTER_S:.0f} s")
                self._expire(link, now)
                self._send(link, msg.Ping(0, PROTOCOL, time.monotonic()))
            await asyncio.sleep(HEARTBEAT_S)

    def _expire(self, link: WorkerLink, now: float) -> None:
        """The backstop for deadlines: the worker drops expired work before a forward, but a
        forward already running (or a stuck worker) must not keep its callers waiting."""
        for request_id, deadline in list(link.deadlines.items()):
            future = link.pending.get(request_id)
            if now > deadline and future is not None and not future.done():
                future.set_exception(DeadlineExceeded("deadline passed before inference finished"))
                self._send(link, msg.Cancel(request_id))

    def _lose(self, link: WorkerLink, why: str) -> None:
        if link.healthy:
            log.warning("worker %s lost: %s", link.name, why)
        link.healthy = False
        self._fail_pending(link, WorkerLost(f"worker {link.name} was lost: {why}"))

    def _fail_pending(self, link: WorkerLink, exc: Exception) -> None:
        for future in link.pending.values():
            if not future.done():
                future.set_exception(exc)
        link.pending.clear()

    def _mark_loaded(self, link: WorkerLink, key: str) -> None:
        if link.status is not None and key not in link.status.versions:
            link.status = _with_versions(link.status, (*link.status.versions, key))

    async def _wait_for_a_worker(self) -> None:
        deadline = time.monotonic() + _LOAD_WAIT_S
        while not any(link.healthy for link in self._links):
            if self._links and all(link.refused for link in self._links):
                raise ModelLoadError(f"no usable worker: {self._links[0].refused}")
            if time.monotonic() > deadline:
                raise ModelLoadError("no worker came up to load it on")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1.0):  # not wait_for: it can lose a cancel
                    await self._changed.wait()


def _stats_view(stats: msg.VersionStats) -> dict[str, Any]:
    # The summary of the histograms; the histograms themselves are for /metrics.
    return {"key": stats.key, "mean_batch_ms": stats.mean_batch_ms, **stats.telemetry.summary()}


def _read_piece(path: Path, offset: int, length: int) -> tuple[bytes, int]:
    with path.open("rb") as handle:
        total = os.fstat(handle.fileno()).st_size
        handle.seek(offset)
        return handle.read(max(0, min(length, 64 * 1024 * 1024))), total


def _silent(link: WorkerLink) -> str:
    return "not answering" if link.status is None else "stopped answering"


def _with_versions(status: msg.WorkerStatus, versions: tuple[str, ...]) -> msg.WorkerStatus:
    return msgspec.structs.replace(status, versions=versions)
