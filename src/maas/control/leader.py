"""Which gateway places versions on a set of workers: the holder of a lease in the registry.

Every gateway that reaches the same workers competes for one lease row, named after those
workers. The holder renews it every `RENEW_S`; it counts itself leader only until `TTL_S` after
its last successful renewal *began* (minus a margin), which is before any other gateway can
take the lease over, so two never place at once. When the holder dies, another gateway takes
the lease within `TTL_S + RENEW_S`; a clean stop gives it up at once.

A gateway that runs its models itself (the in-process backend) places them alone:
`SoleLeader`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import socket
import time
from collections.abc import Callable, Sequence
from typing import Protocol

from maas.errors import RegistryUnavailable
from maas.registry.coordination import Coordination

log = logging.getLogger(__name__)

TTL_S = 3.0
RENEW_S = 0.75
_MARGIN_S = 0.5


class Leadership(Protocol):
    @property
    def is_leader(self) -> bool: ...

    def on_elected(self, callback: Callable[[], None]) -> None: ...

    async def start(self) -> None: ...

    async def close(self) -> None: ...


class SoleLeader:
    is_leader = True

    def on_elected(self, callback: Callable[[], None]) -> None:
        callback()

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None


def lease_name(endpoints: Sequence[str]) -> str:
    """One name per set of workers: `ipc://` paths are only the same workers on one host."""
    host = socket.gethostname()
    parts = sorted(f"{host}|{e}" if e.startswith("ipc://") else e for e in endpoints)
    return "placement/" + hashlib.sha256("\n".join(parts).encode()).hexdigest()[:24]


class LeaseLeader:
    def __init__(self, coordination: Coordination, *, name: str, holder: str) -> None:
        self._coordination = coordination
        self.name = name
        self.holder = holder
        self.term: int | None = None
        self._valid_until = 0.0
        self._callbacks: list[Callable[[], None]] = []
        self._task: asyncio.Task[None] | None = None

    @property
    def is_leader(self) -> bool:
        return time.monotonic() < self._valid_until

    def on_elected(self, callback: Callable[[], None]) -> None:
        self._callbacks.append(callback)

    async def start(self) -> None:
        await self._try()
        self._task = asyncio.create_task(self._keep(), name="leader lease")

    async def _keep(self) -> None:
        while True:
            await asyncio.sleep(RENEW_S)
            await self._try()

    async def _try(self) -> None:
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
                log.exception("renewing the placement lease failed")
            if was and not self.is_leader:
                log.warning("gateway %s no longer leads placement: %s", self.holder, exc)
            return
        if term is None:  # another gateway holds it
            if was:
                log.warning("gateway %s no longer leads placement", self.holder)
            self._valid_until = 0.0
            return
        self._valid_until = began + TTL_S - _MARGIN_S
        if not was or term != self.term:
            self.term = term
            log.info("gateway %s leads placement (term %d)", self.holder, term)
            for callback in self._callbacks:
                callback()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self.is_leader:
            self._valid_until = 0.0
            with contextlib.suppress(RegistryUnavailable):
                await self._coordination.release(self.name, holder=self.holder)
