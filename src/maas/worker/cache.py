"""A worker's own content-addressed artifact cache: files named by sha256, fetched in chunks
from a gateway, verified before they are kept, and reused after a restart.

No shared filesystem is needed between gateways and workers: a load names the artifact's
sha256. A worker given the deployment's object storage (`MAAS_ARTIFACT_URL` and credentials)
downloads it from there; otherwise, or when the store fails it, it asks the gateway that sent
the load for the bytes (`Fetch` / `Chunk` on the same link), and that gateway reads them from the
store. A partial or corrupt download never takes the final name.
"""

from __future__ import annotations

import asyncio
import logging
import os
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import IO

from maas.errors import InvalidArtifact, MaasError, ModelLoadError
from maas.store.local import content_sha256
from maas.store.s3 import S3Store
from maas.store.sealing import ArtifactKey
from maas.transport import messages as msg

log = logging.getLogger(__name__)

CHUNK_BYTES = 4 * 1024 * 1024

Ask = Callable[[int, int], Awaitable[tuple[msg.Chunk, bytes]]]


class ArtifactCache:
    def __init__(
        self, root: Path, key: ArtifactKey | None = None, store: S3Store | None = None
    ) -> None:
        self.root = root
        self._key = key  # the gateway sends sealed artifacts as they are stored
        self._store = store  # the deployment's object storage, when this worker may read it

    def find(self, sha256: str) -> Path | None:
        path = self.root / sha256
        return path if path.is_file() else None

    async def obtain(self, sha256: str, ask: Ask) -> Path:
        """`sha256` in the cache: there already, else from the object store, else from the
        gateway with `ask`."""
        cached = await asyncio.to_thread(self.find, sha256)
        if cached is not None:
            return cached
        if self._store is not None:
            try:
                return await self.download(sha256, self._store)
            except MaasError as exc:
                log.warning(
                    "artifact %s not downloaded from %s (%s); asking the gateway",
                    sha256[:12],
                    self._store.describe(),
                    exc.message,
                )
        return await self.fetch(sha256, ask)

    async def download(self, sha256: str, store: S3Store) -> Path:
        """Download `sha256` from the object store into the cache; its path there."""
        await asyncio.to_thread(self.root.mkdir, parents=True, exist_ok=True)
        partial = self.root / f".{sha256}.{uuid.uuid4().hex}.part"
        try:
            size = await asyncio.to_thread(store.download, sha256, partial)
            final = await self._keep(sha256, partial)
            log.info("downloaded artifact %s (%d bytes) from %s", sha256[:12], size, store.url)
            return final
        finally:
            await asyncio.to_thread(partial.unlink, missing_ok=True)

    async def _keep(self, sha256: str, partial: Path) -> Path:
        """Check what `partial` holds, then give it its final name."""
        try:  # a sealed one is opened to check it: the digest is the artifact's own
            got = await asyncio.to_thread(content_sha256, partial, self._key)
        except InvalidArtifact as exc:
            raise ModelLoadError(exc.message) from None
        if got != sha256:
            raise ModelLoadError(f"the artifact fetched for {sha256[:12]} has sha256 {got[:12]}")
        final = self.root / sha256
        await asyncio.to_thread(os.replace, partial, final)
        return final

    async def fetch(self, sha256: str, ask: Ask) -> Path:
        """Fetch `sha256` with `ask(offset, length)` into the cache; its path there."""
        await asyncio.to_thread(self.root.mkdir, parents=True, exist_ok=True)
        partial = self.root / f".{sha256}.{uuid.uuid4().hex}.part"
        handle: IO[bytes] = await asyncio.to_thread(partial.open, "wb")
        try:
            offset, total = 0, None
            while total is None or offset < total:
                chunk, data = await ask(offset, CHUNK_BYTES)
                if chunk.error:
                    raise ModelLoadError(
                        f"the gateway cannot send artifact {sha256[:12]}: {chunk.error}"
                    )
                if not data and offset < chunk.total:
                    raise ModelLoadError(f"artifact {sha256[:12]} ended early at byte {offset}")
                total = chunk.total
                await asyncio.to_thread(handle.write, data)
                offset += len(data)
            await asyncio.to_thread(handle.close)
            final = await self._keep(sha256, partial)
            log.info("fetched artifact %s (%d bytes) into %s", sha256[:12], offset, self.root)
            return final
        finally:
            handle.close()
            await asyncio.to_thread(partial.unlink, missing_ok=True)


def worker_cache(
    cache_dir: Path | None, key: ArtifactKey | None, artifact_url: str | None
) -> ArtifactCache | None:
    """A worker's cache in `cache_dir`; with the deployment's object storage
    (`MAAS_ARTIFACT_URL`) it downloads from there, else it asks gateways."""
    if cache_dir is None:
        return None
    store = S3Store(artifact_url, scratch=cache_dir, key=key) if artifact_url else None
    return ArtifactCache(cache_dir, key, store=store)
