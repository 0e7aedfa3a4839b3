"""The registry's control-plane rows: the generation, the live gateways and workers, leases.

Small, frequent statements (a one-row read every 250 ms, a heartbeat a second per gateway), kept
apart from the catalogue that `Registry` serves. Times are Unix seconds from the caller's clock,
so the gateways sharing a registry need clocks in step to well under the lease time (NTP is
plenty).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError

from maas.registry import repository as repo
from maas.registry.db import Sessions
from maas.registry.tables import Gateway, Lease, RegisteredWorker


@dataclass(frozen=True, slots=True)
class GatewayRecord:
    id: str
    host: str
    pid: int
    generation: int
    started_at: float
    last_seen: float

    @classmethod
    def from_row(cls, row: Gateway) -> GatewayRecord:
        return cls(row.id, row.host, row.pid, row.generation, row.started_at, row.last_seen)


@dataclass(frozen=True, slots=True)
class WorkerRecord:
    """A worker's announcement: where to reach it and what it has."""

    id: str
    endpoint: str
    host: str
    device: str
    memory_total: int
    threads: int
    protocol: int
    started_at: float
    last_seen: float

    @classmethod
    def from_row(cls, row: RegisteredWorker) -> WorkerRecord:
        return cls(
            row.id,
            row.endpoint,
            row.host,
            row.device,
            row.memory_total,
            row.threads,
            row.protocol,
            row.started_at,
            row.last_seen,
        )


@dataclass(frozen=True, slots=True)
class LeaseRecord:
    name: str
    holder: str
    term: int
    expires_at: float


class Coordination:
    def __init__(self, sessions: Sessions, *, writes: Sessions | None = None) -> None:
        self._sessions = sessions
        self._writes = writes or sessions

    async def generation(self) -> int:
        async with self._sessions() as session:
            return await repo.generation(session)

    # gateways -------------------------------------------------------------------------------

    async def beat(self, gateway: GatewayRecord) -> None:
        """Say that `gateway` is alive and serves `gateway.generation` (insert or update)."""
        values = {"generation": gateway.generation, "last_seen": gateway.last_seen}
        first = {"host": gateway.host, "pid": gateway.pid, "started_at": gateway.started_at}
        await self._update_or_insert(Gateway, gateway.id, values, first)

    async def gateways(self, *, seen_since: float) -> list[GatewayRecord]:
        query = select(Gateway).where(Gateway.last_seen >= seen_since).order_by(Gateway.id)
        async with self._sessions() as session:
            return [GatewayRecord.from_row(r) for r in (await session.execute(query)).scalars()]

    async def forget(self, gateway_id: str) -> None:
        async with self._writes.begin() as session:
            await session.execute(delete(Gateway).where(Gateway.id == gateway_id))

    async def prune(self, *, seen_before: float) -> int:
        """Drop gateways silent since `seen_before` (they died without saying goodbye)."""
        async with self._writes.begin() as session:
            result = await session.execute(delete(Gateway).where(Gateway.last_seen < seen_before))
            return int(result.rowcount)  # type: ignore[attr-defined]

    # workers --------------------------------------------------------------------------------

    async def announce_worker(self, worker: WorkerRecord) -> None:
        """Say that `worker` is there (insert or update; a restarted worker under the same id
        replaces what its predecessor said)."""
        values = {
            "endpoint": worker.endpoint,
            "host": worker.host,
            "device": worker.device,
            "memory_total": worker.memory_total,
            "threads": worker.threads,
            "protocol": worker.protocol,
            "started_at": worker.started_at,
            "last_seen": worker.last_seen,
        }
        await self._update_or_insert(RegisteredWorker, worker.id, values)

    async def registered_workers(self, *, seen_since: float) -> list[WorkerRecord]:
        query = (
            select(RegisteredWorker)
            .where(RegisteredWorker.last_seen >= seen_since)
            .order_by(RegisteredWorker.id)
        )
        async with self._sessions() as session:
            rows = (await session.execute(query)).scalars()
            return [WorkerRecord.from_row(r) for r in rows]

    async def forget_worker(self, worker_id: str) -> None:
        async with self._writes.begin() as session:
            await session.execute(delete(RegisteredWorker).where(RegisteredWorker.id == worker_id))

    async def _update_or_insert(
        self,
        table: type[Gateway] | type[RegisteredWorker],
        row_id: str,
        values: dict[str, Any],
        first: dict[str, Any] | None = None,
    ) -> None:
        """A heartbeat row: `values` updated, or the row inserted with `first` as well. Two
        statements, not a dialect's upsert: the same on SQLite and PostgreSQL."""
        async with self._writes.begin() as session:
            result = await session.execute(update(table).where(table.id == row_id).values(**values))
            if result.rowcount:  # type: ignore[attr-defined]
                return
        try:
            async with self._writes.begin() as session:
                session.add(table(id=row_id, **values, **(first or {})))
        except IntegrityError:
            pass  # inserted meanwhile by an earlier beat of the same sender: the next updates it

    # leases ---------------------------------------------------------------------------------

    async def acquire(self, name: str, *, holder: str, ttl_s: float, now: float) -> int | None:
        """Take or renew the lease `name` for `ttl_s`; the term it is held under, or None
        while another holder's lease runs."""
        expires = now + ttl_s
        async with self._writes.begin() as session:
            row = await session.get(Lease, name, with_for_update=True)
            if row is not None:
                if row.holder != holder and row.expires_at >= now:
                    return None
                if row.holder != holder:
                    row.holder, row.term = holder, row.term + 1
                row.expires_at = expires
                return row.term
        try:
            async with self._writes.begin() as session:
                session.add(Lease(name=name, holder=holder, term=1, expires_at=expires))
        except IntegrityError:
            return None  # another gateway created it first; it holds the lease
        return 1

    async def release(self, name: str, *, holder: str) -> None:
        """Give the lease up now (a clean stop), so the next holder need not wait it out."""
        async with self._writes.begin() as session:
            await session.execute(
                update(Lease)
                .where(Lease.name == name, Lease.holder == holder)
                .values(expires_at=0.0)
            )

    async def lease_holders(self, *, now: float, prefix: str = "") -> set[str]:
        """Who holds an unexpired lease (of those whose name starts with `prefix`)."""
        query = select(Lease.holder).where(
            Lease.expires_at >= now, Lease.name.startswith(prefix, autoescape=True)
        )
        async with self._sessions() as session:
            return set((await session.execute(query)).scalars())

    async def lease(self, name: str) -> LeaseRecord | None:
        async with self._sessions() as session:
            row = await session.get(Lease, name)
            if row is None:
                return None
            return LeaseRecord(row.name, row.holder, row.term, row.expires_at)
