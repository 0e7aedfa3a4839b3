"""Artifacts in a local directory (`MAAS_ARTIFACT_DIR`, the embedded default):
`<root>/sha256/<ab>/<digest>`, written once, read-only, verified on read.

Also what a worker uses to open a file it holds (`open_verified`), wherever it came from.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import IO

from maas.errors import InvalidArtifact
from maas.store.base import check_digest, is_digest, sealed_copy
from maas.store.sealing import ArtifactKey, read_plain


class LocalStore:
    def __init__(self, root: Path, key: ArtifactKey | None = None) -> None:
        self.root = root
        self.tmp_dir = root / "tmp"
        self.key = key

    def prepare(self) -> None:
        """Create the layout (leftovers of a crash are the sweeper's: `maas.control.sweeper`; a
        gateway starting next to others must not take their uploads in progress)."""
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        (self.root / "sha256").mkdir(parents=True, exist_ok=True)

    def describe(self) -> str:
        return str(self.root)

    def path_for(self, sha256: str) -> Path:
        check_digest(sha256)
        return self.root / "sha256" / sha256[:2] / sha256

    def location(self, sha256: str) -> str:
        return str(self.path_for(sha256))

    def place(self, tmp: Path, sha256: str) -> bool:
        final = self.path_for(sha256)
        if final.exists():
            return False
        final.parent.mkdir(parents=True, exist_ok=True)
        placed = tmp
        if self.key is not None:
            placed = sealed_copy(self.key, tmp)
            tmp.unlink()  # the plain bytes leave the disk
        os.chmod(placed, 0o444)
        os.replace(placed, final)
        return True

    def read_range(self, sha256: str, offset: int, length: int) -> tuple[bytes, int]:
        try:
            with open(self.path_for(sha256), "rb") as fh:
                total = os.fstat(fh.fileno()).st_size
                fh.seek(offset)
                return fh.read(length), total
        except FileNotFoundError:
            raise InvalidArtifact(f"artifact {sha256} is missing from the store") from None

    def delete(self, sha256: str) -> None:
        self.path_for(sha256).unlink(missing_ok=True)

    def digests(self, older_than: float | None = None) -> list[str]:
        found = []
        for path in (self.root / "sha256").glob("??/*"):
            if is_digest(path.name) and (older_than is None or _older(path, older_than)):
                found.append(path.name)
        return sorted(found)

    def temporaries(self) -> list[Path]:
        return sorted(self.tmp_dir.glob("upload-*"))


def _older(path: Path, cutoff: float) -> bool:
    try:
        return path.stat().st_mtime <= cutoff
    except FileNotFoundError:
        return False


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
