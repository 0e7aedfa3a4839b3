"""A worker process: one device, the versions loaded on it, a batcher each, one listener.

Gateways connect to the worker's listener (`maas.worker.listeners`: a Unix stream socket for
`ipc://` on its host, ZeroMQ for `tcp://` across hosts and `inproc://`). The loop reads every
message that is waiting before it forms batches — a loop that ran a forward per message would
make batches of one — then runs due batches: small ones inline (a thread hop costs more than a
small forward), long ones and those fed large inputs on the forward thread, so the loop goes on
reading and queueing what arrives during them (`maas.worker.forwarding`). One forward at a time
either way. Versions are loaded, checked and unloaded by `maas.worker.loading`, on a thread, so
traffic to the loaded ones goes on meanwhile.

Under `maas serve` (`PROMETHEUS_MULTIPROC_DIR` set), a timer on the loop also writes what the
batchers measured into prometheus_client's multiprocess files (`maas.worker.exposition`), for
the gateways to expose once per worker; heartbeats carry the same figures for `/admin`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import msgspec
import numpy as np
import zmq

from maas.errors import DeadlineExceeded, MaasError, Unavailable
from maas.store.sealing import ArtifactKey
from maas.transport import messages as msg
from maas.transport.curve import DeploymentKeys
from maas.transport.version import PROTOCOL
from maas.types import VersionKey
from maas.worker.batcher import Batch, Pending
from maas.worker.cache import ArtifactCache
from maas.worker.exposition import FLUSH_S, Exposition, Figures, multiprocess_dir
from maas.worker.forwarding import forward, off_loop
from maas.worker.listeners import Listener, listen
from maas.worker.loading import LoadedVersion, Loader
from maas.worker.memory import DeviceMemory

log = logging.getLogger(__name__)


class WorkerServer:
    def __init__(
        self,
        *,
        endpoint: str,
        worker_id: str,
        device: str,
        restarts: int = 0,
        context: zmq.Context[zmq.Socket[bytes]] | None = None,
        torch_threads: int | None = None,
        keys: DeploymentKeys | None = None,
        cache: ArtifactCache | None = None,
        threads: int = 0,
        artifact_key: ArtifactKey | None = None,
    ) -> None:
        """`context` is shared with the gateway for an `inproc://` endpoint (the loop then runs
        on a thread of the gateway's process, and sets torch's threads at its first load)."""
        self.endpoint = endpoint
        self._context = context
        self._keys = keys
        self.bound = threading.Event()
        self.worker_id = worker_id
        self.device = device
        self.threads = threads or torch_threads or 0
        self._memory = DeviceMemory(device)
        self.restarts = restarts
        self.boot = uuid.uuid4().hex
        self._loader = Loader(
            worker_id=worker_id,
            device=device,
            send=self._send,
            torch_threads=torch_threads,
            cache=cache,
            artifact_key=artifact_key,
        )
        self._versions = self._loader.versions  # the loader's own dict: it loads, the loop serves
        self._peers: dict[bytes, float] = {}  # gateway socket → when it last pinged
        self._mismatched: dict[bytes, int] = {}  # gateways speaking another protocol → theirs
        self._listener: Listener = _NOT_LISTENING
        self._loop: asyncio.AbstractEventLoop | None = None
        self._run_scheduled = False
        self._timer: asyncio.TimerHandle | None = None
        self._stopped: asyncio.Event | None = None
        self._busy = False
        self._forwards = ThreadPoolExecutor(max_workers=1, thread_name_prefix="maas-forward")
        path = multiprocess_dir()
        self._exposition = Exposition(worker_id, path) if path else None
        self._exposition_failed = False
        self._flush_timer: asyncio.TimerHandle | None = None

    async def serve(self) -> None:
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._loader.attach(loop)
        self._stopped = asyncio.Event()
        listener = listen(self.endpoint, context=self._context, keys=self._keys)
        self._listener = listener
        self.bound.set()
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self._stopped.set)
        listener.start(loop, self._handle, self._schedule_run)
        if self._exposition is not None:
            self._expose(self._exposition.forget_predecessor)
            self._flush_timer = loop.call_later(FLUSH_S, self._on_flush_timer)
        log.info("worker %s serving on %s (%s)", self.worker_id, self.endpoint, self.device)
        try:
            await self._stopped.wait()
        finally:
            if self._flush_timer is not None:
                self._flush_timer.cancel()
            self._flush_figures()  # a clean stop leaves nothing it measured unwritten
            listener.close()

    def stop(self) -> None:
        """Stop serving; callable from any thread."""
        if self._loop is not None and self._stopped is not None:
            self._loop.call_soon_threadsafe(self._stopped.set)

    # receiving ------------------------------------------------------------------------------

    def _handle(self, identity: bytes, frames: list[Any]) -> None:
        try:
            request = msg.decode_request(frames[0])
        except Exception:  # msgspec raises its own types for junk; a bad peer is not fatal
            log.warning("dropped an undecodable message from a gateway")
            return
        if isinstance(request, msg.Envelope):
            start = 1
            for inner in request.requests:
                end = start + msg.frame_count(inner)
                self._on_request(identity, inner, frames[start:end])
                start = end
        else:
            self._on_request(identity, request, frames[1:])

    def _on_request(self, identity: bytes, request: msg.Single, frames: list[Any]) -> None:
        if identity in self._mismatched and not isinstance(request, msg.Ping):
            theirs = self._mismatched[identity]
            refused = Unavailable(
                f"worker {self.worker_id} speaks protocol {PROTOCOL}, this gateway {theirs}"
            )
            self._send(identity, msg.failure(getattr(request, "id", 0), refused))
            return
        match request:
            case msg.Infer():
                self._on_infer(identity, request, frames)
            case msg.Cancel():
                for version in self._versions.values():
                    if version.batcher.cancel(identity, request.id):
                        break
            case msg.Ping():
                if request.protocol != PROTOCOL:
                    if identity not in self._mismatched:
                        log.warning(
                            "worker %s refuses a gateway speaking protocol %d (this worker: %d)",
                            self.worker_id,
                            request.protocol,
                            PROTOCOL,
                        )
                    self._mismatched[identity] = request.protocol
                else:
                    self._mismatched.pop(identity, None)
                    self._peers[identity] = time.monotonic()
                # The status says which protocol it speaks, and its clock for the gateway's.
                self._send(identity, self.status(request.id, request.sent))
            case msg.Load():
                self._loader.on_load(identity, request)
            case msg.Check():
                self._loader.on_check(identity, request)
            case msg.Unload():
                self._flush_figures()  # what the version measured until now still counts
                self._loader.on_unload(identity, request)
            case msg.Chunk():
                self._loader.on_chunk(request, frames)

    def _on_infer(self, identity: bytes, request: msg.Infer, frames: list[Any]) -> None:
        version = self._versions.get(VersionKey(request.model, request.version))
        try:
            if version is None:
                raise Unavailable(
                    f"{request.model}@{request.version} is not loaded on worker {self.worker_id}"
                )
            arrays = msg.frames_to_arrays(request.arrays, frames)
            now = time.monotonic()
            version.batcher.submit(
                Pending(
                    request_id=request.id,
                    reply_to=identity,
                    arrays=arrays,
                    arrived=now,
                    deadline=now + request.timeout_ms / 1000.0,
                )
            )
        except MaasError as exc:
            self._send(identity, msg.failure(request.id, exc))

    # running --------------------------------------------------------------------------------

    def _schedule_run(self) -> None:
        if not self._run_scheduled and self._loop is not None:
            self._run_scheduled = True
            self._loop.call_soon(self._run_due)

    def _run_due(self) -> None:
        """Run every due batch, reading what arrived during each forward before the next.

        Quick forwards run inline; slow ones on the forward thread, so the loop keeps reading
        and answering heartbeats meanwhile. One forward at a time either way: what arrives
        during it waits and forms the next batch.
        """
        self._run_scheduled = False
        if self._busy:
            return  # the threaded forward schedules the next run when it ends
        ran = True
        while ran:
            ran = False
            for version in list(self._versions.values()):
                taken = version.batcher.take(time.monotonic())
                for item in taken.expired:
                    self._fail(item, DeadlineExceeded("deadline passed while queued"))
                if taken.batch is None:
                    continue
                if off_loop(version.batcher.stats.mean_batch_s, taken.batch):
                    self._busy = True
                    assert self._loop is not None
                    task = self._loop.create_task(self._run_threaded(version, taken.batch))
                    task.add_done_callback(_log_crash)
                    return
                started = time.perf_counter()
                outcome = forward(version.model, taken.batch)
                seconds, done = time.perf_counter() - started, time.monotonic()
                version.batcher.finished(done)
                self._deliver(version, taken.batch, outcome, seconds, done)
                ran = True
                self._listener.drain()  # what arrived during the forward joins the next batch
        self._arm_timer()

    async def _run_threaded(self, version: LoadedVersion, batch: Batch) -> None:
        assert self._loop is not None
        started = time.perf_counter()
        try:
            run = self._loop.run_in_executor
            outcome = await run(self._forwards, forward, version.model, batch)
            seconds, done = time.perf_counter() - started, time.monotonic()
            version.batcher.finished(done)
            self._deliver(version, batch, outcome, seconds, done)
        finally:
            self._busy = False
            self._schedule_run()

    def _deliver(
        self,
        version: LoadedVersion,
        batch: Batch,
        outcome: list[Any] | MaasError,
        seconds: float,
        done: float,
    ) -> None:
        if isinstance(outcome, MaasError):
            for item in batch.items:
                self._fail(item, outcome)
            return
        version.batcher.record(batch, seconds)
        # One message per gateway: its requests' rows, gathered in their order.
        by_gateway: dict[bytes, list[tuple[Pending, slice]]] = {}
        for item, rows in zip(batch.items, batch.slices(), strict=True):
            by_gateway.setdefault(item.reply_to, []).append((item, rows))
        for gateway, entries in by_gateway.items():
            if len(entries) == len(batch.items):
                arrays = outcome
            else:
                arrays = [np.concatenate([out[rows] for _, rows in entries]) for out in outcome]
            metas, buffers = msg.array_frames(arrays)
            ids = tuple(item.request_id for item, _ in entries)
            counts = tuple(item.count for item, _ in entries)
            arrived = tuple(item.arrived for item, _ in entries)
            results = msg.Results(ids, counts, metas, arrived, batch.taken, done)
            self._send(gateway, results, buffers)

    def _arm_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        wakeups = [w for v in self._versions.values() if (w := v.batcher.next_wakeup())]
        if wakeups and self._loop is not None:
            delay = max(0.0, min(wakeups) - time.monotonic())
            self._timer = self._loop.call_later(delay, self._schedule_run)

    # exposing -------------------------------------------------------------------------------

    def _on_flush_timer(self) -> None:
        self._flush_figures()
        if self._loop is not None:
            self._flush_timer = self._loop.call_later(FLUSH_S, self._on_flush_timer)

    def _flush_figures(self) -> None:
        exposition = self._exposition
        if exposition is None:
            return
        figures: list[Figures] = [
            (str(key), v.batcher.stats.telemetry, v.batcher.depth, v.batcher.stats.padding_waste)
            for key, v in self._versions.items()
        ]
        self._expose(lambda: exposition.flush(figures))

    def _expose(self, write: Callable[[], None]) -> None:
        """Figures that cannot be written (a full disk) must not stop the serving."""
        try:
            write()
        except Exception:
            if not self._exposition_failed:  # once: the timer would repeat it five times a second
                log.exception("worker %s could not write its metrics", self.worker_id)
            self._exposition_failed = True
        else:
            self._exposition_failed = False

    # replying -------------------------------------------------------------------------------

    def _fail(self, item: Pending, exc: MaasError) -> None:
        self._send(item.reply_to, msg.failure(item.request_id, exc))

    def _send(self, identity: bytes, reply: msg.Reply, buffers: list[Any] | None = None) -> None:
        self._listener.send(identity, [msg.encode(reply), *(buffers or [])])

    def status(self, request_id: int, ping_sent: float = 0.0) -> msg.WorkerStatus:
        stats = tuple(
            msg.VersionStats(
                key=str(key),
                mean_batch_ms=v.batcher.stats.mean_batch_s * 1000,
                telemetry=msgspec.structs.replace(
                    v.batcher.stats.telemetry,
                    queue_depth=v.batcher.depth,
                    padding_waste=v.batcher.stats.padding_waste,
                ),
            )
            for key, v in self._versions.items()
        )
        memory_total, memory_free = self._memory.read()
        return msg.WorkerStatus(
            id=request_id,
            worker=self.worker_id,
            pid=os.getpid(),
            boot=self.boot,
            host=socket.gethostname(),
            device=self.device,
            restarts=self.restarts,
            versions=tuple(str(k) for k in self._versions),
            loading=tuple(str(k) for k in self._loader.loading),
            queue_depth=sum(v.batcher.depth for v in self._versions.values()),
            gateways=sum(1 for seen in self._peers.values() if time.monotonic() - seen < 2.0),
            stats=stats,
            protocol=PROTOCOL,
            memory_total=memory_total,
            memory_free=memory_free,
            threads=self.threads,
            ping_sent=ping_sent,
            clock=time.monotonic(),
        )


class _NotListening:
    """The listener before `serve` binds one: nothing to read, nowhere to send."""

    def start(self, loop: Any, on_message: Any, after_read: Any) -> None:
        pass

    def drain(self) -> None:
        pass

    def send(self, identity: bytes, frames: Any) -> None:
        log.debug("reply before the worker listens dropped")

    def close(self) -> None:
        pass


_NOT_LISTENING = _NotListening()


def _log_crash(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("worker task %s crashed", task.get_name(), exc_info=task.exception())
