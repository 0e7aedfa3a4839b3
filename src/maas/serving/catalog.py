"""What a ref names and whether it can serve: the answers behind every protocol's status and
metadata routes (KServe v1 / TF Serving under `/v1/models`, the Open Inference Protocol
under `/v2/models`), read from the routing snapshot, never from the database per request.
"""

from __future__ import annotations

from dataclasses import dataclass

from maas.control.routing import Router
from maas.dispatch.backend import InferenceBackend
from maas.errors import AliasNotFound, ModelNotFound, VersionNotFound
from maas.registry.records import VersionRecord
from maas.types import DEFAULT_ALIAS, ModelRef, VersionStatus


@dataclass(frozen=True, slots=True)
class Listing:
    """A ref, looked up.

    `targets` are the concrete versions it resolves to: the version it names, or its alias's
    routes (empty for a bare name whose model has no `production` alias yet). `ready` is true
    when each of them can take requests now: ready in the registry and loaded on a worker.
    """

    model: str
    targets: tuple[VersionRecord, ...]
    versions: tuple[VersionRecord, ...]  # every version of the model, oldest first
    ready: bool

    def named(self) -> tuple[VersionRecord, ...]:
        """The versions an answer names: the ref's targets, else every ready version."""
        return self.targets or tuple(v for v in self.versions if v.status is VersionStatus.READY)

    def describing(self) -> VersionRecord:
        """The version whose signature stands for the ref: its first target, else the newest
        ready version, else the newest; VersionNotFound for a model without versions."""
        if self.targets:
            return self.targets[0]
        ready = [v for v in self.versions if v.status is VersionStatus.READY]
        candidates = ready or list(self.versions)
        if not candidates:
            raise VersionNotFound(f"model '{self.model}' has no versions yet")
        return candidates[-1]


class Catalog:
    def __init__(self, router: Router, backend: InferenceBackend) -> None:
        self._router = router
        self._backend = backend

    async def model_names(self) -> list[str]:
        return sorted((await self._router.current()).models)

    async def lookup(self, ref: ModelRef) -> Listing:
        """Raises ModelNotFound, VersionNotFound or AliasNotFound (a bare name never does)."""
        entry = await self._router.entry(ref.model)
        if entry is None:
            raise ModelNotFound(f"model '{ref.model}' does not exist")
        if ref.version is not None:
            numbers: tuple[int, ...] = (ref.version,)
        else:
            routes = entry.aliases.get(ref.alias or DEFAULT_ALIAS)
            if routes is None and ref.alias is not None:
                raise AliasNotFound(f"model '{ref.model}' has no alias '{ref.alias}'")
            numbers = tuple(route.version for route in routes or ())
        targets = []
        for number in numbers:
            version = entry.versions.get(number)
            if version is None:
                raise VersionNotFound(f"model '{ref.model}' has no version {number}")
            targets.append(version)
        ready = bool(targets) and all(
            v.status is VersionStatus.READY and self._backend.is_loaded(v.key) for v in targets
        )
        return Listing(
            model=ref.model,
            targets=tuple(targets),
            versions=tuple(entry.versions[n] for n in sorted(entry.versions)),
            ready=ready,
        )
