"""What every part of the `Registry` shares: its two session factories, the listeners that
hear each new generation once its change has committed, and the generation read itself."""

from __future__ import annotations

from collections.abc import Callable

from maas.registry import repository as repo
from maas.registry.db import SessionFactory


class RegistryBase:
    """The state each part of the `Registry` reaches through `self`: `_sessions` for reads,
    `_writes` for transactions that change something, `_changed` to tell the listeners."""

    def __init__(self, sessions: SessionFactory, *, writes: SessionFactory | None = None) -> None:
        self._sessions = sessions
        self._writes = writes or sessions
        self._listeners: list[Callable[[int], None]] = []

    def on_change(self, listener: Callable[[int], None]) -> None:
        self._listeners.append(listener)

    def _changed(self, generation: int) -> None:
        for listener in self._listeners:
            listener(generation)

    async def generation(self) -> int:
        """The registry's generation now: one row, the cheapest read there is."""
        async with self._sessions() as session:
            return await repo.generation(session)
