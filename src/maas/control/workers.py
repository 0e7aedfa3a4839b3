"""Workers that join a deployment by announcing themselves in the registry.

A `maas worker` given MAAS_DATABASE_URL runs a `WorkerAnnouncer` beside its loop: every
`ANNOUNCE_S` it writes its row (address, device, memory, threads, protocol, the time). Every
gateway of the deployment runs a `WorkerDiscovery`: it reads the rows seen within the last
`ttl_s`, connects to the workers it does not know yet, and lets go of those whose row went
stale (a worker that stopped announcing was gone for `ttl_s`; until then it shows as not
answering). Workers listed in MAAS_WORKER_ENDPOINTS are the gateway's own and never let go.

Every gateway with worker processes discovers, those with private `ipc://` workers of their
`maas serve` too: all of them serve requests through a joined worker. A joined worker belongs to
the registry's *shared* worker set, like every `tcp://` one, whatever gateway lists or finds it:
only the holder of the shared placement lease loads and unloads on it (`maas.control.leader`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import replace

from maas.errors import RegistryUnavailable
from maas.registry.coordination import Coordination, WorkerRecord

log = logging.getLogger(__name__)

ANNOUNCE_S = 2.0
DISCOVER_S = 1.0


class WorkerAnnouncer:
    """The worker side: its row, renewed for as long as the process lives (when it dies the
    row goes stale, and the gateways let it go after their TTL)."""

    def __init__(self, coordination: Coordination, worker: WorkerRecord) -> None:
        self._coordination = coordination
        self._worker = worker
        self._failing = False

    async def run(self) -> None:
        while True:
            await self.announce()
            await asyncio.sleep(ANNOUNCE_S)

    async def announce(self) -> None:
        worker = self._worker
        try:
            await self._coordination.announce_worker(replace(worker, last_seen=time.time()))
        except Exception as exc:  # down, not migrated yet, refused: the next try may do
            if not self._failing:
                log.warning("cannot announce worker %s in the registry: %s", worker.id, exc)
            self._failing = True
            return
        if self._failing:
            log.info("worker %s announced in the registry again", worker.id)
        self._failing = False


class WorkerDiscovery:
    """The gateway side: the pool follows the registry's live workers."""

    def __init__(
        self,
        coordination: Coordination,
        *,
        connect: Callable[[str], None],
        disconnect: Callable[[str], None],
        own: frozenset[str],
        ttl_s: float,
    ) -> None:
        self._coordination = coordination
        self._connect = connect
        self._disconnect = disconnect
        self._own = own
        self._ttl_s = ttl_s
        self._joined: set[str] = set()

    async def run(self) -> None:
        while True:
            try:
                await self.look()
            except RegistryUnavailable as exc:
                # Keep what is connected: a registry outage is not the workers'.
                log.debug("worker discovery waits for the registry: %s", exc.message)
            except Exception:
                log.exception("worker discovery failed; trying again")
            await asyncio.sleep(DISCOVER_S)

    async def look(self) -> None:
        rows = await self._coordination.registered_workers(seen_since=time.time() - self._ttl_s)
        live = {row.endpoint for row in rows} - self._own
        for endpoint in sorted(live - self._joined):
            log.info("worker at %s joined (registered in the registry)", endpoint)
            self._connect(endpoint)
        for endpoint in sorted(self._joined - live):
            log.info("worker at %s left (no announcement for %.0f s)", endpoint, self._ttl_s)
            self._disconnect(endpoint)
        self._joined = live
