"""Registry rows a test starts from, written through the `Registry` itself."""

from __future__ import annotations

from maas.registry.service import Registry
from maas.types import VersionStatus
from support.model_files import new_version

META = new_version()


async def ready_version(registry: Registry, model: str) -> int:
    """A new ready version of `model` (the same small artifact each time); its number."""
    record = await registry.add_version(
        model=model,
        sha256="a" * 64,
        size=1,
        meta=META,
        status=VersionStatus.REGISTERED,
        actor="t",
    )
    await registry.set_status(record.key, VersionStatus.READY)
    return record.version


async def model_with_ready_versions(registry: Registry, count: int) -> list[int]:
    """Model `m` with `count` ready versions; their numbers."""
    await registry.create_model(name="m", description="", actor="t")
    return [await ready_version(registry, "m") for _ in range(count)]
