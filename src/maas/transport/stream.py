"""Whole messages over a Unix stream socket: the wire between a host's gateways and its local
workers (`ipc://PATH`).

ZeroMQ hands every message to an I/O thread on each side, two thread wake-ups each way that
cost more than a small model's forward on a busy host. Here the event loop's own thread
writes to the socket and the peer's reads from it: one hop, in the kernel.

The wire: each side first sends `GREETING` (a peer that sends anything else, such as a
ZeroMQ socket of an older release, is refused with a reason); then messages, each

    u32 n | u32 length (n times) | the n frames' bytes      (little-endian)

Reads and writes never block. What the kernel will not take yet is kept, in order, and sent
when the socket is writable again. Nothing here knows what the frames mean.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

GREETING = b"MAAS\x00\x01\r\n"  # the wire's name and version: 8 bytes
MAX_FRAMES = 4096
MAX_MESSAGE_BYTES = (1 << 31) - 1
_READ_BYTES = 256 * 1024
# What one side may have in flight before its writes wait: a large tensor (a 224x224 image is
# 588 KiB) goes into the kernel in one write instead of a write per read of the peer. The
# kernel caps it at net.core.wmem_max (Linux: 208 KiB by default, larger where raised).
_SEND_BUFFER = 4 * 1024 * 1024
_MAX_IOVECS = 512  # under IOV_MAX (1024): more frames than that go as one joined buffer
_COUNT = struct.Struct("<I")

Frames = list[memoryview]


class NotConnected(Exception):
    """The message could not be sent: the connection is down."""


class WireError(Exception):
    """The peer sent something this wire does not carry."""


def encode_header(views: Sequence[memoryview]) -> bytes:
    return struct.pack(f"<{len(views) + 1}I", len(views), *(v.nbytes for v in views))


def as_bytes_view(frame: Any) -> memoryview:
    """A flat byte view on `frame` (bytes, a memoryview or a C-contiguous numpy array)."""
    view = memoryview(frame)
    if view.nbytes == 0:
        return memoryview(b"")
    return view if view.ndim == 1 and view.format == "B" else view.cast("B")


class Parser:
    """Splits the bytes read from one connection into messages; the greeting comes first."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self.greeted = False

    def feed(self, data: bytes | memoryview) -> list[Frames]:
        """The whole messages `data` completes (raises WireError on anything else)."""
        buffer = self._buffer
        buffer += data
        pos = 0
        if not self.greeted:
            if len(buffer) < len(GREETING):
                if not GREETING.startswith(bytes(buffer)):
                    raise WireError(_stranger(bytes(buffer)))
                return []
            if bytes(buffer[: len(GREETING)]) != GREETING:
                raise WireError(_stranger(bytes(buffer[: len(GREETING)])))
            self.greeted = True
            pos = len(GREETING)
        messages: list[Frames] = []
        size = len(buffer)
        with memoryview(buffer) as view:
            while size - pos >= 4:
                (count,) = _COUNT.unpack_from(buffer, pos)
                if not 0 < count <= MAX_FRAMES:
                    raise WireError(f"a message of {count} frames (at most {MAX_FRAMES})")
                head = 4 + 4 * count
                if size - pos < head:
                    break
                lengths = struct.unpack_from(f"<{count}I", buffer, pos + 4)
                total = sum(lengths)
                if total > MAX_MESSAGE_BYTES:
                    raise WireError(f"a message of {total} bytes")
                end = pos + head + total
                if size < end:
                    break
                data_view = memoryview(bytes(view[pos + head : end]))  # owned by its frames
                frames, offset = [], 0
                for length in lengths:
                    frames.append(data_view[offset : offset + length])
                    offset += length
                messages.append(frames)
                pos = end
        if pos:
            del buffer[:pos]
        return messages


class StreamPeer:
    """One end of a connected stream socket, read and written from the event loop.

    `on_message(frames)` runs for each whole message read; `on_closed(reason)` once, when the
    connection ends (the peer closed it, an error, or junk on the wire) or `close()` is called.
    """

    def __init__(
        self,
        sock: socket.socket,
        loop: asyncio.AbstractEventLoop,
        on_message: Callable[[Frames], None],
        on_closed: Callable[[str], None],
    ) -> None:
        sock.setblocking(False)
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, _SEND_BUFFER)
        self._sock = sock
        self._fd = sock.fileno()
        self._loop = loop
        self._on_message = on_message
        self._on_closed = on_closed
        self._parser = Parser()
        self._chunk = bytearray(_READ_BYTES)  # reused by every read: no allocation per read
        self._chunk_view = memoryview(self._chunk)
        self._unsent: deque[memoryview] = deque()
        self.closed = False
        loop.add_reader(self._fd, self.read)
        self._write([memoryview(GREETING)])

    @property
    def greeted(self) -> bool:
        """The peer has sent this wire's greeting."""
        return self._parser.greeted

    def read(self) -> None:
        """Read what is waiting and hand on each whole message; never blocks."""
        while not self.closed:
            try:
                size = self._sock.recv_into(self._chunk)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self.close(_failed(exc))
                return
            if not size:
                self.close("the peer closed the connection")
                return
            try:
                messages = self._parser.feed(self._chunk_view[:size])
            except WireError as exc:
                self.close(str(exc))
                return
            for frames in messages:
                if self._sock.fileno() < 0:
                    return  # a handler closed the connection
                self._on_message(frames)
            if size < _READ_BYTES:
                return  # drained; the descriptor is level-triggered if more comes meanwhile

    def send(self, frames: Sequence[Any]) -> None:
        """Send `frames` as one message; raises NotConnected when the connection is down."""
        if self.closed:
            raise NotConnected("not connected")
        views = [as_bytes_view(frame) for frame in frames]
        header = memoryview(encode_header(views))
        if len(views) >= _MAX_IOVECS:
            views = [memoryview(b"".join(views))]
        if not self._write([header, *views]):
            raise NotConnected("the connection failed while sending")

    def _write(self, views: list[memoryview]) -> bool:
        """Send or keep `views`; False when the connection failed (and is closed now)."""
        if self._unsent:  # order: behind what waits already
            self._unsent.extend(views)
            return True
        try:
            sent = self._sock.sendmsg(views)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError as exc:
            self.close(_failed(exc))
            return False
        self._keep_unsent(views, sent)
        if self._unsent:
            self._loop.add_writer(self._fd, self._on_writable)
        return True

    def _keep_unsent(self, views: list[memoryview], sent: int) -> None:
        for view in views:
            if sent >= view.nbytes:
                sent -= view.nbytes
                continue
            self._unsent.append(view[sent:])
            sent = 0

    def _on_writable(self) -> None:
        views = list(self._unsent)[:_MAX_IOVECS]
        try:
            sent = self._sock.sendmsg(views)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self.close(_failed(exc))
            return
        for _ in views:
            self._unsent.popleft()
        rest = list(self._unsent)
        self._unsent.clear()
        self._keep_unsent(views, sent)
        self._unsent.extend(rest)
        if not self._unsent:
            self._loop.remove_writer(self._fd)

    def close(self, reason: str = "closed here") -> None:
        if self.closed:
            return
        self.closed = True
        self._loop.remove_reader(self._fd)
        self._loop.remove_writer(self._fd)
        self._unsent.clear()
        self._sock.close()
        self._on_closed(reason)


def _failed(exc: OSError) -> str:
    if isinstance(exc, ConnectionResetError | BrokenPipeError):
        return "the peer closed the connection"
    return f"the connection failed: {exc.strerror or exc}"


def _stranger(start: bytes) -> str:
    if start[:1] == b"\xff":
        return "the peer speaks ZeroMQ, not this wire (an older maas release?)"
    return f"the peer does not speak this wire (it began with {start[:8]!r})"
