"""The typed messages gateways and workers exchange, and their encoding.

A message is a list of frames, whichever wire carries it (`maas.transport.stream` on a host,
ZeroMQ across hosts and in-process): one msgpack header (a tagged msgspec struct) followed by
one raw frame per tensor, in the order the header's `arrays` lists
them. Tensors never go through msgpack, JSON or pickle. Every request carries an `id` chosen by
its sender; the reply to it carries the same `id`. The results of one forward pass go back to
each gateway as one `Results` message for all of that gateway's requests in the batch, not one
message each.
"""

from __future__ import annotations

from typing import Any

import msgspec
import numpy as np

from maas.errors import (
    DeadlineExceeded,
    InvalidInput,
    MaasError,
    ModelLoadError,
    Overloaded,
    Unavailable,
)
from maas.transport.telemetry import VersionTelemetry
from maas.types import LoadSpec


class ArrayMeta(msgspec.Struct, frozen=True, array_like=True):
    dtype: str  # numpy's typestr, byte order included: '<f4', '<i8'
    shape: tuple[int, ...]


# Gateway → worker.


class Load(msgspec.Struct, frozen=True, tag="load"):
    id: int
    spec: LoadSpec


class Check(msgspec.Struct, frozen=True, tag="check"):
    """Load, warm up and golden-check `spec`, answer how it went, and keep nothing: the
    quick trial of an upload before it becomes a version."""

    id: int
    spec: LoadSpec


class Unload(msgspec.Struct, frozen=True, tag="unload"):
    id: int
    model: str
    version: int


class Infer(msgspec.Struct, frozen=True, tag="infer"):
    """One shape group of one request: every array has the same leading (instance) axis."""

    id: int
    model: str
    version: int
    timeout_ms: float
    arrays: tuple[ArrayMeta, ...]


class Cancel(msgspec.Struct, frozen=True, tag="cancel"):
    """The caller of `id` is gone (disconnect, deadline): drop it if it has not run yet."""

    id: int


class Ping(msgspec.Struct, frozen=True, tag="ping"):
    id: int
    protocol: int = 0  # the sender's `maas.transport.version.PROTOCOL`; 0: before versions
    sent: float = 0.0  # the gateway's `time.monotonic` when sent; the status echoes it


class Chunk(msgspec.Struct, frozen=True, tag="chunk"):
    """Bytes of an artifact a worker asked for (`Fetch`): one frame follows, the bytes from the
    asked offset (empty with an `error`). `total` is the artifact's size."""

    id: int
    total: int
    error: str = ""


Single = Load | Check | Unload | Infer | Cancel | Ping | Chunk


class Envelope(msgspec.Struct, frozen=True, tag="envelope"):
    """Several requests sent as one message (those a gateway made in one turn of its event
    loop); their tensor frames follow in request order, `len(arrays)` frames per Infer."""

    requests: tuple[Single, ...]


# Worker → gateway.


class Fetch(msgspec.Struct, frozen=True, tag="fetch"):
    """The worker asks the gateway that sent a load for `length` bytes of the artifact
    `sha256` from `offset` (it is not on the worker's host: no shared filesystem)."""

    id: int
    sha256: str
    offset: int
    length: int


class Done(msgspec.Struct, frozen=True, tag="done"):
    id: int


class Results(msgspec.Struct, frozen=True, tag="results"):
    """Outputs for the requests `ids`: their rows follow one another in each array, `counts[i]`
    rows for `ids[i]`, in that order."""

    ids: tuple[int, ...]
    counts: tuple[int, ...]
    arrays: tuple[ArrayMeta, ...]
    # On the worker's `time.monotonic`: when it read each request (aligned with `ids`), when
    # their batch was taken and when its forward ended (empty / 0.0 from older workers).
    arrived: tuple[float, ...] = ()
    taken: float = 0.0
    done: float = 0.0


class Failed(msgspec.Struct, frozen=True, tag="failed"):
    id: int
    code: str
    message: str
    retry_after_s: float = 0.0


class VersionStats(msgspec.Struct, frozen=True):
    key: str
    mean_batch_ms: float  # the batcher's running estimate, behind its Retry-After
    telemetry: VersionTelemetry


class WorkerStatus(msgspec.Struct, frozen=True, tag="status"):
    id: int
    worker: str
    pid: int
    boot: str
    host: str
    device: str
    restarts: int
    versions: tuple[str, ...]
    loading: tuple[str, ...]
    queue_depth: int
    gateways: int = 0
    stats: tuple[VersionStats, ...] = ()
    protocol: int = 0  # the worker's `maas.transport.version.PROTOCOL`
    # Its device's memory in bytes (0: unknown) and its torch threads: what placement weighs.
    memory_total: int = 0
    memory_free: int = 0
    threads: int = 0
    # The Ping's `sent`, and the worker's `time.monotonic` when it answered: the gateway
    # estimates the offset between the two clocks from them (`maas.dispatch.clock`).
    ping_sent: float = 0.0
    clock: float = 0.0


Request = Single | Envelope
Reply = Done | Results | Failed | WorkerStatus | Fetch

_encoder = msgspec.msgpack.Encoder()
_request_decoder = msgspec.msgpack.Decoder(Request)
_reply_decoder = msgspec.msgpack.Decoder(Reply)


def frame_count(request: Single) -> int:
    """How many tensor frames follow `request`'s header."""
    if isinstance(request, Infer):
        return len(request.arrays)
    return 1 if isinstance(request, Chunk) else 0


def encode(message: Request | Reply) -> bytes:
    return _encoder.encode(message)


def decode_request(header: bytes | memoryview) -> Request:
    request: Request = _request_decoder.decode(header)
    return request


def decode_reply(header: bytes | memoryview) -> Reply:
    reply: Reply = _reply_decoder.decode(header)
    return reply


def array_frames(
    arrays: list[np.ndarray[Any, Any]],
) -> tuple[tuple[ArrayMeta, ...], list[np.ndarray[Any, Any]]]:
    """Metadata and C-contiguous buffers for `arrays`; either wire sends the buffers as they
    are, without copying them into the message."""
    contiguous = [np.ascontiguousarray(a) for a in arrays]
    return tuple(ArrayMeta(a.dtype.str, a.shape) for a in contiguous), contiguous


def frames_to_arrays(metas: tuple[ArrayMeta, ...], frames: list[Any]) -> list[np.ndarray[Any, Any]]:
    """Views on the received frames (read-only); raises InvalidInput when they do not match."""
    if len(metas) != len(frames):
        raise InvalidInput(f"header lists {len(metas)} tensors, message carries {len(frames)}")
    arrays = []
    for meta, frame in zip(metas, frames, strict=True):
        buffer = frame.buffer if hasattr(frame, "buffer") else frame
        try:
            dtype = np.dtype(meta.dtype)
            arrays.append(np.frombuffer(buffer, dtype=dtype).reshape(meta.shape))
        except (TypeError, ValueError) as exc:
            raise InvalidInput(f"tensor frame does not match its header: {exc}") from None
    return arrays


_ERRORS: dict[str, type[MaasError]] = {
    cls.code: cls for cls in (InvalidInput, DeadlineExceeded, Unavailable, ModelLoadError)
}


def failure(request_id: int, exc: MaasError) -> Failed:
    retry = exc.retry_after if isinstance(exc, Overloaded) else 0.0
    return Failed(request_id, exc.code, exc.message, retry)


def raise_failure(reply: Failed) -> None:
    """Turn a worker's Failed reply back into the domain error it stands for."""
    if reply.code == Overloaded.code:
        raise Overloaded(reply.message, retry_after=reply.retry_after_s)
    raise _ERRORS.get(reply.code, Unavailable)(reply.message)
