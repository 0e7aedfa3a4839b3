"""A worker's own content-addressed artifact cache: files named by sha256, fetched in chunks
from a gateway, verified before they are kept, and reused after a restart.

No shared filesystem is needed between gateways and workers: a load names the artifact's
sha256 and the worker asks the gateway that sent it for the bytes (`Fetch` / `Chunk` on the same
ZeroMQ link). A partial or corrupt download never takes the final name.
"""

from __future__ import annotations

import asyncio
import logging
import os
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import IO

from maas.errors import InvalidArtifact, ModelLoadError
from maas.store.local import content_sha256
from maas.store.sealing import ArtifactKey
from maas.transport import messages as msg

log = logging.getLogger(__name__)

CHUNK_BYTES = 4 * 1024 * 1024

Ask = Callable[[int, int], Awaitable[tuple[msg.Chunk, bytes]]]


class ArtifactCache:
    def __init__(self, root: Path, key: ArtifactKey | None = None) -> None:
        self.root = root
        self._key = key  # the gateway sends sealed artifacts as they are stored

    def find(self, sha256: str) -> Path | None:
        path = self.root / sha256
        return path if path.is_file() else None

    async def fetch(self, sha256: str, ask: Ask) -> Path:
        """Fetch `sha256` with `ask(offset, length)` into the cache; its path there."""
        await asyncio.to_thread(self.root.mkdir, parents=True, exist_ok=True)
        final = self.root / sha256
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
            try:  # a sealed one is opened to check it: the digest is the artifact's own
                got = await asyncio.to_thread(content_sha256, partial, self._key)
            except InvalidArtifact as exc:
                raise ModelLoadError(exc.message) from None
            if got != sha256:
                raise ModelLoadError(
                    f"the artifact fetched for {sha256[:12]} has sha256 {got[:12]}"
                )
            await asyncio.to_thread(os.replace, partial, final)
            log.info("fetched artifact %s (%d bytes) into %s", sha256[:12], offset, self.root)
            return final
        finally:
            handle.close()
            await asyncio.to_thread(partial.unlink, missing_ok=True)
