"""A WorkerServer's loop on a thread of the test's process, for tests of the links."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from maas.worker.loop import WorkerServer


@contextmanager
def serving(server: WorkerServer) -> Iterator[WorkerServer]:
    """Run `server` on a thread until the block ends; it is bound when the block starts."""
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True)
    thread.start()
    assert server.bound.wait(10)
    try:
        yield server
    finally:
        server.stop()
        thread.join(10)
