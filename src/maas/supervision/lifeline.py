"""A child of `maas serve` ends when its supervisor does, even one killed with SIGKILL.

Gateways and workers lead process groups of their own (so a Ctrl-C reaches the supervisor
only), and the supervisor is the one that stops them in order. A supervisor that dies without
that (`kill -9`, the OOM killer) would leave them serving as orphans: still on the port, still
answering, and a second `maas serve` would find the port taken. So each child holds a lifeline
to its supervisor, taken as its first act (`hold`):

- On Linux, the parent-death signal (`prctl(PR_SET_PDEATHSIG)`): the kernel signals the child
  the moment the supervisor's thread that started it exits (the supervisor starts every child
  from its main thread, which lives as long as it does).
- Elsewhere, or where prctl fails, a daemon thread that watches `os.getppid()` (a dead parent's
  children are handed to another process, so the parent pid changes).

The end is SIGKILL, not a drain: nobody restarts the child, the workers go at the same moment
(so a gateway could not answer what it holds anyway), and a worker may be in the middle of a
long forward that a graceful stop would wait for; the registry and the artifact store are safe
against a kill (the next start sweeps what an upload left, `maas.control.sweeper`).

A process whose own children must not outlive it (a worker: torch or a model may start some)
holds the lifeline with `group=True`: it ends its whole process group, itself included, so
children that kept its group go with it. That needs code to run, so its signal is SIGUSR2 with
a handler, not SIGKILL. Children that moved to a group of their own must hold a lifeline
themselves.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time
from typing import NoReturn

POLL_S = 0.25  # the watch's period where prctl is missing: well within a second
_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
_GROUP_SIGNAL = signal.SIGUSR2


def hold(parent: int, *, group: bool = False) -> None:
    """End this process (with `group`: its process group) when `parent` exits. Call it first
    thing in the child, on its main thread; `parent` is the supervisor's pid as the supervisor
    knew it, so a supervisor that died before this call is noticed too."""
    if group:
        signal.signal(_GROUP_SIGNAL, lambda signum, frame: _end(group=True))
    signalled = _parent_death_signal(_GROUP_SIGNAL if group else signal.SIGKILL)
    # The parent may have died between this process's start and prctl: the signal was then
    # never sent, and this process already belongs to another parent.
    if os.getppid() != parent:
        _end(group)
    if not signalled:
        _watch(parent, group)


def _parent_death_signal(signum: int) -> bool:
    """Ask the kernel for `signum` at the parent's death; False where that cannot be had."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        result: int = libc.prctl(_PR_SET_PDEATHSIG, int(signum), 0, 0, 0)
    except (OSError, AttributeError):  # no libc to load, or no prctl in it
        return False
    return result == 0


def _watch(parent: int, group: bool) -> None:
    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(POLL_S)
        _end(group)

    threading.Thread(target=watch, name="maas-lifeline", daemon=True).start()


def _end(group: bool) -> NoReturn:
    # The whole group only when this process leads it: a group of someone else's (the shell's
    # of a hand-started process) is not ours to end.
    if group and os.getpgrp() == os.getpid():
        os.killpg(os.getpid(), signal.SIGKILL)
    os.kill(os.getpid(), signal.SIGKILL)
    os._exit(1)  # not reached: SIGKILL cannot be caught
