"""Artifacts served to workers: a worker without the file on its host asks for it by sha256,
piece by piece (`Fetch`), over the link it serves on, and gets each piece as a `Chunk`."""

from __future__ import annotations

import asyncio
from typing import Protocol

from maas.dispatch.link import WorkerLink
from maas.errors import MaasError
from maas.transport import messages as msg

# The most one piece carries, whatever a worker asks: the read is held in memory until sent.
MAX_PIECE = 64 * 1024 * 1024


class ArtifactSource(Protocol):
    """Where the gateway keeps artifacts (`maas.store`): all the serving side reads of it."""

    def read_range(self, sha256: str, offset: int, length: int) -> tuple[bytes, int]:
        """Bytes [offset, offset + length) of the stored file, as stored, and the file's size.
        Blocks; InvalidArtifact when the artifact is missing, or OSError."""
        ...


async def send_artifact(link: WorkerLink, fetch: msg.Fetch, source: ArtifactSource | None) -> None:
    """Answer one `Fetch`: the piece, or why there is none (the worker's load fails with it)."""
    if source is None:
        link.send(msg.Chunk(fetch.id, 0, "this gateway keeps no artifacts"), [b""])
        return
    length = max(0, min(fetch.length, MAX_PIECE))
    try:
        data, total = await asyncio.to_thread(source.read_range, fetch.sha256, fetch.offset, length)
    except (OSError, MaasError) as exc:
        link.send(msg.Chunk(fetch.id, 0, f"{type(exc).__name__}: {exc}"), [b""])
        return
    link.send(msg.Chunk(fetch.id, total), [data])
