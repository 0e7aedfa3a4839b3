"""Where artifacts live, by sha256: a local directory or S3-compatible object storage
(`maas.store.base.ArtifactStore`), sealed at rest when the deployment has a key
(`maas.store.sealing`), swept after a crash (`maas.control.sweeper`). Gateways write and read
it; workers only read (their own cache is `maas.worker.cache`)."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from maas.store.base import ArtifactStore
from maas.store.sealing import ArtifactKey


def open_store(url: str | None, directory: Path, key: ArtifactKey | None) -> ArtifactStore:
    """The deployment's store: object storage at `url` (`s3://`), with `directory` as this
    process's scratch for uploads in progress; else the local directory itself."""
    if url:
        from maas.store.s3 import S3Store

        return S3Store(url, scratch=directory, key=key)
    from maas.store.local import LocalStore

    return LocalStore(directory, key=key)


class StoreSettings(Protocol):
    """What of the settings (`maas.config.Settings`) says where the artifacts are."""

    @property
    def artifact_url(self) -> str | None: ...
    @property
    def artifact_dir(self) -> Path: ...
    @property
    def sealing_key(self) -> ArtifactKey | None: ...


def deployment_store(settings: StoreSettings) -> ArtifactStore:
    """The store a deployment keeps artifacts in (`MAAS_ARTIFACT_URL`, else
    `MAAS_ARTIFACT_DIR`), with its key."""
    return open_store(settings.artifact_url, settings.artifact_dir, settings.sealing_key)
