"""One message as ZeroMQ frames, on the non-blocking sockets gateways and workers read from
their event loops.

pyzmq's `send_multipart`/`recv_multipart` build an enum for the flags of every frame, about
3 us per message each way on a path that costs tens of us; these helpers pass plain ints.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import zmq

_EVENTS, _POLLIN = int(zmq.EVENTS), int(zmq.POLLIN)
_NOBLOCK, _SNDMORE = int(zmq.NOBLOCK), int(zmq.SNDMORE)


def readable(sock: zmq.Socket[bytes]) -> bool:
    """A whole message is waiting (the socket's descriptor only signals edges)."""
    return bool(sock.getsockopt(_EVENTS) & _POLLIN)  # type: ignore[operator]


def send_frames(sock: zmq.Socket[bytes], frames: Sequence[Any]) -> None:
    """Send `frames` as one message; raises zmq.Again when it cannot be queued."""
    last = len(frames) - 1
    for index, frame in enumerate(frames):
        sock.send(frame, _NOBLOCK | _SNDMORE if index < last else _NOBLOCK)


def recv_frames(sock: zmq.Socket[bytes]) -> list[zmq.Frame]:
    """The next whole message, without copying; raises zmq.Again when none is waiting."""
    frames = [sock.recv(_NOBLOCK, copy=False)]
    while frames[-1].more:
        frames.append(sock.recv(_NOBLOCK, copy=False))
    return frames
