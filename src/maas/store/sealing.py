"""Artifacts sealed at rest with AES-256-GCM (`MAAS_ARTIFACT_KEY`).

A sealed file is `MAGIC`, an 8-byte random prefix, then the artifact in chunks of `CHUNK`
bytes, each encrypted and authenticated on its own: its nonce is the prefix and the chunk's
index, its associated data the magic, the index and whether it is the last chunk. Reordered,
truncated, extended or altered chunks fail authentication, and so does a wrong key; chunks
let a file of any size be sealed and checked without holding it whole.

The registry's sha256 stays that of the artifact itself (what the client uploaded): a worker
decrypts into memory, checks that digest, and loads from memory; the plain bytes never reach
its disk. Without a key, files are stored plain and every reader takes them as they are.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import os
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from maas.errors import InvalidArtifact

MAGIC = b"MAASGCM1"
CHUNK = 1024 * 1024
_TAG = 16
_PREFIX = 8
_INDEX = struct.Struct(">I")


class ArtifactKey:
    """The deployment's 256-bit artifact key, from 64 hex digits or 32 bytes of base64."""

    def __init__(self, raw: bytes) -> None:
        if len(raw) != 32:
            raise ValueError("an artifact key is 32 bytes (64 hex digits, or base64)")
        # Imported here: a process without MAAS_ARTIFACT_KEY never loads it (~10 MB).
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        self._aead = AESGCM(raw)

    @classmethod
    def parse(cls, text: str) -> ArtifactKey:
        text = text.strip()
        try:
            raw = bytes.fromhex(text) if len(text) == 64 else base64.b64decode(text, validate=True)
        except (ValueError, binascii.Error):
            raise ValueError(
                "MAAS_ARTIFACT_KEY must be 64 hex digits or 32 bytes in base64 "
                "(make one with: maas keys artifact)"
            ) from None
        return cls(raw)

    @staticmethod
    def generate() -> str:
        return os.urandom(32).hex()

    def seal(self, source: IO[bytes], target: IO[bytes]) -> None:
        """Write `source`'s bytes sealed to `target`."""
        prefix = os.urandom(_PREFIX)
        target.write(MAGIC + prefix)
        chunk = source.read(CHUNK)
        index = 0
        while True:
            following = source.read(CHUNK)
            last = not following
            target.write(self._aead.encrypt(_nonce(prefix, index), chunk, _aad(index, last)))
            if last:
                return
            chunk, index = following, index + 1

    def open_chunks(self, source: IO[bytes], where: str) -> Iterator[bytes]:
        """The plain chunks of a sealed file (its magic already read); InvalidArtifact when
        the key is wrong or the file was altered."""
        from cryptography.exceptions import InvalidTag

        prefix = source.read(_PREFIX)
        if len(prefix) != _PREFIX:
            raise InvalidArtifact(f"{where}: the sealed artifact is truncated")
        index = 0
        sealed = source.read(CHUNK + _TAG)
        while True:
            following = source.read(CHUNK + _TAG)
            last = not following
            try:
                yield self._aead.decrypt(_nonce(prefix, index), sealed, _aad(index, last))
            except InvalidTag:
                raise InvalidArtifact(
                    f"{where}: the sealed artifact does not open with this MAAS_ARTIFACT_KEY "
                    "(a wrong key, or the file was altered)"
                ) from None
            if last:
                return
            sealed, index = following, index + 1


def is_sealed(path: Path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(len(MAGIC)) == MAGIC


def read_plain(path: Path, key: ArtifactKey | None) -> tuple[IO[bytes], str]:
    """The artifact at `path` as a readable file and its sha256: a sealed one decrypted into
    memory (InvalidArtifact without the key, with a wrong one, or when altered), a plain one
    opened from disk (the caller closes it)."""
    handle = open(path, "rb")  # noqa: SIM115 - handed to the caller, or closed below
    if handle.read(len(MAGIC)) != MAGIC:
        handle.seek(0)
        digest = hashlib.sha256()
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
        handle.seek(0)
        return handle, digest.hexdigest()
    with handle:
        if key is None:
            raise InvalidArtifact(
                f"{path.name[:12]}: the artifact is sealed and this process has no "
                "MAAS_ARTIFACT_KEY"
            )
        plain = io.BytesIO()
        digest = hashlib.sha256()
        for chunk in key.open_chunks(handle, path.name[:12]):
            digest.update(chunk)
            plain.write(chunk)
    plain.seek(0)
    return plain, digest.hexdigest()


def _nonce(prefix: bytes, index: int) -> bytes:
    return prefix + _INDEX.pack(index)


def _aad(index: int, last: bool) -> bytes:
    return MAGIC + _INDEX.pack(index) + (b"\x01" if last else b"\x00")
