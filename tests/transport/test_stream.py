"""The Unix stream wire of a host's gateways and workers: whole messages in order, whatever
the kernel splits or holds back, and a clear refusal of a peer that speaks something else."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import zmq

from maas.dispatch.pool import WorkerPool
from maas.transport.stream import (
    GREETING,
    MAX_FRAMES,
    NotConnected,
    Parser,
    StreamPeer,
    WireError,
    encode_header,
)
from maas.worker.loop import WorkerServer
from support.waiting import until
from support.worker_thread import serving

ZMTP_GREETING = b"\xff" + bytes(8) + b"\x7f"  # what a ZeroMQ socket sends first


def _wire(*messages: list[bytes]) -> bytes:
    out = bytearray(GREETING)
    for frames in messages:
        out += encode_header([memoryview(f) for f in frames]) + b"".join(frames)
    return bytes(out)


def test_messages_survive_any_split_of_the_bytes() -> None:
    messages = [[b"head", b"", b"x" * 300], [b"one"], [bytes(range(256)) * 4, b"tail"]]
    data = _wire(*messages)
    for step in (1, 3, 7, 64, len(data)):
        parser = Parser()
        got: list[list[bytes]] = []
        for start in range(0, len(data), step):
            got += [[bytes(f) for f in m] for m in parser.feed(data[start : start + step])]
        assert got == messages, step


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (ZMTP_GREETING, "ZeroMQ"),
        (b"GET / HTTP/1.1\r\n", "does not speak this wire"),
        (GREETING + struct.pack("<I", 0), "0 frames"),
        (GREETING + struct.pack("<I", MAX_FRAMES + 1), "frames"),
        (GREETING + struct.pack("<III", 2, 2**31, 2**31), "bytes"),
    ],
)
def test_anything_else_on_the_wire_is_refused_with_why(data: bytes, why: str) -> None:
    with pytest.raises(WireError, match=why):
        Parser().feed(data)


def test_a_partial_greeting_waits_and_a_wrong_first_byte_does_not() -> None:
    assert Parser().feed(GREETING[:3]) == []
    with pytest.raises(WireError):
        Parser().feed(b"\xff")


async def _pair() -> tuple[StreamPeer, StreamPeer, list[list[bytes]], list[str]]:
    loop = asyncio.get_running_loop()
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    received: list[list[bytes]] = []
    closed: list[str] = []
    left = StreamPeer(a, loop, lambda frames: None, closed.append)
    right = StreamPeer(b, loop, lambda f: received.append([bytes(x) for x in f]), closed.append)
    return left, right, received, closed


async def test_big_messages_the_kernel_cannot_take_at_once_arrive_whole_and_in_order() -> None:
    left, right, received, _ = await _pair()
    big = np.arange(3 * 1024 * 1024, dtype=np.float32)  # 12 MB: far past the socket buffer
    sent = []
    for i in range(5):
        header = f"m{i}".encode()
        left.send([header, big + i, b""])
        sent.append([header, (big + i).tobytes(), b""])
    await until(lambda: len(received) == 5, "five messages received")
    assert received == sent
    left.close()
    right.close()


async def test_arrays_of_every_shape_go_as_their_bytes() -> None:
    left, right, received, _ = await _pair()
    arrays = [np.zeros((0, 10), np.float32), np.array(7, np.int64), np.ones((2, 3), np.float16)]
    left.send(arrays)
    await until(lambda: len(received) == 1, "the message received")
    assert received[0] == [a.tobytes() for a in arrays]
    left.close()
    right.close()


async def test_a_closed_connection_is_reported_once_and_refuses_sends() -> None:
    left, right, _, closed = await _pair()
    left.close()
    await until(lambda: len(closed) == 2, "both ends closed")
    assert closed[0] == "closed here"
    assert "closed the connection" in closed[1]
    with pytest.raises(NotConnected):
        right.send([b"late"])
    right.close()  # again: nothing more is reported
    assert len(closed) == 2


@contextmanager
def _zmq_router(endpoint: str) -> Iterator[None]:
    """A worker of a release that spoke ZeroMQ on ipc:// (it answers nothing)."""
    context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    sock = context.socket(zmq.ROUTER)
    sock.bind(endpoint)
    try:
        yield
    finally:
        sock.close(linger=0)
        context.term()


async def test_a_worker_speaking_zeromq_on_ipc_is_refused_and_shown(tmp_path: Path) -> None:
    endpoint = f"ipc://{tmp_path}/old.sock"
    with _zmq_router(endpoint):
        pool = WorkerPool([endpoint])
        await pool.start()
        try:
            (worker,) = pool.describe()
            assert worker["healthy"] is False
            assert "speaks another wire" in worker["reason"]
            assert "ZeroMQ" in worker["reason"]
        finally:
            await pool.close()


def _stream_worker(endpoint: str) -> contextlib.AbstractContextManager[WorkerServer]:
    return serving(WorkerServer(endpoint=endpoint, worker_id="sw", device="cpu"))


async def test_a_zeromq_gateway_is_refused_and_the_others_still_served(tmp_path: Path) -> None:
    endpoint = f"ipc://{tmp_path}/w.sock"
    with _stream_worker(endpoint):
        context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        old = context.socket(zmq.DEALER)
        old.setsockopt(zmq.LINGER, 0)
        old.connect(endpoint)
        old.send(b"ping")
        pool = WorkerPool([endpoint])
        await pool.start()
        try:
            (worker,) = pool.describe()
            assert worker["healthy"] is True
            assert worker["id"] == "sw"
        finally:
            await pool.close()
            old.close(linger=0)
            context.term()


async def test_the_gateway_reconnects_to_a_worker_restarted_on_the_same_path(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="maas.dispatch.membership")
    endpoint = f"ipc://{tmp_path}/w.sock"
    with _stream_worker(endpoint) as first:
        pool = WorkerPool([endpoint])
        await pool.start()
    try:
        await until(lambda: not pool.describe()[0]["healthy"], "the worker lost")
        assert "lost: its connection closed" in caplog.text  # told at once, not by silence
        with _stream_worker(endpoint) as second:
            await until(lambda: pool.describe()[0]["healthy"], "the worker back")
            assert pool.links[0].status is not None
            assert pool.links[0].status.boot == second.boot != first.boot
    finally:
        await pool.close()
