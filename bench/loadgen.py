"""A closed-loop HTTP/1.1 load generator: C keep-alive connections, one request in flight each.

Cheap by construction, so that on a 2-core machine the server and not the generator is the
bound: uvloop, raw `asyncio.Protocol` connections, the request bytes built once, responses
parsed only as far as the status line and the body's framing (Content-Length, or chunked).

Run it as its own process so its CPU is measured apart from the server's:

    python -m bench.loadgen --port 8000 --path /v1/models/small:predict --body-file body.json \
        --concurrency 64 --warmup 1 --duration 5 [--header "Name: value" ...]

It prints `MEASURE_START` and `MEASURE_END` lines on stdout as the measured period opens and
closes (the orchestrator samples CPU at those instants), then one JSON line with the result.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import math
import socket
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import uvloop

MEASURE_START = "MEASURE_START"
MEASURE_END = "MEASURE_END"
_RECONNECT_DELAY_S = 0.05
_DRAIN_S = 2.0


def build_request(
    host: str, port: int, path: str, body: bytes, headers: Sequence[str] = ()
) -> bytes:
    """The request's bytes; `headers` ("Name: value") are sent besides Host and the body's."""
    extra = "".join(f"{line}\r\n" for line in headers)
    if not any(line.lower().startswith("content-type:") for line in headers):
        extra += "Content-Type: application/json\r\n"
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\n{extra}Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode("ascii") + body


def response_end(buf: bytes) -> tuple[int, int, bool] | None:
    """(bytes the first response spans, its status, whether the server closes) or None if partial.

    Raises ValueError on a response it cannot frame.
    """
    head_end = buf.find(b"\r\n\r\n")
    if head_end < 0:
        return None
    status = int(buf[9:12])
    head = buf[:head_end].lower()
    body_start = head_end + 4
    closes = b"\r\nconnection: close" in head
    at = head.find(b"\r\ncontent-length:")
    if at >= 0:
        line_end = head.find(b"\r\n", at + 2)
        length = int(head[at + 17 : line_end if line_end >= 0 else len(head)])
        end = body_start + length
        return (end, status, closes) if len(buf) >= end else None
    if b"\r\ntransfer-encoding: chunked" in head:
        chunked_end = _chunked_end(buf, body_start)
        return None if chunked_end is None else (chunked_end, status, closes)
    if status in (204, 304) or 100 <= status < 200:
        return body_start, status, closes
    raise ValueError(f"response {status} has neither Content-Length nor chunked framing")


def _chunked_end(buf: bytes, pos: int) -> int | None:
    while True:
        line_end = buf.find(b"\r\n", pos)
        if line_end < 0:
            return None
        size = int(buf[pos:line_end].split(b";", 1)[0], 16)
        pos = line_end + 2
        if size == 0:
            if buf[pos : pos + 2] == b"\r\n":
                return pos + 2
            trailer_end = buf.find(b"\r\n\r\n", pos)
            return None if trailer_end < 0 else trailer_end + 4
        if len(buf) < pos + size + 2:
            return None
        pos += size + 2


@dataclass
class Stats:
    """What the measured period saw (warm-up traffic is not counted, except its errors)."""

    latencies_ns: list[int] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    conn_errors: int = 0
    warmup_conn_errors: int = 0
    warmup_requests: int = 0


class Generator:
    """The shared state of all connections and the phase clock."""

    WARMUP, MEASURE, DONE = 0, 1, 2

    def __init__(self, host: str, port: int, request: bytes, concurrency: int) -> None:
        self.host = host
        self.port = port
        self.request = request
        self.concurrency = concurrency
        self.phase = self.WARMUP
        self.stats = Stats()
        self.connections: set[Connection] = set()
        self._connecting: set[asyncio.Task[None]] = set()
        self.in_flight = 0
        self.drained = asyncio.Event()  # set once DONE and nothing is in flight
        self.measure_start_ns = 0
        self.measure_end_ns = 0
        self.connected_at_start = 0

    def answered(self) -> None:
        self.in_flight -= 1
        if self.phase == self.DONE and self.in_flight == 0:
            self.drained.set()

    def record(self, sent_ns: int, done_ns: int, status: int) -> None:
        if self.phase == self.MEASURE:
            self.stats.latencies_ns.append(done_ns - sent_ns)
            self.stats.statuses[status] += 1
        elif self.phase == self.WARMUP:
            self.stats.warmup_requests += 1

    def error(self) -> None:
        if self.phase == self.MEASURE:
            self.stats.conn_errors += 1
        elif self.phase == self.WARMUP:
            self.stats.warmup_conn_errors += 1

    def connect(self, delay_s: float = 0.0) -> None:
        if self.phase != self.DONE:
            task = asyncio.get_running_loop().create_task(self._connect(delay_s))
            self._connecting.add(task)  # the loop keeps only a weak reference to tasks
            task.add_done_callback(self._connecting.discard)

    async def _connect(self, delay_s: float) -> None:
        if delay_s:
            await asyncio.sleep(delay_s)
        if self.phase == self.DONE:
            return
        loop = asyncio.get_running_loop()
        try:
            await loop.create_connection(lambda: Connection(self), self.host, self.port)
        except OSError:
            self.error()
            self.connect(_RECONNECT_DELAY_S)

    def start_measure(self) -> None:
        self.phase = self.MEASURE
        self.connected_at_start = len(self.connections)
        self.measure_start_ns = time.perf_counter_ns()
        _marker(MEASURE_START)

    def end_measure(self) -> None:
        self.measure_end_ns = time.perf_counter_ns()
        self.phase = self.DONE
        if self.in_flight == 0:
            self.drained.set()
        _marker(MEASURE_END)


class Connection(asyncio.Protocol):
    """One keep-alive connection with at most one request in flight."""

    def __init__(self, gen: Generator) -> None:
        self.gen = gen
        self.transport: asyncio.Transport | None = None
        self.buf = b""
        self.sent_ns = 0
        self.waiting = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.gen.connections.add(self)
        self.send()

    def send(self) -> None:
        assert self.transport is not None
        self.waiting = True
        self.gen.in_flight += 1
        self.sent_ns = time.perf_counter_ns()
        self.transport.write(self.gen.request)

    def data_received(self, data: bytes) -> None:
        self.buf = data if not self.buf else self.buf + data
        try:
            framed = response_end(self.buf)
        except ValueError:
            self._fail()
            return
        if framed is None:
            return
        end, status, closes = framed
        done_ns = time.perf_counter_ns()
        self.buf = self.buf[end:]
        self.waiting = False
        self.gen.answered()
        self.gen.record(self.sent_ns, done_ns, status)
        if closes or self.gen.phase == Generator.DONE:
            self._close()
            if closes:
                self.gen.connect()
            return
        self.send()

    def _close(self) -> None:
        self.gen.connections.discard(self)
        if self.transport is not None:
            self.transport.close()

    def _fail(self) -> None:
        if self.waiting:
            self.waiting = False
            self.gen.answered()
            self.gen.error()
        self._close()
        self.gen.connect(_RECONNECT_DELAY_S)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.gen.phase == Generator.DONE or self not in self.gen.connections:
            if self.waiting:
                self.waiting = False
                self.gen.answered()
            self.gen.connections.discard(self)
            return
        self._fail()


def _marker(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def percentile(sorted_ns: list[int], q: float) -> float:
    """Nearest-rank percentile in milliseconds (0.0 when there is nothing)."""
    if not sorted_ns:
        return 0.0
    rank = max(1, math.ceil(q * len(sorted_ns)))
    return sorted_ns[rank - 1] / 1e6


async def generate(
    host: str, port: int, request: bytes, concurrency: int, warmup_s: float, duration_s: float
) -> dict[str, Any]:
    gen = Generator(host, port, request, concurrency)
    for _ in range(concurrency):
        gen.connect()
    await asyncio.sleep(warmup_s)
    gen.start_measure()
    await asyncio.sleep(duration_s)
    gen.end_measure()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(gen.drained.wait(), _DRAIN_S)
    for conn in list(gen.connections):
        conn._close()
    await asyncio.sleep(0)
    return summarise(gen, warmup_s)


def summarise(gen: Generator, warmup_s: float) -> dict[str, Any]:
    stats = gen.stats
    latencies = sorted(stats.latencies_ns)
    seconds = (gen.measure_end_ns - gen.measure_start_ns) / 1e9
    requests = len(latencies)
    non_2xx = sum(n for code, n in stats.statuses.items() if not 200 <= code < 300)
    return {
        "concurrency": gen.concurrency,
        "connected_at_start": gen.connected_at_start,
        "warmup_s": warmup_s,
        "warmup_requests": stats.warmup_requests,
        "seconds": seconds,
        "requests": requests,
        "rps": requests / seconds if seconds > 0 else 0.0,
        "p50_ms": percentile(latencies, 0.50),
        "p90_ms": percentile(latencies, 0.90),
        "p99_ms": percentile(latencies, 0.99),
        "max_ms": latencies[-1] / 1e6 if latencies else 0.0,
        "mean_ms": sum(latencies) / requests / 1e6 if requests else 0.0,
        "non_2xx": non_2xx,
        "statuses": {str(code): n for code, n in sorted(stats.statuses.items())},
        "conn_errors": stats.conn_errors,
        "warmup_conn_errors": stats.warmup_conn_errors,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="closed-loop HTTP/1.1 load generator")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", required=True)
    parser.add_argument("--body-file", type=Path, required=True)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds, not counted")
    parser.add_argument("--duration", type=float, default=5.0, help="measured seconds")
    parser.add_argument("--header", action="append", default=[], help='"Name: value", repeatable')
    args = parser.parse_args(argv)
    body = args.body_file.read_bytes()
    request = build_request(args.host, args.port, args.path, body, args.header)
    gc.disable()  # the hot path makes no cycles; a collection would only add latency spikes
    result = uvloop.run(
        generate(args.host, args.port, request, args.concurrency, args.warmup, args.duration)
    )
    _marker(json.dumps(result))


if __name__ == "__main__":
    main()
