"""Which gateway places versions on a set of workers: the holder of a lease in the registry.

The workers a gateway reaches fall into *worker sets*, each with one lease row in the registry:

- its **private** set: the `ipc://` workers it was configured with (those of its `maas serve`,
  in that supervisor's own run directory). Only gateways on this host listing the same paths
  can reach them, so the lease is named after the host and those paths (`private_lease_name`):
  two `maas serve` instances on one registry keep one leader each for their own workers;
- the **shared** set: every other worker, listed as `tcp://` or announced in the registry
  (`maas.control.workers`). Any gateway of the registry may reach any of them, whatever its
  MAAS_WORKER_ENDPOINTS says, so they all compete for one lease per registry, `SHARED_LEASE`.
  A gateway without private workers always competes; one with private workers only while it
  reaches a shared worker (else a lone `maas serve` would show two leaders for one set).

A gateway places only on the workers of the sets whose lease it holds (`WorkerSets.led`), so no
worker gets loads from two leaders. The holder renews a lease every `RENEW_S`; it counts itself
leader only until `TTL_S` after its last successful renewal *began* (minus a margin), which is
before any other gateway can take the lease over, so two never place at once. When the holder
dies, another gateway takes the lease within `TTL_S + RENEW_S`; a clean stop gives it up at once.

A gateway that runs its models itself (the in-process backend) places them alone:
`SoleLeader`.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import socket
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from typing import Protocol

from maas.errors import RegistryUnavailable
from maas.registry.coordination import Coordination
from maas.types import WorkerState

log = logging.getLogger(__name__)

TTL_S = 3.0
RENEW_S = 0.75
_MARGIN_S = 0.5

SHARED_LEASE = "placement/shared"


class Leadership(Protocol):
    @property
    def is_leader(self) -> bool:
        """Whether this gateway leads placement on some set of workers now."""
        ...

    def led(self, workers: Sequence[WorkerState]) -> list[list[WorkerState]]:
        """Of `workers`, those this gateway places on now, one list per worker set (each set
        is planned on its own)."""
        ...

    def leads(self, worker: str) -> bool:
        """Whether this gateway places on the worker named `worker` now."""
        ...

    def on_elected(self, callback: Callable[[], None]) -> None: ...

    async def start(self) -> None: ...

    async def close(self) -> None: ...


class SoleLeader:
    """The in-process backend's: its one worker is this process's own."""

    is_leader = True

    def led(self, workers: Sequence[WorkerState]) -> list[list[WorkerState]]:
        return [list(workers)]

    def leads(self, worker: str) -> bool:
        return True

    def on_elected(self, callback: Callable[[], None]) -> None:
        callback()

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None


def private_endpoints(endpoints: Sequence[str]) -> list[str]:
    """The endpoints of `endpoints` that form the gateway's private worker set."""
    return [e for e in endpoints if e.startswith("ipc://")]


def private_lease_name(endpoints: Sequence[str]) -> str:
    """The lease of a private set: `ipc://` paths are only the same workers on one host."""
    host = socket.gethostname()
    parts = sorted(f"{host}|{e}" for e in private_endpoints(endpoints))
    return "placement/" + hashlib.sha256("\n".join(parts).encode()).hexdigest()[:24]


class LeaseLeader:
    """One lease. `wanted`, when given, says whether to compete for it at all: while it says
    no, the lease is given up (at once, if held) and not asked for."""

    def __init__(
        self,
        coordination: Coordination,
        *,
        name: str,
        holder: str,
        wanted: Callable[[], bool] | None = None,
        unwanted_because: str = "it reaches none of its workers",
    ) -> None:
        self._coordination = coordination
        self._unwanted_because = unwanted_because
        self.name = name
        self.holder = holder
        self.term: int | None = None
        self._wanted = wanted
        self._valid_until = 0.0
        self._callbacks: list[Callable[[], None]] = []
        self._task: asyncio.Task[None] | None = None

    @property
    def is_leader(self) -> bool:
        return time.monotonic() < self._valid_until

    def led(self, workers: Sequence[WorkerState]) -> list[list[WorkerState]]:
        return [list(workers)] if self.is_leader else []

    def leads(self, worker: str) -> bool:
        return self.is_leader

    def on_elected(self, callback: Callable[[], None]) -> None:
        self._callbacks.append(callback)

    async def start(self) -> None:
        await self._try()
        self._task = asyncio.create_task(self._keep(), name=f"lease {self.name}")

    async def _keep(self) -> None:
        while True:
            await asyncio.sleep(RENEW_S)
            await self._try()

    async def _try(self) -> None:
        if self._wanted is not None and not self._wanted():
            if self.is_leader:
                log.info("gateway %s gives up %s: %s", *self._who, self._unwanted_because)
                await self._release()
            return
        was = self.is_leader
        began = time.monotonic()
        try:
            term = await self._coordination.acquire(
                self.name, holder=self.holder, ttl_s=TTL_S, now=time.time()
            )
        except Exception as exc:
            # Unreachable registry: the leadership lapses with the lease, and nobody places
            # until it is back (no other gateway can take the lease meanwhile either).
            if not isinstance(exc, RegistryUnavailable):
                log.exception("renewing the placement lease %s failed", self.name)
            if was and not self.is_leader:
                log.warning("gateway %s no longer leads %s: %s", *self._who, exc)
            return
        if term is None:  # another gateway holds it
            if was:
                log.warning("gateway %s no longer leads %s", *self._who)
            self._valid_until = 0.0
            return
        self._valid_until = began + TTL_S - _MARGIN_S
        if not was or term != self.term:
            self.term = term
            log.info("gateway %s leads placement on %s (term %d)", *self._who, term)
            for callback in self._callbacks:
                callback()

    @property
    def _who(self) -> tuple[str, str]:
        return self.holder, self.name

    async def _release(self) -> None:
        self._valid_until = 0.0
        try:
            await self._coordination.release(self.name, holder=self.holder)
        except RegistryUnavailable:
            pass  # it runs out by itself
        except Exception:
            log.exception("giving up the placement lease %s failed", self.name)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self.is_leader:
            await self._release()


class WorkerSets:
    """The leadership of a gateway with worker processes: one lease per worker set it reaches
    (see the module's docstring), and placement only on the sets whose lease it holds.

    `configured`: the gateway's MAAS_WORKER_ENDPOINTS (its `ipc://` ones are its private set).
    `workers`: the pool's workers now, as (name, endpoint) pairs (announced ones come and go)."""

    def __init__(
        self,
        coordination: Coordination,
        *,
        holder: str,
        configured: Sequence[str],
        workers: Callable[[], Iterable[tuple[str, str]]],
    ) -> None:
        self._private_endpoints = frozenset(private_endpoints(configured))
        self._workers = workers
        self.private: LeaseLeader | None = None
        if self._private_endpoints:
            self.private = LeaseLeader(
                coordination, name=private_lease_name(configured), holder=holder
            )
        self.shared = LeaseLeader(
            coordination,
            name=SHARED_LEASE,
            holder=holder,
            wanted=self._reaches_shared if self.private is not None else None,
        )

    @property
    def leases(self) -> list[LeaseLeader]:
        return [lease for lease in (self.private, self.shared) if lease is not None]

    @property
    def is_leader(self) -> bool:
        return any(lease.is_leader for lease in self.leases)

    def _lease_of(self, endpoint: str) -> LeaseLeader:
        if endpoint in self._private_endpoints and self.private is not None:
            return self.private
        return self.shared

    def _reaches_shared(self) -> bool:
        return any(e not in self._private_endpoints for _, e in self._workers())

    def _sets(self) -> dict[str, LeaseLeader]:
        """Worker name → the lease of its set. A name two workers of different sets answer to
        belongs to neither: placing on it could reach the other set's worker."""
        by_name: dict[str, set[str]] = defaultdict(set)
        leases: dict[str, LeaseLeader] = {}
        for name, endpoint in self._workers():
            lease = self._lease_of(endpoint)
            by_name[name].add(lease.name)
            leases[name] = lease
        return {name: leases[name] for name, names in by_name.items() if len(names) == 1}

    def led(self, workers: Sequence[WorkerState]) -> list[list[WorkerState]]:
        sets = self._sets()
        groups: dict[str, list[WorkerState]] = {}
        for worker in workers:
            lease = sets.get(worker.name)
            if lease is not None and lease.is_leader:
                groups.setdefault(lease.name, []).append(worker)
        return list(groups.values())

    def leads(self, worker: str) -> bool:
        lease = self._sets().get(worker)
        return lease is not None and lease.is_leader

    def on_elected(self, callback: Callable[[], None]) -> None:
        for lease in self.leases:
            lease.on_elected(callback)

    async def start(self) -> None:
        for lease in self.leases:
            await lease.start()

    async def close(self) -> None:
        for lease in self.leases:
            await lease.close()
