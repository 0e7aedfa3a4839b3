"""Waiting in a test for something another process or thread makes true."""

from __future__ import annotations

import asyncio
from collections.abc import Callable


async def until(check: Callable[[], object], what: str, timeout_s: float = 30) -> None:
    """Return once `check()` is true; fail saying `what` never happened within `timeout_s`."""
    for _ in range(int(timeout_s / 0.01)):
        if check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"never happened within {timeout_s:.0f} s: {what}")
