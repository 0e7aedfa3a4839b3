"""From a ref (`digits`, `digits@3`, `digits@canary`) to one concrete, ready version.

Resolution reads an in-memory snapshot of the registry (models, version statuses and
signatures, alias routes), so the request path never touches the database. The control plane
(`maas.control.plane`) rebuilds it when the registry's generation moves; a change this process
made marks it stale, and the next request rebuilds it first (read-your-writes here). A ref that
names nothing is answered from the snapshot: junk costs no query.

An alias may have a shadow (`maas.types.Shadow`): `shadow_of` says whether one request is also
mirrored to it. A deployment without shadows pays one falsy check per request for that.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from maas.errors import (
    AliasNotFound,
    ModelNotFound,
    RegistryUnavailable,
    VersionNotFound,
    VersionNotReady,
)
from maas.registry.records import RolloutRecord, Route, VersionRecord
from maas.registry.service import Registry
from maas.types import DEFAULT_ALIAS, ModelRef, Shadow, VersionStatus

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ModelEntry:
    versions: dict[int, VersionRecord]
    aliases: dict[str, tuple[Route, ...]]
    shadows: dict[str, Shadow] = field(default_factory=dict)  # by alias, those that have one


@dataclass(frozen=True, slots=True)
class Snapshot:
    models: dict[str, ModelEntry]
    # Every alias's shadow by (model, alias): empty, as it mostly is, the request path skips
    # shadows with one falsy check.
    shadows: dict[tuple[str, str], Shadow] = field(default_factory=dict)
    # Each alias's newest rollout by (model, alias): the running ones are counted
    # (`maas.observability.rollout_tallies`), every one shows in /metrics.
    rollouts: dict[tuple[str, str], RolloutRecord] = field(default_factory=dict)


class Router:
    def __init__(self, registry: Registry) -> None:
        self._registry = registry
        self._snapshot = Snapshot(models={})
        # Changes this process made (`invalidate`), and how many of them the snapshot has read.
        self._asked = 1
        self._read = 0
        self._lock = asyncio.Lock()
        self.reloads = 0  # full reads of the routing table (tests count them)
        self._on_reload: list[Callable[[Snapshot], None]] = []
        registry.on_change(self.invalidate)

    def invalidate(self, generation: int = 0) -> None:
        self._asked += 1

    def on_reload(self, listener: Callable[[Snapshot], None]) -> None:
        """Called with each new snapshot as it replaces the last, before any request reads it."""
        self._on_reload.append(listener)

    @property
    def snapshot(self) -> Snapshot:
        return self._snapshot

    async def refresh(self) -> Snapshot:
        """Read the routing table again, now."""
        async with self._lock:
            return await self._reload()

    async def _reload(self) -> Snapshot:
        asked = self._asked
        self.reloads += 1
        models = await self._registry.list_models()
        rollouts = await self._registry.newest_rollouts()
        entries = {
            m.name: ModelEntry(
                versions={v.version: v for v in m.versions},
                aliases={a.alias: a.routes for a in m.aliases},
                shadows={a.alias: a.shadow for a in m.aliases if a.shadow is not None},
            )
            for m in models
        }
        self._snapshot = Snapshot(
            models=entries,
            shadows={
                (name, alias): shadow
                for name, entry in entries.items()
                for alias, shadow in entry.shadows.items()
            },
            rollouts={(r.model, r.alias): r for r in rollouts},
        )
        for listener in self._on_reload:
            listener(self._snapshot)
        self._read = max(self._read, asked)
        return self._snapshot

    async def current(self) -> Snapshot:
        """The snapshot, read again first if this process changed the registry since the read
        it came from began; the last one if the registry cannot be reached."""
        if self._read < self._asked:
            try:
                async with self._lock:
                    if self._read < self._asked:  # not read meanwhile by another caller
                        await self._reload()
            except RegistryUnavailable as exc:
                log.debug("routing table kept: %s", exc.message)
        return self._snapshot

    async def entry(self, model: str) -> ModelEntry | None:
        """A model's versions and aliases, or None if the snapshot does not know it."""
        return (await self.current()).models.get(model)

    async def resolve(self, ref: ModelRef, *, routing_key: str | None = None) -> VersionRecord:
        """The ready version this request runs on; raises NotFound or VersionNotReady."""
        return _resolve(await self.current(), ref, routing_key)

    def shadow_of(self, ref: ModelRef, resolved: VersionRecord) -> VersionRecord | None:
        """The version this request is also mirrored to, or None: only a request whose ref
        named an alias (or none: the default one) whose shadow is set, drawn in its `percent`,
        and only to a ready version other than the one `resolved` (the request's own).
        Reads the snapshot the request was resolved with (or a newer one); never waits."""
        snapshot = self._snapshot
        shadows = snapshot.shadows
        if not shadows or ref.version is not None:
            return None
        shadow = shadows.get((ref.model, ref.alias or DEFAULT_ALIAS))
        if shadow is None or random.random() * 100 >= shadow.percent:
            return None
        entry = snapshot.models.get(ref.model)
        candidate = None if entry is None else entry.versions.get(shadow.version)
        if (
            candidate is None
            or candidate.status is not VersionStatus.READY
            or candidate.version == resolved.version
        ):
            return None
        return candidate


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
        raise VersionNotReady(_not_ready(ref, version), model=ref.model, version=number)
    return version


def _not_ready(ref: ModelRef, version: VersionRecord) -> str:
    """Why `version` cannot serve `ref`, and what would make it serve."""
    name = f"{version.model}@{version.version}"
    if ref.version is not None:
        subject = name
    else:
        subject = f"{ref.model}@{ref.alias or DEFAULT_ALIAS} points at {name}, which"
    load = f"load it with `maas models load {name}`"
    match version.status:
        case VersionStatus.FAILED:
            error = version.load_error or "no error was recorded"
            return f"{subject} failed to load: {error}; upload a fixed version"
        case VersionStatus.LOADING:
            return f"{subject} is still loading; try again shortly"
        case VersionStatus.REGISTERED:
            return f"{subject} is registered but not loaded: {load}"
        case VersionStatus.UNLOADED:
            return f"{subject} is unloaded: {load}"
        case VersionStatus.ARCHIVED:
            return f"{subject} is archived and serves no traffic: use a ready version"
    return f"{subject} is {version.status.value}, not ready"


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
