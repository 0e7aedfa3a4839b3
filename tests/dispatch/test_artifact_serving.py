"""A worker's `Fetch` answered from the gateway's store (`ArtifactSource.read_range`): the piece
and the stored size, or why there is none; no worker, no torch."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from maas.dispatch.artifacts import MAX_PIECE, ArtifactSource, send_artifact
from maas.errors import InvalidArtifact
from maas.store.local import LocalStore
from maas.transport import messages as msg

DIGEST = "ab" * 32


class _Link:
    """What `send_artifact` uses of a worker link: what it queued for the worker."""

    name = "w0"

    def __init__(self) -> None:
        self.sent: list[tuple[msg.Single, list[Any]]] = []

    def send(self, request: msg.Single, buffers: list[Any] | None = None) -> None:
        self.sent.append((request, buffers or []))


class _Store:
    def __init__(self, data: bytes | Exception) -> None:
        self.data = data
        self.asked: list[tuple[str, int, int]] = []

    def read_range(self, sha256: str, offset: int, length: int) -> tuple[bytes, int]:
        self.asked.append((sha256, offset, length))
        if isinstance(self.data, Exception):
            raise self.data
        return self.data[offset : offset + length], len(self.data)


async def _answer(source: ArtifactSource | None, offset: int, length: int) -> tuple[Any, bytes]:
    link = _Link()
    await send_artifact(link, msg.Fetch(7, DIGEST, offset, length), source)  # type: ignore[arg-type]
    ((chunk, buffers),) = link.sent
    assert isinstance(chunk, msg.Chunk)
    assert chunk.id == 7
    (data,) = buffers
    return chunk, data


async def test_a_piece_comes_with_the_stored_size() -> None:
    store = _Store(b"0123456789")
    chunk, data = await _answer(store, 3, 4)
    assert (chunk.total, chunk.error, data) == (10, "", b"3456")
    assert store.asked == [(DIGEST, 3, 4)]


async def test_a_piece_is_never_larger_than_the_cap_whatever_is_asked() -> None:
    store = _Store(b"x")
    await _answer(store, 0, 10 * MAX_PIECE)
    await _answer(store, 0, -5)
    assert [length for _, _, length in store.asked] == [MAX_PIECE, 0]


@pytest.mark.parametrize(
    ("failure", "said"),
    [
        (InvalidArtifact(f"artifact {DIGEST} is missing from the store"), "InvalidArtifact: "),
        (PermissionError("denied"), "PermissionError: denied"),
    ],
)
async def test_a_store_that_cannot_read_it_says_why(failure: Exception, said: str) -> None:
    chunk, data = await _answer(_Store(failure), 0, 10)
    assert chunk.total == 0
    assert chunk.error.startswith(said)
    assert data == b""


async def test_a_gateway_without_a_store_says_so() -> None:
    chunk, data = await _answer(None, 0, 10)
    assert (chunk.total, chunk.error, data) == (0, "this gateway keeps no artifacts", b"")


async def test_the_local_store_is_a_source(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    store.prepare()
    missing, _ = await _answer(store, 0, 10)
    assert missing.error == f"InvalidArtifact: artifact {DIGEST} is missing from the store"
    store.path_for(DIGEST).parent.mkdir(parents=True)
    store.path_for(DIGEST).write_bytes(b"0123456789")
    chunk, data = await _answer(store, 8, 4)
    assert (chunk.total, chunk.error, data) == (10, "", b"89")
