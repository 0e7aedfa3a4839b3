"""Content-addressed artifact store: `<root>/sha256/<ab>/<digest>`, written once, verified on read.

An upload streams into a temporary file inside the store while its sha256 is computed; only a
complete, accepted upload is moved into place, so an interrupted or rejected one leaves nothing.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import uuid
from pathlib import Path

from maas.errors import InvalidArtifact, PayloadTooLarge

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
        self._file.write(chunk)

    @property
    def sha256(self) -> str:
        return self._hash.hexdigest()

    def commit(self) -> tuple[str, bool]:
        """Move the finished upload into place. Returns its digest and whether it is new."""
        self._file.close()
        if self.size == 0:
            self.discard()
            raise InvalidArtifact("the uploaded file is empty")
        digest = self.sha256
        final = self._store.path_for(digest)
        if final.exists():
            self.tmp_path.unlink(missing_ok=True)
            return digest, False
        final.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(self.tmp_path, 0o444)
        os.replace(self.tmp_path, final)
        return digest, True

    def discard(self) -> None:
        if not self._file.closed:
            self._file.close()
        self.tmp_path.unlink(missing_ok=True)


class ArtifactStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.tmp_dir = root / "tmp"

    def prepare(self) -> None:
        """Create the layout and sweep temporaries left by a crash."""
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        (self.root / "sha256").mkdir(parents=True, exist_ok=True)
        for leftover in self.tmp_dir.glob("upload-*"):
            leftover.unlink(missing_ok=True)

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


def verify_file(path: Path, sha256: str) -> None:
    """Re-hash a stored artifact before it is loaded; raises InvalidArtifact on any mismatch."""
    if not path.is_file():
        raise InvalidArtifact(f"artifact {sha256} is missing from the store")
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
    if digest.hexdigest() != sha256:
        raise InvalidArtifact(
            f"artifact checksum mismatch: expected sha256 {sha256}, file has {digest.hexdigest()}"
        )
