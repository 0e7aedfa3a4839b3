"""Streaming multipart upload of a version: `file` goes to the artifact store chunk by chunk
(hashed as it streams, never held whole), `meta` is collected as a small JSON part, and an
optional `labels` part (UTF-8 text, one label per line) as a list of labels.

Disk writes are batched and done on a thread, so the event loop never blocks on the file.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from starlette.requests import ClientDisconnect, Request

from maas.api.forms import Form, boundary_of, shown
from maas.errors import BadRequest, PayloadTooLarge
from maas.store.base import ArtifactStore, ArtifactWriter
from maas.types import is_number

META_LIMIT = 1024 * 1024
LABELS_LIMIT = 1024 * 1024
_FLUSH_BYTES = 1024 * 1024


@dataclass
class _State:
    part: str | None = None
    seen_meta: bool = False
    meta: bytearray = field(default_factory=bytearray)
    pending: list[bytes] = field(default_factory=list)
    pending_size: int = 0
    seen_file: bool = False
    labels: bytearray | None = None


@dataclass(frozen=True)
class Upload:
    writer: ArtifactWriter
    meta: bytes
    labels: list[str] | None = None  # the `labels` part's lines, when it had one


async def receive_upload(request: Request, store: ArtifactStore, max_bytes: int) -> Upload:
    """Parse the body; on any failure the partial artifact is discarded before raising."""
    boundary = boundary_of(request.headers.get("content-type", ""))
    if boundary is None:
        raise BadRequest("upload must be multipart/form-data with a 'file' and a 'meta' part")
    declared = request.headers.get("content-length")
    if declared and is_number(declared) and int(declared) > max_bytes + META_LIMIT + LABELS_LIMIT:
        raise PayloadTooLarge(f"upload exceeds the artifact limit of {max_bytes} bytes")

    writer = await asyncio.to_thread(ArtifactWriter, store, max_bytes)
    state = _State()

    def on_part(name: str) -> None:
        if name == "file":
            if state.seen_file:
                raise BadRequest("only one 'file' part is allowed")
            state.seen_file = True
        elif name == "meta":
            if state.seen_meta:
                raise BadRequest("only one 'meta' part is allowed")
            state.seen_meta = True
        elif name == "labels":
            if state.labels is not None:
                raise BadRequest("only one 'labels' part is allowed")
            state.labels = bytearray()
        else:
            raise BadRequest(
                f"unexpected part '{shown(name)}': an upload has a 'file' and a 'meta' part, "
                "and optionally a 'labels' part"
            )
        state.part = name

    def on_data(chunk: bytes) -> None:
        if state.part == "file":
            state.pending.append(chunk)
            state.pending_size += len(chunk)
        elif state.part == "meta":
            state.meta += chunk
            if len(state.meta) > META_LIMIT:
                raise PayloadTooLarge("meta part exceeds 1 MiB")
        elif state.part == "labels" and state.labels is not None:
            state.labels += chunk
            if len(state.labels) > LABELS_LIMIT:
                raise PayloadTooLarge("labels part exceeds 1 MiB")

    form = Form(boundary, on_part=on_part, on_data=on_data)

    async def flush() -> None:
        if state.pending:
            chunks, state.pending, state.pending_size = state.pending, [], 0
            await asyncio.to_thread(_write_all, writer, chunks)

    try:
        async for chunk in request.stream():
            form.write(chunk)
            if state.pending_size >= _FLUSH_BYTES:
                await flush()
        form.finish()
        await flush()
        if not state.seen_file:
            raise BadRequest("the upload has no 'file' part")
        if not state.meta:
            raise BadRequest("the upload has no 'meta' part")
        labels = None if state.labels is None else read_labels(bytes(state.labels))
    except ClientDisconnect:
        await asyncio.to_thread(writer.discard)
        raise BadRequest("client disconnected during the upload") from None
    except BaseException:
        await asyncio.to_thread(writer.discard)
        raise
    return Upload(writer=writer, meta=bytes(state.meta), labels=labels)


def read_labels(data: bytes) -> list[str]:
    """A labels file's labels: UTF-8 text, one label per line (LF or CRLF); the newline
    after the last line is optional. BadRequest for text that is not UTF-8 or is empty."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadRequest(
            f"the 'labels' part is not UTF-8 text (byte {exc.start}); give one label per line"
        ) from None
    text = text.removeprefix("\ufeff")  # a byte-order mark some editors write
    if text.endswith("\n"):
        text = text[:-1]
    if not text:
        raise BadRequest("the 'labels' part is empty; give one label per line")
    return [line.removesuffix("\r") for line in text.split("\n")]


def _write_all(writer: ArtifactWriter, chunks: list[bytes]) -> None:
    for chunk in chunks:
        writer.write(chunk)
