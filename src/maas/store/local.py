"""Content-addressed artifact store: `<root>/sha256/<ab>/<digest>`, written once, verified on read.

An upload streams into a temporary file inside the store while its sha256 is computed; only a
complete, accepted upload is moved into place, so an interrupted or rejected one leaves nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from maas.errors import InsufficientStorage, InvalidArtifact, PayloadTooLarge
from maas.store.sealing import ArtifactKey, read_plain

CHUNK = 1024 * 1024


class ArtifactWriter:
    """Receives an upload chunk by chunk; `commit()` publishes it, `discard()` forgets it."""

    def __init__(self, store: ArtifactStore, max_bytes: int) -> None:
        self._store = store
        self._max_bytes = max_bytes
        self._hash = hashlib.sha256()
        self.size = 0
        self.tmp_path = store.tmp_dir / f"upload-{uuid.uuid4().hex}"
        self._file = open(self.tmp_path, "xb")  # noqa: SIM115 - closed in commit/discard

    def write(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.size > self._max_bytes:
            raise PayloadTooLarge(f"artifact exceeds the upload limit of {self._max_bytes} bytes")
        self._hash.update(chunk)
        with _out_of_space_is_507():
            self._file.write(chunk)

    @property
    def sha256(self) -> str:
        return self._hash.hexdigest()

    def finish(self) -> None:
        """The upload is complete: its file (`tmp_path`) can be inspected before `commit`."""
        if not self._file.closed:
            with _out_of_space_is_507():
                self._file.close()  # flushes: the disk may fill here too
        if self.size == 0:
            self.discard()
            raise InvalidArtifact("the uploaded file is empty")

    def commit(self) -> tuple[str, bool]:
        """Move the finished upload into place, sealed when the store has a key. Returns its
        digest and whether it is new."""
        self.finish()
        digest = self.sha256
        final = self._store.path_for(digest)
        if final.exists():
            self.tmp_path.unlink(missing_ok=True)
            return digest, False
        final.parent.mkdir(parents=True, exist_ok=True)
        placed = self.tmp_path
        key = self._store.key
        if key is not None:
            placed = self.tmp_path.with_name(self.tmp_path.name + ".sealed")
            try:
                with (
                    _out_of_space_is_507(),
                    open(self.tmp_path, "rb") as plain,
                    open(placed, "xb") as sealed,
                ):
                    key.seal(plain, sealed)
            except BaseException:
                placed.unlink(missing_ok=True)
                raise
            self.tmp_path.unlink(missing_ok=True)  # the plain bytes leave the disk
        os.chmod(placed, 0o444)
        os.replace(placed, final)
        return digest, True

    def discard(self) -> None:
        if not self._file.closed:
            self._file.close()
        self.tmp_path.unlink(missing_ok=True)


class ArtifactStore:
    def __init__(self, root: Path, key: ArtifactKey | None = None) -> None:
        self.root = root
        self.tmp_dir = root / "tmp"
        self.key = key  # seals what is stored (maas.store.sealing); None: stored plain

    def prepare(self) -> None:
        """Create the layout (leftovers of a crash are the sweeper's: `maas.store.sweeper`; a
        gateway starting next to others must not take their uploads in progress)."""
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        (self.root / "sha256").mkdir(parents=True, exist_ok=True)

    def temporaries(self) -> list[Path]:
        return sorted(self.tmp_dir.glob("upload-*"))

    def digests(self) -> list[str]:
        """Every artifact stored, by sha256."""
        return sorted(p.name for p in (self.root / "sha256").glob("??/*") if len(p.name) == 64)

    def path_for(self, sha256: str) -> Path:
        if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
            raise InvalidArtifact(f"not a sha256 digest: {sha256!r}")
        return self.root / "sha256" / sha256[:2] / sha256

    def writer(self, max_bytes: int) -> ArtifactWriter:
        return ArtifactWriter(self, max_bytes)

    def delete(self, sha256: str) -> None:
        self.path_for(sha256).unlink(missing_ok=True)

    async def put_bytes(self, data: bytes) -> tuple[str, bool]:
        """Store a small in-memory artifact (the demo models); same rules as an upload."""

        def _put() -> tuple[str, bool]:
            writer = self.writer(max_bytes=len(data) + 1)
            try:
                writer.write(data)
                return writer.commit()
            except BaseException:
                writer.discard()
                raise

        return await asyncio.to_thread(_put)


@contextlib.contextmanager
def _out_of_space_is_507() -> Iterator[None]:
    try:
        yield
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise InsufficientStorage(
                "the artifact store is out of disk space; nothing of this upload was kept"
            ) from None
        raise


def open_verified(path: Path, sha256: str, key: ArtifactKey | None) -> IO[bytes]:
    """A stored artifact, ready to load: opened (a sealed one decrypted into memory) and its
    sha256 checked; InvalidArtifact when it is missing, does not open, or does not match."""
    if not path.is_file():
        raise InvalidArtifact(f"artifact {sha256} is missing from the store")
    handle, digest = read_plain(path, key)
    if digest != sha256:
        handle.close()
        raise InvalidArtifact(
            f"artifact checksum mismatch: expected sha256 {sha256}, file has {digest}"
        )
    return handle


def content_sha256(path: Path, key: ArtifactKey | None) -> str:
    """The sha256 of the artifact a file holds (opened first when sealed)."""
    handle, digest = read_plain(path, key)
    handle.close()
    return digest
