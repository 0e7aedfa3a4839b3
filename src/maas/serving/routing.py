"""From a ref (`digits`, `digits@3`, `digits@canary`) to one concrete, ready version.

Resolution reads an in-memory snapshot of the registry (models, version statuses and
signatures, alias routes), so the request path never touches the database. The snapshot is
rebuilt after every local registry change and every few seconds for changes made elsewhere; a
miss forces one rebuild before the answer is 404.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import time
from dataclasses import dataclass

from maas.errors import (
    AliasNotFound,
    ModelNotFound,
    VersionNotFound,
    VersionNotReady,
)
from maas.registry.records import Route, VersionRecord
from maas.registry.service import Registry
from maas.types import DEFAULT_ALIAS, ModelRef, VersionStatus

STALE_READY_RECHECK_S = 0.25


@dataclass(frozen=True, slots=True)
class ModelEntry:
    versions: dict[int, VersionRecord]
    aliases: dict[str, tuple[Route, ...]]


@dataclass(frozen=True, slots=True)
class Snapshot:
    models: dict[str, ModelEntry]


class Router:
    def __init__(self, registry: Registry) -> None:
        self._registry = registry
        self._snapshot = Snapshot(models={})
        self._dirty = True
        self._refreshed_at = 0.0
        self._lock = asyncio.Lock()
        registry.on_change(self.invalidate)

    def invalidate(self) -> None:
        self._dirty = True

    @property
    def snapshot(self) -> Snapshot:
        return self._snapshot

    async def refresh(self) -> Snapshot:
        async with self._lock:
            self._dirty = False
            self._refreshed_at = time.monotonic()
            models = await self._registry.list_models()
            self._snapshot = Snapshot(
                models={
                    m.name: ModelEntry(
                        versions={v.version: v for v in m.versions},
                        aliases={a.alias: a.routes for a in m.aliases},
                    )
                    for m in models
                }
            )
            return self._snapshot

    async def current(self) -> Snapshot:
        if self._dirty:
            return await self.refresh()
        return self._snapshot

    async def recent(self, max_age_s: float = STALE_READY_RECHECK_S) -> Snapshot:
        """The snapshot, read again first if it is older than `max_age_s`: for answers such as
        'not ready' that another gateway's change may have made stale."""
        if self._dirty or time.monotonic() - self._refreshed_at > max_age_s:
            return await self.refresh()
        return self._snapshot

    async def entry(self, model: str) -> ModelEntry | None:
        """A model's versions and aliases, read again once if the snapshot does not know it."""
        found = (await self.current()).models.get(model)
        if found is None:  # perhaps created by another process since the last refresh
            found = (await self.refresh()).models.get(model)
        return found

    async def resolve(self, ref: ModelRef, *, routing_key: str | None = None) -> VersionRecord:
        """The ready version this request runs on; raises NotFound or VersionNotReady."""
        try:
            return _resolve(await self.current(), ref, routing_key)
        except (ModelNotFound, VersionNotFound, AliasNotFound):
            # Perhaps created by another process since the last refresh.
            return _resolve(await self.refresh(), ref, routing_key)
        except VersionNotReady:
            # Perhaps made ready by another gateway process; asked of the registry at most
            # every STALE_READY_RECHECK_S, so clients calling a failed version cost no query.
            if time.monotonic() - self._refreshed_at < STALE_READY_RECHECK_S:
                raise
            return _resolve(await self.refresh(), ref, routing_key)


def _resolve(snapshot: Snapshot, ref: ModelRef, routing_key: str | None) -> VersionRecord:
    entry = snapshot.models.get(ref.model)
    if entry is None:
        raise ModelNotFound(f"model '{ref.model}' does not exist")
    if ref.version is not None:
        number = ref.version
    else:
        alias = ref.alias or DEFAULT_ALIAS
        routes = entry.aliases.get(alias)
        if not routes:
            raise AliasNotFound(f"model '{ref.model}' has no alias '{alias}'")
        number = pick_route(routes, routing_key)
    version = entry.versions.get(number)
    if version is None:
        raise VersionNotFound(f"model '{ref.model}' has no version {number}")
    if version.status is not VersionStatus.READY:
        detail = f": {version.load_error}" if version.load_error else ""
        raise VersionNotReady(
            f"{ref.model}@{number} is {version.status.value}, not ready{detail}",
            model=ref.model,
            version=number,
        )
    return version


def pick_route(routes: tuple[Route, ...], routing_key: str | None) -> int:
    """Weighted choice; the same routing key lands on the same version while routes stay put."""
    if len(routes) == 1:
        return routes[0].version
    total = sum(r.weight for r in routes)
    if routing_key is not None:
        point = int.from_bytes(hashlib.sha256(routing_key.encode()).digest()[:8], "big") % total
    else:
        point = random.randrange(total)
    for route in routes:
        if point < route.weight:
            return route.version
        point -= route.weight
    return routes[-1].version
