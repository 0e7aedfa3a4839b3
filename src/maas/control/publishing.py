"""A new version from an upload: artifact into the store, checks, row into the registry, load.

Checks run before the version exists, so a file that cannot load costs no version number: the
archive must be a TorchScript or `torch.export` file of the declared format (its zip layout),
and with `wait` a worker trial-loads it (load, warm-up, golden examples) and keeps nothing. If
anything fails before the row is written, the artifact is removed again unless another version
already uses the same bytes, so a rejected upload leaves no file, no row and no empty model.
"""

from __future__ import annotations

import asyncio

from maas.control.deployment import Deployer
from maas.control.meta import VersionMeta
from maas.dispatch.backend import InferenceBackend
from maas.registry.records import VersionRecord
from maas.registry.service import Registry, draft_record
from maas.store.archive import check_archive
from maas.store.base import ArtifactStore, ArtifactWriter
from maas.types import VersionStatus


async def publish_version(
    *,
    registry: Registry,
    store: ArtifactStore,
    deployer: Deployer,
    backend: InferenceBackend,
    model: str,
    writer: ArtifactWriter,
    meta: VersionMeta,
    actor: str,
    wait: bool = False,
    create_model: bool = False,
) -> VersionRecord:
    """The new version; with `wait`, once its load has finished (`ready` or `failed`)."""
    await asyncio.to_thread(writer.finish)
    try:
        # The plain upload is inspected before it is stored (sealed, with MAAS_ARTIFACT_KEY).
        await asyncio.to_thread(check_archive, writer.tmp_path, meta.format)
    except BaseException:
        await asyncio.to_thread(writer.discard)
        raise
    digest, is_new = await asyncio.to_thread(writer.commit)
    location = store.location(digest)
    new_version = meta.to_new_version()
    try:
        if wait and meta.load:
            draft = draft_record(model, sha256=digest, size=writer.size, meta=new_version)
            await backend.check(draft.load_spec(location))
        record = await registry.add_version(
            model=model,
            sha256=digest,
            size=writer.size,
            meta=new_version,
            status=VersionStatus.REGISTERED,
            actor=actor,
            create_model=create_model,
        )
    except BaseException:
        if is_new and await _unused(registry, digest):
            await asyncio.to_thread(store.delete, digest)
        raise
    if meta.load:
        record = await deployer.start_load(record.key)
        if wait:
            record = await deployer.wait_settled(record.key)
    return record


async def _unused(registry: Registry, digest: str) -> bool:
    try:
        return await registry.artifact_users(digest) == 0
    except Exception:
        return False  # cannot tell: keeping an orphan file is safer than deleting a used one
