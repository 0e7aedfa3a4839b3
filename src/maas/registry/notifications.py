"""PostgreSQL tells listening gateways of a new generation the moment it commits.

`bump_generation` sends `NOTIFY maas_generation, '<G>'` inside the change's own transaction, so
the notice leaves only if the change commits. Each gateway on PostgreSQL keeps one connection
LISTENing (`GenerationListener`) and hears it within milliseconds, on any host; the 250 ms
generation poll stays as the backstop for a lost connection. SQLite has no such thing: there,
the gateways of one host tell each other (`maas.control.peers`) and the others poll.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Callable
from typing import Any

from sqlalchemy.engine import make_url

from maas.config import async_database_url
from maas.registry.db import CONNECT_TIMEOUT_S
from maas.registry.repository import GENERATION_CHANNEL as CHANNEL

log = logging.getLogger(__name__)

_RETRY_S = 1.0
_CHECK_S = 5.0


def _set(event: asyncio.Event, *_: Any) -> None:
    event.set()


def listens(database_url: str) -> bool:
    return make_url(async_database_url(database_url)).get_backend_name() == "postgresql"


class GenerationListener:
    def __init__(self, database_url: str, on_generation: Callable[[int], None]) -> None:
        url = make_url(async_database_url(database_url))
        self._dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
        self._on_generation = on_generation
        self._task: asyncio.Task[None] | None = None
        self.connected = asyncio.Event()

    def start(self) -> None:
        self._task = asyncio.create_task(self._keep_listening(), name="generation listener")

    async def _keep_listening(self) -> None:
        import asyncpg  # type: ignore[import-untyped]

        while True:
            connection: Any = None
            try:
                connection = await asyncpg.connect(self._dsn, timeout=CONNECT_TIMEOUT_S)
                lost = asyncio.Event()
                connection.add_termination_listener(functools.partial(_set, lost))
                await connection.add_listener(CHANNEL, self._notified)
                self.connected.set()
                while not lost.is_set():
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(_CHECK_S):  # not wait_for: it can lose a cancel
                            await lost.wait()
                    if not lost.is_set():  # a silent network cuts no connection: ask
                        await connection.fetchval("SELECT 1", timeout=CONNECT_TIMEOUT_S)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # down, refused, restarting: the poll covers meanwhile
                log.debug("generation listener: %s: %s", type(exc).__name__, exc)
            finally:
                self.connected.clear()
                if connection is not None:
                    with contextlib.suppress(Exception):
                        await connection.close(timeout=1)
            await asyncio.sleep(_RETRY_S)

    def _notified(self, _connection: Any, _pid: int, _channel: str, payload: str) -> None:
        try:
            generation = int(payload)
        except ValueError:
            return
        self._on_generation(generation)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
