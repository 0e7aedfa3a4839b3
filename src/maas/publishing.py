"""A new version from an upload: artifact into the store, row into the registry, load started.

If anything after the artifact is published fails, the artifact is removed again unless another
version already uses the same bytes, so a rejected upload leaves no file and no row behind.
"""

from __future__ import annotations

import asyncio

from maas.artifacts import ArtifactStore, ArtifactWriter
from maas.control.deployment import Deployer
from maas.meta import VersionMeta
from maas.registry.records import VersionRecord
from maas.registry.service import Registry
from maas.types import VersionStatus


async def publish_version(
    *,
    registry: Registry,
    store: ArtifactStore,
    deployer: Deployer,
    model: str,
    writer: ArtifactWriter,
    meta: VersionMeta,
    actor: str,
) -> VersionRecord:
    digest, is_new = await asyncio.to_thread(writer.commit)
    try:
        record = await registry.add_version(
            model=model,
            sha256=digest,
            size=writer.size,
            meta=meta.to_new_version(),
            status=VersionStatus.REGISTERED,
            actor=actor,
        )
    except BaseException:
        if is_new and await _unused(registry, digest):
            await asyncio.to_thread(store.delete, digest)
        raise
    if meta.load:
        record = await deployer.start_load(record.key)
    return record


async def _unused(registry: Registry, digest: str) -> bool:
    try:
        return await registry.artifact_users(digest) == 0
    except Exception:
        return False  # cannot tell: keeping an orphan file is safer than deleting a used one
