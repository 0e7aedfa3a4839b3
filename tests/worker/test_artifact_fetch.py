"""Artifacts by content: a worker that does not see the gateway's file fetches it by sha256
over the same link into its own cache, verifies it, and reuses it after a restart."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch

from maas.dispatch.pool import WorkerPool
from maas.errors import InvalidArtifact, ModelLoadError
from maas.store.sealing import MAGIC, ArtifactKey
from maas.types import VersionKey
from maas.worker import cache as cache_module
from maas.worker.cache import ArtifactCache
from maas.worker.loop import WorkerServer
from support.worker_process import load_spec, write_artifact
from support.worker_thread import serving


class _Half(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :3] / 2


@contextmanager
def worker_thread(endpoint: str, cache: Path, key: ArtifactKey | None = None) -> Iterator[None]:
    server = WorkerServer(
        endpoint=endpoint,
        worker_id="far",
        device="cpu",
        cache=ArtifactCache(cache, key),
        artifact_key=key,
    )
    with serving(server):
        yield


class _Files:
    """The gateway's side of a fetch (an `ArtifactSource`), over the file `where` names for
    each sha256, read as a store reads its own."""

    def __init__(self, where: Callable[[str], Path]) -> None:
        self.where = where

    def read_range(self, sha256: str, offset: int, length: int) -> tuple[bytes, int]:
        try:
            with self.where(sha256).open("rb") as handle:
                handle.seek(offset)
                return handle.read(length), os.fstat(handle.fileno()).st_size
        except FileNotFoundError:
            raise InvalidArtifact(f"artifact {sha256} is missing from the store") from None


async def _serve_once(endpoint: str, where: Callable[[str], Path], spec) -> list:  # type: ignore[no-untyped-def,type-arg]
    pool = WorkerPool([endpoint], artifacts=_Files(where))
    await pool.start()
    try:
        await pool.load(spec)
        (out,) = await pool.infer(VersionKey("m", 1), [np.full((2, 4), 4.0, np.float32)])
        return out.tolist()
    finally:
        await pool.close()


async def test_a_worker_without_the_file_fetches_verifies_and_keeps_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cache_module, "CHUNK_BYTES", 1000)  # several chunks for a small file
    store = tmp_path / "gateway"
    store.mkdir()
    path, digest = write_artifact(store, _Half())
    elsewhere = dataclasses.replace(load_spec(path, digest), path="/not/on/this/host.pt")
    asked: list[str] = []

    def source(sha256: str) -> Path:
        asked.append(sha256)
        return store / f"{sha256}.pt"

    cache = tmp_path / "worker-cache"
    endpoint = f"ipc://{tmp_path}/far.sock"
    with worker_thread(endpoint, cache):
        assert await _serve_once(endpoint, source, elsewhere) == [[2.0] * 3] * 2
    assert (cache / digest).read_bytes() == path.read_bytes()
    assert len(asked) == -(-path.stat().st_size // 1000)  # one ask per chunk
    assert not [p for p in cache.iterdir() if p.name.endswith(".part")]
    # A restarted worker with the same cache loads without asking again.
    asked.clear()
    with worker_thread(endpoint, cache):
        assert await _serve_once(endpoint, source, elsewhere) == [[2.0] * 3] * 2
    assert asked == []


async def test_a_corrupt_or_missing_artifact_is_a_load_error_and_nothing_is_kept(
    tmp_path: Path,
) -> None:
    store = tmp_path / "gateway"
    store.mkdir()
    path, digest = write_artifact(store, _Half())
    tampered = store / "tampered.pt"
    tampered.write_bytes(path.read_bytes()[:-10] + b"0123456789")
    elsewhere = dataclasses.replace(load_spec(path, digest), path="/not/on/this/host.pt")
    cache = tmp_path / "worker-cache"
    endpoint = f"ipc://{tmp_path}/far.sock"
    with worker_thread(endpoint, cache):
        with pytest.raises(ModelLoadError, match="has sha256"):
            await _serve_once(endpoint, lambda sha: tampered, elsewhere)
        missing = pytest.raises(ModelLoadError, match=r"cannot send artifact .* missing from")
        with missing:
            await _serve_once(endpoint, lambda sha: store / "gone.pt", elsewhere)
    assert list(cache.iterdir()) == []


async def test_a_sealed_artifact_is_fetched_as_stored_and_opened_only_in_memory(
    tmp_path: Path,
) -> None:
    key = ArtifactKey.parse(ArtifactKey.generate())
    store = tmp_path / "gateway"
    store.mkdir()
    path, digest = write_artifact(store, _Half())
    sealed = store / "sealed.pt"
    with path.open("rb") as plain, sealed.open("wb") as out:
        key.seal(plain, out)
    elsewhere = dataclasses.replace(load_spec(path, digest), path="/not/on/this/host.pt")
    cache = tmp_path / "worker-cache"
    endpoint = f"ipc://{tmp_path}/far.sock"
    with worker_thread(endpoint, cache, key):
        assert await _serve_once(endpoint, lambda sha: sealed, elsewhere) == [[2.0] * 3] * 2
    kept = (cache / digest).read_bytes()
    assert kept.startswith(MAGIC)  # the cache holds it sealed, as the gateway stores it
    assert path.read_bytes()[:64] not in kept
    other = ArtifactKey.parse(ArtifactKey.generate())
    (cache / digest).unlink()
    refused = pytest.raises(ModelLoadError, match="does not open with this MAAS_ARTIFACT_KEY")
    with worker_thread(endpoint, cache, other), refused:
        await _serve_once(endpoint, lambda sha: sealed, elsewhere)
    assert list(cache.iterdir()) == []
