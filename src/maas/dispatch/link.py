"""The link to one worker and the calls in flight on it.

Every request carries an id (the pool's counter); its reply resolves the future kept under that
id, and a reply nobody waits for any more is dropped. What one turn of the loop queues for a
worker goes out as one message. Replies that answer no call of ours (the worker's status, a
worker asking for a piece of an artifact) go to the hooks the link was made with.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec

from maas.dispatch.channels import Channel, Unconnected
from maas.dispatch.clock import WorkerClock
from maas.errors import DeadlineExceeded, InvalidInput, Unavailable, WorkerLost
from maas.transport import messages as msg
from maas.transport.curve import needs_curve
from maas.transport.stream import NotConnected
from maas.types import Timing

log = logging.getLogger(__name__)

# A reply, and the arrays it carries for its request (results only).
Outcome = tuple[msg.Reply, list[Any]]


@dataclass(eq=False)
class WorkerLink:
    index: int
    endpoint: str
    # What the worker says of itself (each heartbeat's answer), and its asks for an artifact.
    on_status: Callable[[WorkerLink, msg.WorkerStatus], None] = field(kw_only=True, repr=False)
    on_fetch: Callable[[WorkerLink, msg.Fetch], None] = field(kw_only=True, repr=False)
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

    # calls ----------------------------------------------------------------------------------

    async def call(
        self,
        request: msg.Single,
        buffers: list[Any] | None = None,
        *,
        cancellable: bool = False,
        timeout_s: float | None = None,
        timing: Timing | None = None,
    ) -> Outcome:
        if not self.healthy:
            raise WorkerLost(f"worker {self.name} is not available")
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        request_id = request.id
        self.pending[request_id] = future
        if timeout_s is not None:
            self.deadlines[request_id] = time.monotonic() + timeout_s
        if timing is not None:
            self.timings[request_id] = timing
        try:
            self.send(request, buffers)
            try:
                return await future
            except asyncio.CancelledError:
                if cancellable and self.healthy:  # the caller left: do not compute for nobody
                    self.send(msg.Cancel(request_id))
                raise
        finally:
            self.pending.pop(request_id, None)
            self.deadlines.pop(request_id, None)
            self.timings.pop(request_id, None)

    def send(self, request: msg.Single, buffers: list[Any] | None = None) -> None:
        """Queue `request` for the worker; what one turn of the loop queued goes as one message
        (a ZeroMQ send wakes the socket's I/O thread: once per turn, not once per request)."""
        self.outbox.append((request, buffers or []))
        if len(self.outbox) == 1:
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        queued, self.outbox = self.outbox, []
        if not queued:
            return
        header: msg.Request
        if len(queued) == 1:
            header, frames = queued[0]
        else:
            header = msg.Envelope(tuple(request for request, _ in queued))
            frames = [frame for _, buffers in queued for frame in buffers]
        if self.timings:
            now = time.monotonic()
            for sent, _ in queued:
                timing = self.timings.get(sent.id)
                if timing is not None:
                    timing.sent = now
        try:
            self.channel.send([msg.encode(header), *frames])
        except NotConnected:  # the heartbeat notices the worker is gone
            lost = WorkerLost(f"worker {self.name} is not connected")
            for sent, _ in queued:
                future = self.pending.get(sent.id)
                if future is not None and not future.done():
                    future.set_exception(lost)

    # replies --------------------------------------------------------------------------------

    def receive(self, frames: list[Any]) -> None:
        """One message from the worker (the channel's `on_message`)."""
        try:
            reply = msg.decode_reply(frames[0])
        except Exception:  # msgspec raises its own types for junk
            log.warning("dropped an undecodable reply from %s", self.endpoint)
            return
        if isinstance(reply, msg.WorkerStatus):
            self.on_status(self, reply)
            if reply.id:
                self._resolve(reply.id, (reply, []))
        elif isinstance(reply, msg.Results):
            self._on_results(reply, frames[1:])
        elif isinstance(reply, msg.Fetch):
            self.on_fetch(self, reply)
        else:
            self._resolve(reply.id, (reply, []))

    def _on_results(self, reply: msg.Results, frames: list[Any]) -> None:
        try:
            arrays = msg.frames_to_arrays(reply.arrays, frames)
        except InvalidInput as exc:
            log.warning("dropped malformed results from %s: %s", self.name, exc.message)
            for request_id in reply.ids:
                self._resolve(request_id, (msg.failure(request_id, Unavailable(exc.message)), []))
            return
        if self.timings and reply.done:
            self._stamp(reply)
        start = 0
        for request_id, count in zip(reply.ids, reply.counts, strict=True):
            rows = slice(start, start + count)
            self._resolve(request_id, (reply, [array[rows] for array in arrays]))
            start += count

    def _stamp(self, reply: msg.Results) -> None:
        """The worker's instants for the calls of `reply` that keep their phases."""
        clock = self.clock
        taken, done = clock.here(reply.taken), clock.here(reply.done)
        for request_id, arrived in zip(reply.ids, reply.arrived, strict=False):
            timing = self.timings.get(request_id)
            if timing is not None:
                timing.arrived, timing.taken, timing.done = clock.here(arrived), taken, done

    def _resolve(self, request_id: int, outcome: Outcome) -> None:
        future = self.pending.get(request_id)
        if future is None or future.done():
            log.debug("late reply %d from %s dropped", request_id, self.name)
            return
        future.set_result(outcome)

    # failures -------------------------------------------------------------------------------

    def fail_pending(self, exc: Exception) -> None:
        for future in self.pending.values():
            if not future.done():
                future.set_exception(exc)
        self.pending.clear()

    def expire(self, now: float) -> None:
        """The backstop for deadlines: the worker drops expired work before a forward, but a
        forward already running (or a stuck worker) must not keep its callers waiting."""
        for request_id, deadline in list(self.deadlines.items()):
            future = self.pending.get(request_id)
            if now > deadline and future is not None and not future.done():
                future.set_exception(DeadlineExceeded("deadline passed before inference finished"))
                self.send(msg.Cancel(request_id))

    # what it holds --------------------------------------------------------------------------

    def mark_loaded(self, key: str) -> None:
        if self.status is not None and key not in self.status.versions:
            self.status = with_versions(self.status, (*self.status.versions, key))

    def mark_unloaded(self, key: str) -> None:
        if self.status is not None and key in self.status.versions:
            versions = tuple(v for v in self.status.versions if v != key)
            self.status = with_versions(self.status, versions)


def with_versions(status: msg.WorkerStatus, versions: tuple[str, ...]) -> msg.WorkerStatus:
    return msgspec.structs.replace(status, versions=versions)
