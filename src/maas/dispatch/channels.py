"""The gateway's connection to one worker, by the scheme of its address:

- `ipc://PATH`: a Unix stream socket (`maas.transport.stream`) to a worker on this host;
- `tcp://HOST:PORT`: a ZeroMQ DEALER under CurveZMQ to a worker on another host;
- `inproc://NAME`: a ZeroMQ DEALER to the worker loop in this process.

A channel delivers each message the worker sends to `on_message(frames)` and reports a
dropped connection to `on_lost(why)` (then reconnects by itself); a stream channel whose peer
speaks another wire reports `on_refused(why)` instead. `send` raises NotConnected while there is
no connection: a call is never queued for a worker that is not there.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import zmq
from zmq.utils.monitor import parse_monitor_message

from maas.transport.curve import DeploymentKeys, connect_securely, needs_curve
from maas.transport.frames import readable, recv_frames, send_frames
from maas.transport.stream import NotConnected, StreamPeer

RECONNECT_S = 0.05
REFUSED_RETRY_S = 1.0  # a peer of another wire: look again now and then (it may be replaced)

OnMessage = Callable[[list[Any]], None]
OnReason = Callable[[str], None]


class Channel(Protocol):
    def send(self, frames: Sequence[Any]) -> None: ...

    def close(self) -> None: ...


class Unconnected:
    """The channel of a worker this gateway will not use (see the link's `refused`)."""

    def send(self, frames: Sequence[Any]) -> None:
        raise NotConnected("not connected")

    def close(self) -> None:
        pass


def open_channel(
    endpoint: str,
    *,
    loop: asyncio.AbstractEventLoop,
    context: zmq.Context[zmq.Socket[bytes]],
    keys: DeploymentKeys | None,
    on_message: OnMessage,
    on_lost: OnReason,
    on_refused: OnReason,
) -> Channel:
    if endpoint.startswith("ipc://"):
        return StreamChannel(endpoint.removeprefix("ipc://"), loop, on_message, on_lost, on_refused)
    return ZmqChannel(endpoint, loop, context, keys, on_message, on_lost)


class StreamChannel:
    def __init__(
        self,
        path: str,
        loop: asyncio.AbstractEventLoop,
        on_message: OnMessage,
        on_lost: OnReason,
        on_refused: OnReason,
    ) -> None:
        self._path = path
        self._loop = loop
        self._on_message = on_message
        self._on_lost = on_lost
        self._on_refused = on_refused
        self._peer: StreamPeer | None = None
        self._retry: asyncio.TimerHandle | None = None
        self._closed = False
        self._connect()

    def _connect(self) -> None:
        self._retry = None
        if self._closed:
            return
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            sock.connect(self._path)
        except OSError:  # not there yet, gone, or its backlog is full: try again shortly
            sock.close()
            self._retry = self._loop.call_later(RECONNECT_S, self._connect)
            return
        self._peer = StreamPeer(sock, self._loop, self._on_message, self._on_peer_closed)

    def _on_peer_closed(self, why: str) -> None:
        peer, self._peer = self._peer, None
        if self._closed:
            return
        if peer is not None and not peer.greeted:
            self._on_refused(why)
            self._retry = self._loop.call_later(REFUSED_RETRY_S, self._connect)
        else:
            self._on_lost(f"its connection closed ({why})")
            self._retry = self._loop.call_later(RECONNECT_S, self._connect)

    def send(self, frames: Sequence[Any]) -> None:
        if self._peer is None:
            raise NotConnected("not connected")
        self._peer.send(frames)

    def close(self) -> None:
        self._closed = True
        if self._retry is not None:
            self._retry.cancel()
        if self._peer is not None:
            self._peer.close()


class ZmqChannel:
    def __init__(
        self,
        endpoint: str,
        loop: asyncio.AbstractEventLoop,
        context: zmq.Context[zmq.Socket[bytes]],
        keys: DeploymentKeys | None,
        on_message: OnMessage,
        on_lost: OnReason,
    ) -> None:
        self._loop = loop
        self._on_message = on_message
        self._on_lost = on_lost
        sock = context.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.IMMEDIATE, 1)  # never queue for a worker that is not there
        sock.setsockopt(zmq.RECONNECT_IVL, int(RECONNECT_S * 1000))
        sock.setsockopt(zmq.SNDHWM, 0)
        sock.setsockopt(zmq.RCVHWM, 0)
        self._monitor = sock.get_monitor_socket(zmq.EVENT_DISCONNECTED)
        if needs_curve(endpoint):
            assert keys is not None, "the pool refuses tcp:// without keys"
            connect_securely(sock, keys)
        sock.connect(endpoint)
        self._sock = sock
        loop.add_reader(sock.fileno(), self._read)
        loop.add_reader(self._monitor.fileno(), self._watch)
        loop.call_soon(self._watch)  # edge-triggered: look once to start

    def send(self, frames: Sequence[Any]) -> None:
        if self._sock.closed:
            raise NotConnected("closed")
        try:
            send_frames(self._sock, frames)
        except zmq.ZMQError as exc:  # Again: no connection (IMMEDIATE)
            raise NotConnected(str(exc)) from None
        finally:
            self._read()  # sending can consume the descriptor's edge: read what is waiting

    def _read(self) -> None:
        sock = self._sock
        while not sock.closed and readable(sock):
            try:
                frames = recv_frames(sock)
            except zmq.Again:
                break
            self._on_message([frame.buffer for frame in frames])

    def _watch(self) -> None:
        monitor = self._monitor
        while not monitor.closed and readable(monitor):
            try:
                event = parse_monitor_message(monitor.recv_multipart(zmq.NOBLOCK))
            except zmq.Again:
                break
            if event["event"] == zmq.EVENT_DISCONNECTED:
                self._on_lost("its connection closed")

    def close(self) -> None:
        if self._sock.closed:
            return
        self._loop.remove_reader(self._sock.fileno())
        self._loop.remove_reader(self._monitor.fileno())
        self._sock.disable_monitor()
        self._monitor.close(linger=0)
        self._sock.close(linger=0)
