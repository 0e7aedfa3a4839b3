"""The gateways of one `maas serve` tell each other of a new generation at once.

Each binds a Unix datagram socket in a directory the supervisor gives them all; a gateway that
committed a change sends the new generation to every other socket there. A datagram is a hint,
not a guarantee: a lost one is made up by the 250 ms generation poll.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)


class LocalPeers(asyncio.DatagramProtocol):
    def __init__(self, directory: Path, on_generation: Callable[[int], None]) -> None:
        self._directory = directory
        self._path = directory / f"{os.getpid()}.sock"
        self._on_generation = on_generation
        self._transport: asyncio.DatagramTransport | None = None
        self._peers: list[str] = []

    async def start(self) -> None:
        sock = await asyncio.to_thread(self._bind)
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(lambda: self, sock=sock)
        self._transport = transport
        await self.rescan()

    def _bind(self) -> socket.socket:
        self._directory.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            self._path.unlink()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(str(self._path))
        sock.setblocking(False)
        return sock

    async def rescan(self) -> None:
        """Look for the other gateways' sockets again (they come and go with restarts)."""
        self._peers = await asyncio.to_thread(self._scan)

    def _scan(self) -> list[str]:
        try:
            names = os.listdir(self._directory)
        except OSError:
            return []
        own = self._path.name
        return [str(self._directory / n) for n in names if n.endswith(".sock") and n != own]

    def broadcast(self, generation: int) -> None:
        if self._transport is None:
            return
        data = str(generation).encode()
        for peer in self._peers:
            try:
                self._transport.sendto(data, peer)
            except OSError:  # a peer that is gone; the next rescan drops it
                continue

    def datagram_received(self, data: bytes, addr: object) -> None:
        try:
            generation = int(data)
        except ValueError:
            return
        self._on_generation(generation)

    def error_received(self, exc: Exception) -> None:
        log.debug("peer datagram error: %s", exc)

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None
        with contextlib.suppress(OSError):
            self._path.unlink()
