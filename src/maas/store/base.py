"""What every artifact store offers: one small interface, content-addressed by sha256.

An upload streams into a temporary file on the gateway's own disk (`tmp_dir`, never shared),
hashed as it comes; it is inspected there, then `place`d under its digest: sealed first when
the deployment has a key, and made visible in one step (a rename on disk, one PUT or one
completed multipart upload in object storage), so no reader ever sees half of it. Everything
here blocks: gateways call it on a thread.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

from maas.errors import InsufficientStorage, InvalidArtifact, PayloadTooLarge
from maas.store.sealing import ArtifactKey

CHUNK = 1024 * 1024


class ArtifactStore(Protocol):
    key: ArtifactKey | None  # seals what is stored (maas.store.sealing); None: stored plain
    tmp_dir: Path  # this gateway's own scratch for uploads in progress

    def prepare(self) -> None:
        """Create what the store needs; fail with a clear message when it cannot be used."""

    def describe(self) -> str:
        """Where the artifacts are, for logs and messages."""

    def location(self, sha256: str) -> str:
        """What a worker's load names: a path on this host, or the object's `s3://` URL."""

    def place(self, tmp: Path, sha256: str) -> bool:
        """Make the finished upload at `tmp` the artifact `sha256` (sealed when keyed), and
        remove `tmp`. False when the store held it already."""

    def read_range(self, sha256: str, offset: int, length: int) -> tuple[bytes, int]:
        """Bytes [offset, offset + length) of the stored file (sealed as stored) and its size;
        InvalidArtifact when it is missing."""

    def delete(self, sha256: str) -> None: ...

    def digests(self, older_than: float | None = None) -> list[str]:
        """Every artifact stored, by sha256; with `older_than`, those stored before that Unix
        time (the sweeper leaves younger ones to the upload that is finishing them)."""

    def temporaries(self) -> list[Path]:
        """Temporary files of this gateway's uploads that never finished."""


def is_digest(text: str) -> bool:
    return len(text) == 64 and all(c in "0123456789abcdef" for c in text)


def check_digest(sha256: str) -> str:
    if not is_digest(sha256):
        raise InvalidArtifact(f"not a sha256 digest: {sha256!r}")
    return sha256


class ArtifactWriter:
    """Receives an upload chunk by chunk into `tmp_path`; `commit()` publishes it, `discard()`
    forgets it."""

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
        with out_of_space_is_507():
            self._file.write(chunk)

    @property
    def sha256(self) -> str:
        return self._hash.hexdigest()

    def finish(self) -> None:
        """The upload is complete: its file (`tmp_path`) can be inspected before `commit`."""
        if not self._file.closed:
            with out_of_space_is_507():
                self._file.close()  # flushes: the disk may fill here too
        if self.size == 0:
            self.discard()
            raise InvalidArtifact("the uploaded file is empty")

    def commit(self) -> tuple[str, bool]:
        """Publish the finished upload. Returns its digest and whether it is new."""
        self.finish()
        digest = self.sha256
        try:
            return digest, self._store.place(self.tmp_path, digest)
        finally:
            self.tmp_path.unlink(missing_ok=True)

    def discard(self) -> None:
        if not self._file.closed:
            self._file.close()
        self.tmp_path.unlink(missing_ok=True)


def put_bytes(store: ArtifactStore, data: bytes) -> tuple[str, bool]:
    """Store a small in-memory artifact (the demo models); same rules as an upload."""
    writer = ArtifactWriter(store, max_bytes=len(data) + 1)
    try:
        writer.write(data)
        return writer.commit()
    except BaseException:
        writer.discard()
        raise


def sealed_copy(key: ArtifactKey, plain: Path) -> Path:
    """`plain` sealed into a file beside it (the caller removes both)."""
    placed = plain.with_name(plain.name + ".sealed")
    try:
        with out_of_space_is_507(), open(plain, "rb") as source, open(placed, "xb") as target:
            key.seal(source, target)
    except BaseException:
        placed.unlink(missing_ok=True)
        raise
    return placed


@contextlib.contextmanager
def out_of_space_is_507() -> Iterator[None]:
    try:
        yield
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise InsufficientStorage(
                "the artifact store is out of disk space; nothing of this upload was kept"
            ) from None
        raise
