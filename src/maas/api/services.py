"""The objects one gateway process is made of, built by `create_app`'s lifespan."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from maas.api.drain import Drain
from maas.auth.keys import Authenticator
from maas.config import Settings
from maas.control.deployment import Deployer
from maas.control.leader import Leadership
from maas.control.plane import ControlPlane
from maas.control.routing import Router, Snapshot
from maas.dispatch.backend import InferenceBackend
from maas.observability.metrics import RequestMetrics
from maas.registry.service import Registry
from maas.serving.catalog import Catalog
from maas.serving.dataplane import DataPlane
from maas.serving.shadow import Mirror
from maas.store.base import ArtifactStore
from maas.types import VersionKey, VersionStatus


@dataclass
class Readiness:
    """What /readyz checks besides loaded aliases; each flag is set once its step is done."""

    migrated: bool = False
    bootstrap_key: bool = False
    demo: bool = True
    reasons: list[str] = field(default_factory=list)


@dataclass
class Services:
    settings: Settings
    registry: Registry
    store: ArtifactStore
    backend: InferenceBackend
    deployer: Deployer
    router: Router
    auth: Authenticator
    dataplane: DataPlane
    catalog: Catalog
    readiness: Readiness
    metrics: RequestMetrics
    shadow: Mirror  # the requests mirrored to aliases' shadows
    plane: ControlPlane
    leadership: Leadership
    drain: Drain = field(default_factory=Drain)

    async def not_ready_reasons(self) -> list[str]:
        reasons = []
        if self.drain.active:
            reasons.append("draining: this gateway process is stopping")
        if not self.readiness.migrated:
            reasons.append("migrations have not run")
        if not self.readiness.bootstrap_key:
            reasons.append("bootstrap admin key not created")
        if not self.readiness.demo:
            reasons.append("demo models are still being trained and loaded")
        reasons.extend(self.readiness.reasons)
        return reasons + self._version_reasons(await self.router.current())

    def degradations(self) -> list[str]:
        """What is wrong but does not stop this gateway serving (shown by /readyz)."""
        error = self.plane.registry_error
        if error is None:
            return []
        since = datetime.fromtimestamp(error[0], UTC).isoformat(timespec="seconds")
        return [f"registry unavailable since {since}: {error[1]}; serving the last routing table"]

    def _version_reasons(self, snapshot: Snapshot) -> list[str]:
        reasons = []
        for name, entry in sorted(snapshot.models.items()):
            for alias, routes in sorted(entry.aliases.items()):
                for route in routes:
                    version = entry.versions.get(route.version)
                    if version is not None and version.status is not VersionStatus.READY:
                        reasons.append(
                            f"{name}/{alias} -> version {route.version} is {version.status.value}"
                        )
                    elif not self.backend.is_loaded(VersionKey(name, route.version)):
                        reasons.append(f"{name}/{alias} -> version {route.version} is not loaded")
        return reasons
