"""The multipart body of `maas models register`, streamed from the file (never held whole) and
counted as it goes, so a progress bar can follow the upload. A labels file (small) goes as a
`labels` part before the artifact."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

CHUNK = 1024 * 1024


def _quoted(value: str) -> str:
    return value.replace("\\", "_").replace('"', "_").replace("\r", "_").replace("\n", "_")


@dataclass(frozen=True)
class MultipartBody:
    """`meta` (JSON text), `labels` (the labels file's bytes) when given, then `file` (the
    artifact), as multipart/form-data."""

    file: Path
    meta: str
    size: int
    boundary: str
    labels: bytes | None = None

    @classmethod
    def build(cls, file: Path, meta: str, labels: bytes | None = None) -> MultipartBody:
        return cls(file, meta, file.stat().st_size, "maas-" + secrets.token_hex(16), labels)

    @property
    def content_type(self) -> str:
        return f"multipart/form-data; boundary={self.boundary}"

    @property
    def _head(self) -> bytes:
        b = self.boundary
        meta = (
            f"--{b}\r\n"
            'Content-Disposition: form-data; name="meta"\r\n'
            "Content-Type: application/json\r\n\r\n"
            f"{self.meta}\r\n"
        ).encode()
        labels = b""
        if self.labels is not None:
            labels_head = (
                f"--{b}\r\n"
                'Content-Disposition: form-data; name="labels"; filename="labels.txt"\r\n'
                "Content-Type: text/plain; charset=utf-8\r\n\r\n"
            )
            labels = labels_head.encode() + self.labels + b"\r\n"
        file = (
            f"--{b}\r\n"
            f'Content-Disposition: form-data; name="file"; filename="{_quoted(self.file.name)}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        return meta + labels + file

    @property
    def _tail(self) -> bytes:
        return f"\r\n--{self.boundary}--\r\n".encode()

    @property
    def length(self) -> int:
        return len(self._head) + self.size + len(self._tail)

    def chunks(
        self,
        on_bytes: Callable[[int], None] = lambda n: None,
        on_sent: Callable[[], None] = lambda: None,
    ) -> Iterator[bytes]:
        """The body; `on_bytes(n)` after each chunk of the file, `on_sent()` once all is out."""
        yield self._head
        left = self.size  # exactly what Content-Length promised, even if the file grows
        with self.file.open("rb") as fh:
            while left > 0 and (chunk := fh.read(min(CHUNK, left))):
                left -= len(chunk)
                yield chunk
                on_bytes(len(chunk))
        yield self._tail
        on_sent()
