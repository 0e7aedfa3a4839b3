"""One gateway's part in the control plane: the generation it serves, and telling the others.

A gateway serves generation G once it has read the registry's tables after G committed. It
learns of a new generation in these ways: its own writes (`Registry.on_change`), a datagram
from a gateway of the same `maas serve` (`LocalPeers`), on PostgreSQL a NOTIFY from any host
(`GenerationListener`), and, as the backstop for all of them, a one-row read of the generation
every `POLL_S`. It reloads its routing table only when the generation
moved, and says what it serves in its `gateways` row: at once after a move, else every `BEAT_S`.

`propagate(G)` is what makes an alias change mean what it says: the call returns once every
live gateway's row shows G or more, or after the propagation timeout, naming those that did not.

While the registry cannot be reached, the gateway keeps serving its last routing table and
reports the outage (`registry_error`, shown by /readyz); it picks up where it was on return.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from maas.control.peers import LocalPeers
from maas.control.routing import Router
from maas.errors import RegistryUnavailable
from maas.registry import notifications
from maas.registry.coordination import Coordination, GatewayRecord
from maas.registry.notifications import GenerationListener

log = logging.getLogger(__name__)

POLL_S = 0.25
BEAT_S = 1.0
# A gateway whose row is older than this is not waited for (it died, or cannot reach the DB).
LIVE_S = 3.0
PRUNE_AFTER_S = 60.0
_CONFIRM_POLL_S = 0.01
_CLOSE_S = 5.0


@dataclass(frozen=True, slots=True)
class Propagation:
    generation: int
    gateways: int
    confirmed: int
    missing: list[str] = field(default_factory=list)  # "host:pid"

    def as_json(self) -> dict[str, object]:
        return {"gateways": self.gateways, "confirmed": self.confirmed, "missing": self.missing}


@dataclass(frozen=True, slots=True)
class Identity:
    host: str
    pid: int
    started_at: float
    instance: int = 1  # more than one gateway in a process (tests): each its own row

    @property
    def id(self) -> str:
        suffix = f":{self.instance}" if self.instance > 1 else ""
        return f"{self.host}:{self.pid}{suffix}"

    @classmethod
    def of_this_process(cls) -> Identity:
        return cls(socket.gethostname(), os.getpid(), time.time(), next(_instances))


_instances = itertools.count(1)


class ControlPlane:
    def __init__(
        self,
        coordination: Coordination,
        router: Router,
        *,
        propagation_timeout_s: float,
        peers_dir: os.PathLike[str] | None = None,
        database_url: str | None = None,
        identity: Identity | None = None,
        poll_s: float = POLL_S,
    ) -> None:
        self._coordination = coordination
        self._router = router
        self._timeout_s = propagation_timeout_s
        self._poll_s = poll_s
        self.identity = identity or Identity.of_this_process()
        self._peers = LocalPeers(Path(peers_dir), self._heard) if peers_dir else None
        self._listener = (
            GenerationListener(database_url, self._heard)
            if database_url and notifications.listens(database_url)
            else None
        )
        self.served = 0
        self._target = 0
        self._wake = asyncio.Event()
        self._adopting = asyncio.Lock()
        self._listeners: list[Callable[[int], None]] = []
        self._tasks: list[asyncio.Task[None]] = []
        # Since when, and why, the registry cannot be reached (None while it can).
        self.registry_error: tuple[float, str] | None = None
        self.polls = 0  # generation reads made by the poll loop (tests count them)
        # The last outage this gateway saw, (from, to) in Unix time: right after one, every
        # gateway's row is old, and those live before it must still be waited for.
        self._last_outage: tuple[float, float] | None = None

    def on_adopt(self, listener: Callable[[int], None]) -> None:
        """Called with each generation this gateway starts to serve (after the reload)."""
        self._listeners.append(listener)

    # life cycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        generation = await self._coordination.generation()  # first: the tables are newer
        await self._router.refresh()
        self.served = self._target = generation
        await self._beat()
        if self._peers is not None:
            await self._peers.start()
        if self._listener is not None:
            self._listener.start()
        self._tasks = [
            asyncio.create_task(self._watch(), name="generation watch"),
            asyncio.create_task(self._heartbeat(), name="gateway heartbeat"),
        ]

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        if self._tasks:  # bounded: a stop must never hang on a loop that missed its cancel
            _, stuck = await asyncio.wait(self._tasks, timeout=_CLOSE_S)
            for task in stuck:
                log.error("%s did not stop when cancelled", task.get_name())
        if self._listener is not None:
            await self._listener.close()
        if self._peers is not None:
            self._peers.close()
        with contextlib.suppress(RegistryUnavailable):
            await self._coordination.forget(self.identity.id)

    # learning of generations ----------------------------------------------------------------

    def committed(self, generation: int) -> None:
        """This gateway committed `generation` (a `Registry.on_change` listener)."""
        if self._peers is not None:
            self._peers.broadcast(generation)
        self._heard(generation)

    def _heard(self, generation: int) -> None:
        if generation > self._target:
            self._target = generation
            self._wake.set()

    async def _watch(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._poll_s):  # not wait_for: it can lose a cancel
                    await self._wake.wait()
            self._wake.clear()
            try:
                if self._target <= self.served:
                    self.polls += 1
                    self._target = max(self._target, await self._coordination.generation())
                if self._target > self.served:
                    await self.adopt(self._target)
                if self.registry_error is not None:
                    await self._beat()  # back: be counted as live again before anything else
                self._recovered()
            except RegistryUnavailable as exc:
                self._failed(exc)
            except Exception:
                log.exception("generation watch failed; trying again")

    async def adopt(self, generation: int) -> None:
        """Reload the routing table and serve `generation` (committed before this call)."""
        async with self._adopting:
            if generation <= self.served:
                return
            await self._router.refresh()
            self.served = generation
        for listener in self._listeners:
            listener(generation)
        try:
            await self._beat()
        except RegistryUnavailable as exc:
            self._failed(exc)

    # presence -------------------------------------------------------------------------------

    async def _beat(self) -> None:
        me = self.identity
        await self._coordination.beat(
            GatewayRecord(me.id, me.host, me.pid, self.served, me.started_at, time.time())
        )

    async def _heartbeat(self) -> None:
        beats = 0
        while True:
            await asyncio.sleep(BEAT_S)
            beats += 1
            try:
                await self._beat()
                if beats % 30 == 0:
                    await self._coordination.prune(seen_before=time.time() - PRUNE_AFTER_S)
                self._recovered()
            except RegistryUnavailable as exc:
                self._failed(exc)
            except Exception:
                log.exception("gateway heartbeat failed; trying again")
            if self._peers is not None:
                await self._peers.rescan()

    def _failed(self, exc: RegistryUnavailable) -> None:
        if self.registry_error is None:
            log.warning("%s; serving from the last routing table", exc.message)
            self.registry_error = (time.time(), exc.message)

    def _recovered(self) -> None:
        if self.registry_error is not None:
            log.warning("the registry is reachable again")
            self._last_outage = (self.registry_error[0], time.time())
            self.registry_error = None

    def _live_since(self, now: float) -> float:
        """Rows newer than this are live gateways. Just after an outage, also those seen
        before it began: they could not write meanwhile, and write again within a poll."""
        since = now - LIVE_S
        if self.registry_error is not None:  # a write got through before the watch noticed
            since = min(since, self.registry_error[0] - LIVE_S)
        elif self._last_outage is not None and now - self._last_outage[1] < LIVE_S:
            since = min(since, self._last_outage[0] - LIVE_S)
        return since

    # read-your-writes -----------------------------------------------------------------------

    async def propagate(self, generation: int) -> Propagation:
        """Serve `generation` here, tell the others, and wait (bounded) until all of them do."""
        await self.adopt(generation)
        if self._peers is not None:
            self._peers.broadcast(generation)
        deadline = time.monotonic() + self._timeout_s
        while True:
            live = await self._coordination.gateways(seen_since=self._live_since(time.time()))
            others = [g for g in live if g.id != self.identity.id]
            behind = [g for g in others if g.generation < generation]
            if not behind or time.monotonic() >= deadline:
                break
            await asyncio.sleep(_CONFIRM_POLL_S)
        missing = [g.id for g in behind]  # "host:pid"
        if missing:
            log.warning(
                "generation %d not confirmed within %.1f s by gateway(s) %s",
                generation,
                self._timeout_s,
                ", ".join(missing),
            )
        total = len(others) + 1
        return Propagation(generation, total, total - len(missing), missing)

    async def gateways(self) -> list[GatewayRecord]:
        return await self._coordination.gateways(seen_since=time.time() - LIVE_S)

    async def leaders(self, prefix: str = "placement/") -> set[str]:
        """The gateways holding an unexpired lease: placement's, or those named `prefix`..."""
        return await self._coordination.lease_holders(now=time.time(), prefix=prefix)
