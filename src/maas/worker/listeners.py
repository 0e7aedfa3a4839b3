"""Where a worker hears its gateways, by the scheme of its address:

- `ipc://PATH`: a Unix stream socket (`maas.transport.stream`), for the gateways of its host;
- `tcp://HOST:PORT`: a ZeroMQ ROUTER behind CurveZMQ, for gateways on other hosts;
- `inproc://NAME`: a ZeroMQ ROUTER on a context shared with the gateway's own process.

Each hands every message to `on_message(identity, frames)`, where `identity` names the
gateway connection to answer, then calls `after_read()` once the pass over what its
descriptors held is done. `drain()` reads what is waiting right now, without `after_read`
(the loop does it between forwards). `send` drops a reply to a gateway that went away: its
caller went with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import logging
import os
import socket
import stat
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import zmq

from maas.transport.curve import DeploymentKeys, KeysError, needs_curve, serve_securely
from maas.transport.frames import readable, recv_frames, send_frames
from maas.transport.stream import NotConnected, StreamPeer

log = logging.getLogger(__name__)

OnMessage = Callable[[bytes, list[Any]], None]


class Listener(Protocol):
    def start(
        self, loop: asyncio.AbstractEventLoop, on_message: OnMessage, after_read: Callable[[], None]
    ) -> None: ...

    def drain(self) -> None: ...

    def send(self, identity: bytes, frames: Sequence[Any]) -> None: ...

    def close(self) -> None: ...


def listen(
    endpoint: str,
    *,
    context: zmq.Context[zmq.Socket[bytes]] | None = None,
    keys: DeploymentKeys | None = None,
) -> Listener:
    """Bind `endpoint` (raises KeysError for a tcp:// address without the deployment's keys)."""
    if endpoint.startswith("ipc://"):
        return StreamListener(endpoint.removeprefix("ipc://"))
    return ZmqListener(endpoint, context, keys)


class StreamListener:
    """Gateways of this host, one Unix stream connection each."""

    def __init__(self, path: str) -> None:
        self.path = path
        with contextlib.suppress(FileNotFoundError):
            if stat.S_ISSOCK(os.stat(path).st_mode):
                os.unlink(path)  # a predecessor's socket file; its process is gone
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(path)
            sock.listen(128)
        except OSError:
            sock.close()
            raise
        sock.setblocking(False)
        self._sock = sock
        self._peers: dict[bytes, StreamPeer] = {}
        self._ids = itertools.count(1)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._on_message: OnMessage = lambda identity, frames: None
        self._after_read: Callable[[], None] = lambda: None
        self._draining = False

    def start(
        self, loop: asyncio.AbstractEventLoop, on_message: OnMessage, after_read: Callable[[], None]
    ) -> None:
        self._loop, self._on_message, self._after_read = loop, on_message, after_read
        loop.add_reader(self._sock.fileno(), self._accept)

    def _accept(self) -> None:
        assert self._loop is not None
        while True:
            try:
                conn, _ = self._sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # out of descriptors, say: the gateway retries
                log.warning("could not accept a gateway on %s: %s", self.path, exc)
                return
            identity = b"g%d" % next(self._ids)
            self._peers[identity] = StreamPeer(
                conn,
                self._loop,
                functools.partial(self._received, identity),
                functools.partial(self._closed, identity),
            )

    def _received(self, identity: bytes, frames: list[Any]) -> None:
        self._on_message(identity, frames)
        if not self._draining:
            self._after_read()

    def _closed(self, identity: bytes, reason: str) -> None:
        peer = self._peers.pop(identity, None)
        if peer is not None and not peer.greeted:
            log.warning("refused a connection on %s: %s", self.path, reason)
        else:
            log.debug("gateway connection %s ended: %s", identity.decode(), reason)

    def drain(self) -> None:
        self._draining = True
        try:
            for peer in list(self._peers.values()):
                peer.read()
        finally:
            self._draining = False

    def send(self, identity: bytes, frames: Sequence[Any]) -> None:
        peer = self._peers.get(identity)
        if peer is None:
            log.debug("reply to a gone gateway dropped")
            return
        try:
            peer.send(frames)
        except NotConnected:
            log.debug("reply to a gone gateway dropped")

    def close(self) -> None:
        for peer in list(self._peers.values()):
            peer.close()
        if self._loop is not None:
            self._loop.remove_reader(self._sock.fileno())
        self._sock.close()
        with contextlib.suppress(OSError):
            os.unlink(self.path)


class ZmqListener:
    """A ROUTER socket: gateways on other hosts (CurveZMQ), or the in-process one."""

    def __init__(
        self,
        endpoint: str,
        context: zmq.Context[zmq.Socket[bytes]] | None,
        keys: DeploymentKeys | None,
    ) -> None:
        self._own_context = context is None
        self._context = context or zmq.Context()
        sock = self._context.socket(zmq.ROUTER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.SNDHWM, 0)
        sock.setsockopt(zmq.RCVHWM, 0)
        self._auth = None
        try:
            if needs_curve(endpoint):
                if keys is None:
                    raise KeysError(
                        f"{endpoint}: a tcp:// worker needs the deployment's keys "
                        "(MAAS_WORKER_KEYS_DIR; make them with: maas keys worker --out DIR)"
                    )
                self._auth = serve_securely(self._context, sock, keys)
            sock.bind(endpoint)
        except Exception:
            self._release(sock)
            raise
        self._sock = sock
        self._loop: asyncio.AbstractEventLoop | None = None
        self._on_message: OnMessage = lambda identity, frames: None
        self._after_read: Callable[[], None] = lambda: None
        self._look_scheduled = False

    def start(
        self, loop: asyncio.AbstractEventLoop, on_message: OnMessage, after_read: Callable[[], None]
    ) -> None:
        self._loop, self._on_message, self._after_read = loop, on_message, after_read
        loop.add_reader(self._sock.fileno(), self._on_readable)
        self._on_readable()  # the descriptor is edge-triggered: read what came before

    def _on_readable(self) -> None:
        self._look_scheduled = False
        if self._sock.closed:
            return
        self.drain()
        self._after_read()

    def drain(self) -> None:
        sock = self._sock
        while readable(sock):
            try:
                frames = recv_frames(sock)
            except zmq.Again:
                break
            if len(frames) >= 2:
                self._on_message(frames[0].bytes, [frame.buffer for frame in frames[1:]])

    def send(self, identity: bytes, frames: Sequence[Any]) -> None:
        try:
            send_frames(self._sock, [identity, *frames])
        except zmq.ZMQError as exc:
            log.debug("reply to a gone gateway dropped: %s", exc)
        # Sending can consume the descriptor's edge: look again for waiting messages once this
        # round of replies is out (one look for a whole batch, not one per reply).
        if not self._look_scheduled and self._loop is not None:
            self._look_scheduled = True
            self._loop.call_soon(self._on_readable)

    def close(self) -> None:
        if self._loop is not None:
            self._loop.remove_reader(self._sock.fileno())
        self._release(self._sock)

    def _release(self, sock: zmq.Socket[bytes]) -> None:
        sock.close(linger=0)
        if self._auth is not None:
            self._auth.stop()
        if self._own_context:
            self._context.term()
