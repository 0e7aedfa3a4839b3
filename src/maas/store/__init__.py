"""Where artifacts live, by sha256: a local directory or S3-compatible object storage
(`maas.store.base.ArtifactStore`), sealed at rest when the deployment has a key
(`maas.store.sealing`), swept after a crash (`maas.store.sweeper`). Gateways write and read
it; workers only read (their own cache is `maas.worker.cache`)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from maas.store.base import ArtifactStore
from maas.store.sealing import ArtifactKey

if TYPE_CHECKING:
    from maas.config import Settings


def open_store(url: str | None, directory: Path, key: ArtifactKey | None) -> ArtifactStore:
    """The deployment's store: object storage at `url` (`s3://`), with `directory` as this
    process's scratch for uploads in progress; else the local directory itself."""
    if url:
        from maas.store.s3 import S3Store

        return S3Store(url, scratch=directory, key=key)
    from maas.store.local import LocalStore

    return LocalStore(directory, key=key)


def deployment_store(settings: Settings) -> ArtifactStore:
    """The store a deployment keeps artifacts in (`MAAS_ARTIFACT_URL`, else
    `MAAS_ARTIFACT_DIR`), with its key."""
    return open_store(settings.artifact_url, settings.artifact_dir, settings.sealing_key)
