"""How a gateway process stops without failing a request (SIGTERM; `maas serve` sends it to
each gateway on its way out, and an operator may send it to one gateway to restart it).

uvicorn alone closes every idle keep-alive connection at once: a client whose next request
was already on its way sees the connection drop. Here, for up to `MAAS_DRAIN_S`, the gateway
stops accepting (the other gateway processes of the host keep accepting on the shared port),
`/readyz` answers 503 (`draining`), and every answer it still sends carries `Connection:
close`, so each client moves to another process after its next answer; requests in flight
finish. Connections still open when the drain ends get uvicorn's own shutdown.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Callable
from typing import Any

import uvicorn

log = logging.getLogger(__name__)

_CLOSE = (b"connection", b"close")
_POLL_S = 0.02


class Drain:
    """The flag the app reads (answers get `Connection: close` once it is set)."""

    def __init__(self) -> None:
        self.started: float | None = None  # monotonic; None: serving as usual

    @property
    def active(self) -> bool:
        return self.started is not None

    def begin(self) -> None:
        if self.started is None:
            self.started = time.monotonic()

    def wrap(self, send: Any) -> Any:
        """`send` adding `Connection: close` to the answer's head."""

        async def closing(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                headers = [h for h in message.get("headers", ()) if h[0].lower() != b"connection"]
                message = {**message, "headers": [*headers, _CLOSE]}
            await send(message)

        return closing


class DrainingServer(uvicorn.Server):
    """uvicorn's server, draining for `drain_s` before its own shutdown."""

    def __init__(
        self,
        config: uvicorn.Config,
        drain: Drain,
        drain_s: float,
        on_serving: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(config)
        self._drain = drain
        self._drain_s = drain_s
        self._on_serving = on_serving

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started and self._on_serving is not None:
            self._on_serving()  # the app's startup is done and it accepts: it serves

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        for server in self.servers:
            server.close()  # no new connections here; the host's other gateways take them
        for sock in sockets or []:
            sock.close()
        self._drain.begin()
        left = len(self.server_state.connections)
        log.info("draining %d connection(s) for up to %.1f s", left, self._drain_s)
        for _ in range(round(self._drain_s / _POLL_S)):  # uvicorn says nothing when one ends
            if not self.server_state.connections:
                break
            await asyncio.sleep(_POLL_S)
        if self.server_state.connections:
            left = len(self.server_state.connections)
            log.info("%d connection(s) still open after the drain", left)
        await super().shutdown(sockets=None)
