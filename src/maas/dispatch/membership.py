"""Which workers a pool uses, and whether each of them answers.

A worker is healthy while it answers the heartbeat; when its connection drops (the channel says
so at once) or it stays silent for `DEAD_AFTER_S`, every call it held fails. A worker seen with
a new boot id (a restart, or the first sight of it) is handed to `on_worker_boot`, which loads
what it should serve. A worker of another release is refused: known, shown with why, never
used. What the workers last said of themselves is what `workers`, `describe` and `telemetry`
show.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import zmq

from maas.dispatch.channels import open_channel
from maas.dispatch.link import WorkerLink, with_versions
from maas.errors import ModelLoadError, WorkerLost
from maas.transport import messages as msg
from maas.transport.curve import DeploymentKeys, needs_curve
from maas.transport.telemetry import BackendTelemetry, WorkerHealth
from maas.transport.version import PROTOCOL
from maas.types import WorkerState

log = logging.getLogger(__name__)

HEARTBEAT_S = 0.2
DEAD_AFTER_S = 1.0
# A heartbeat tick this much later than planned means this process stalled, not the worker.
_STALL_S = 0.25
_LOAD_WAIT_S = 60.0

BootHook = Callable[[WorkerLink], Awaitable[None]]
# Runs a coroutine in the background for the pool, which cancels it on close.
Own = Callable[[Awaitable[None], str], None]
FetchHook = Callable[[WorkerLink, msg.Fetch], None]


class Membership:
    def __init__(
        self,
        context: zmq.Context[zmq.Socket[bytes]],
        keys: DeploymentKeys | None,
        *,
        own: Own,
        on_fetch: FetchHook,
    ) -> None:
        self.links: list[WorkerLink] = []  # changed in place: the pool routes over this list
        self.changed = asyncio.Event()  # set when a worker comes, goes, or is refused
        self.on_worker_boot: BootHook | None = None
        self._context = context
        self._keys = keys
        self._own = own
        self._on_fetch = on_fetch
        self._link_ids = itertools.count()

    # who is in ------------------------------------------------------------------------------

    @property
    def endpoints(self) -> list[str]:
        return [link.endpoint for link in self.links]

    def connect(self, endpoint: str) -> None:
        """Start using the worker at `endpoint` (one that announced itself); its first
        heartbeat makes it healthy and wakes placement."""
        if endpoint not in self.endpoints:
            self.open(endpoint)
            self.changed.set()

    def disconnect(self, endpoint: str) -> None:
        """Stop using the worker at `endpoint` (gone for good): its calls fail over."""
        for link in self.links:
            if link.endpoint == endpoint:
                self.links.remove(link)
                self._lose(link, "it is no longer registered")
                link.channel.close()
                self.changed.set()
                return

    def open(self, endpoint: str) -> WorkerLink:
        link = WorkerLink(
            next(self._link_ids), endpoint, on_status=self._on_status, on_fetch=self._on_fetch
        )
        if needs_curve(endpoint) and self._keys is None:
            link.refused = "tcp:// needs the deployment's keys (MAAS_WORKER_KEYS_DIR)"
            log.error("worker at %s not used: %s", endpoint, link.refused)
        else:
            link.channel = open_channel(
                endpoint,
                loop=asyncio.get_running_loop(),
                context=self._context,
                keys=self._keys,
                on_message=link.receive,
                on_lost=lambda why: self._lose(link, why),
                on_refused=lambda why: self._refuse_wire(link, why),
            )
        self.links.append(link)
        return link

    def close(self) -> None:
        for link in self.links:
            link.fail_pending(WorkerLost("the gateway is shutting down"))
            link.channel.close()

    async def hear_from_every_worker(self, timeout_s: float) -> None:
        """Until every worker has answered once (or `timeout_s`): a gateway that starts serving
        before it knows who holds what would answer 'no ready worker' to its first requests
        (after a restart, the kernel hands it connections at once)."""
        deadline = time.monotonic() + timeout_s
        while any(link.status is None and not link.refused for link in self.links):
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self.changed.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(left):  # not wait_for: it can lose a cancel
                    await self.changed.wait()

    async def wait_for_a_worker(self) -> None:
        deadline = time.monotonic() + _LOAD_WAIT_S
        while not any(link.healthy for link in self.links):
            if self.links and all(link.refused for link in self.links):
                raise ModelLoadError(f"no usable worker: {self.links[0].refused}")
            if time.monotonic() > deadline:
                raise ModelLoadError("no worker came up to load it on")
            self.changed.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1.0):  # not wait_for: it can lose a cancel
                    await self.changed.wait()

    # what they say --------------------------------------------------------------------------

    def _on_status(self, link: WorkerLink, status: msg.WorkerStatus) -> None:
        if status.protocol != PROTOCOL:
            self._refuse(link, status)
            return
        link.refused = ""
        link.clock.sample(status.ping_sent, status.clock, time.monotonic())
        rebooted = link.status is None or link.status.boot != status.boot
        if rebooted and link.status is not None:
            # A new process answers on the old address: what the old one held is gone.
            link.fail_pending(WorkerLost(f"worker {link.name} restarted"))
        link.status = status
        link.last_seen = time.monotonic()
        if not link.healthy or rebooted:
            link.healthy = True
            self.changed.set()
            if rebooted and self.on_worker_boot is not None:
                self._own(self.on_worker_boot(link), f"sync {status.worker}")

    def _refuse(self, link: WorkerLink, status: msg.WorkerStatus) -> None:
        """A worker of another release: known to be there, never used, and shown with why."""
        why = f"speaks protocol {status.protocol}, this gateway {PROTOCOL} (mixed releases)"
        if link.refused != why:
            log.warning("worker %s at %s refused: %s", status.worker, link.endpoint, why)
        link.refused = why
        link.status = with_versions(status, ())
        link.last_seen = time.monotonic()
        if link.healthy:
            link.healthy = False
            link.fail_pending(WorkerLost(f"worker {status.worker} {why}"))
        self.changed.set()

    def _refuse_wire(self, link: WorkerLink, why: str) -> None:
        """The worker's socket speaks another wire (a release from before the stream wire)."""
        why = f"speaks another wire: {why}"
        if link.refused != why:
            log.warning("worker at %s refused: %s", link.endpoint, why)
        link.refused = why
        if link.healthy:
            link.healthy = False
            link.fail_pending(WorkerLost(f"worker {link.name} {why}"))
        self.changed.set()

    # health ---------------------------------------------------------------------------------

    async def heartbeat(self) -> None:
        last_tick = time.monotonic()
        while True:
            now = time.monotonic()
            stalled = now - last_tick - HEARTBEAT_S
            last_tick = now
            for link in self.links:
                if stalled > _STALL_S:
                    # This process did not run for a while (a long import, a GC pause, a busy
                    # machine): the replies it did not read are its own silence, not the
                    # worker's. The worker gets a fresh window to be heard.
                    link.last_seen += stalled
                if link.healthy and now - link.last_seen > DEAD_AFTER_S:
                    self._lose(link, f"it was silent for {DEAD_AFTER_S:.0f} s")
                link.expire(now)
                link.send(msg.Ping(0, PROTOCOL, time.monotonic()))
            await asyncio.sleep(HEARTBEAT_S)

    def _lose(self, link: WorkerLink, why: str) -> None:
        if link.healthy:
            log.warning("worker %s lost: %s", link.name, why)
        link.healthy = False
        link.fail_pending(WorkerLost(f"worker {link.name} was lost: {why}"))

    # views ----------------------------------------------------------------------------------

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
            for link in self.links
        ]

    def describe(self) -> list[dict[str, Any]]:
        out = []
        for link in self.links:
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
        for link in self.links:
            status = link.status
            out.workers.append(
                WorkerHealth(link.name, link.healthy, status.restarts if status else 0)
            )
            if status is None or not link.healthy:
                continue
            for stats in status.stats:
                out.merge(stats.key, stats.telemetry, worker=link.name)
        return out


def _stats_view(stats: msg.VersionStats) -> dict[str, Any]:
    # The summary of the histograms; the histograms themselves are for /metrics.
    return {"key": stats.key, "mean_batch_ms": stats.mean_batch_ms, **stats.telemetry.summary()}


def _silent(link: WorkerLink) -> str:
    return "not answering" if link.status is None else "stopped answering"
