"""The rolling restart of `maas serve`'s gateways (SIGHUP, to take up a new install of the
package), run by the supervisor process one step per turn of its poll loop.

The gateways are restarted one at a time: each gets a replacement beside it on the shared
port, and the old process is sent SIGTERM (it drains, see `maas.api.drain`) only once
the replacement serves, so the port always has a gateway behind it; the next one's turn comes
once the old process has exited. A replacement that keeps exiting (a broken new install, say)
stops the roll, and the old process, still serving, takes its place again. A SIGHUP during a
roll asks for another one after it.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from maas.supervision.children import Child

_REPLACEMENT_TRIES = 3  # a rolling restart stops when a replacement has exited this often


@dataclass
class _Roll:
    """A rolling restart under way: the gateways still to restart (the first is the current
    one) and, while it is being replaced, its old process."""

    pending: list[int]
    retiring: Child | None = None
    restarts: int = 0  # the gateway's restart count when its replacement was started
    stopping: bool = False  # the old process has been sent SIGTERM


class RollingRestart:
    """The supervisor's rolling restarts: asked for by `request` (the SIGHUP handler), carried
    out by `step`."""

    def __init__(self) -> None:
        self._requested = threading.Event()  # SIGHUP
        self._roll: _Roll | None = None

    def request(self, signum: int, frame: Any) -> None:
        self._requested.set()

    @property
    def retiring(self) -> Child | None:
        """The old process of the gateway being replaced: it serves, and is stopped with the
        gateways if `maas serve` stops meanwhile."""
        return self._roll.retiring if self._roll is not None else None

    def step(self, gateways: list[Child], start: Callable[[Child, int], None]) -> None:
        """One step of a rolling restart, if one is asked for or under way: start the current
        gateway's replacement (with `start`) once it serves itself, stop the old process once
        the replacement serves, and go on to the next gateway once the old one has exited."""
        if self._roll is None:
            if not self._requested.is_set():
                return
            self._requested.clear()  # a SIGHUP during a roll asks for another one after it
            self._roll = _Roll(pending=list(range(len(gateways))))
            print(f"maas: rolling restart of {len(gateways)} gateway process(es)", file=sys.stderr)
        roll = self._roll
        index = roll.pending[0]
        child = gateways[index]
        if roll.retiring is None:
            if not child.serves():
                return  # it is (re)starting: the replacement waits until it serves
            roll.retiring = Child(f"{child.name}-old", process=child.process, serving=child.serving)
            roll.restarts = child.restarts
            child.process = None
            child.started = time.monotonic()
            start(child, index)
            return
        old = roll.retiring
        if not roll.stopping:
            if child.restarts - roll.restarts >= _REPLACEMENT_TRIES:
                self._abandon(child, roll)
                return
            if not child.serves():
                return  # a replacement that dies is restarted by `keep`; the old one serves on
            if old.process is not None:
                old.process.terminate()  # it drains, within MAAS_DRAIN_S
            roll.stopping = True
            return
        if old.alive():
            return
        roll.retiring = None
        roll.stopping = False
        roll.pending.pop(0)
        done = len(gateways) - len(roll.pending)
        print(f"maas: {child.name} restarted ({done}/{len(gateways)})", file=sys.stderr)
        if not roll.pending:
            print("maas: rolling restart done", file=sys.stderr)
            self._roll = None

    def _abandon(self, child: Child, roll: _Roll) -> None:
        """A replacement that keeps exiting (a broken new install, say) stops the roll: the old
        process, still serving, takes its place again."""
        if child.process is not None and child.alive():
            child.process.kill()
        assert roll.retiring is not None
        child.process, child.serving = roll.retiring.process, roll.retiring.serving
        print(
            f"maas: rolling restart stopped: the replacement of {child.name} exited "
            f"{_REPLACEMENT_TRIES} times; the old process serves on",
            file=sys.stderr,
        )
        self._roll = None
