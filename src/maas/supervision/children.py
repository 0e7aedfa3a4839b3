"""The child processes of `maas serve` as its supervisor keeps them, in the supervisor process:
each one started in its slot, started again when it exits, and all of them stopped.

A worker is `maas worker` on a command line (`maas.supervision.wiring`); a gateway is a
`multiprocessing` spawn child that runs `maas.supervision.gateway.run_gateway` on the
supervisor's socket and sets an Event once it serves. A child that exits is started again
(with its restart count: the gateway that leads placement loads a new worker's versions when it
first answers), after a pause that grows while it keeps dying young, so a crash loop costs
nothing. A gateway that cannot even start ends `maas serve` instead.

The supervisor starts every child from its main thread: the kernel's parent-death signal
(`maas.supervision.lifeline`) follows the thread that started a child.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from typing import Any

from maas.config import Settings
from maas.supervision.gateway import STOP_GRACE_S, run_gateway
from maas.supervision.wiring import (
    RunDir,
    gateway_settings,
    worker_command,
    worker_environment,
)

# The supervisor's lines, wherever in it they are written, under one logger name.
log = logging.getLogger("maas.supervisor")

_BACKOFF_MAX_S = 5.0
_GATEWAY_CRASHES = 5


@dataclass
class Child:
    """One slot of `maas serve` (`w0`, `g1`...) and the process in it, if any."""

    name: str
    restarts: int = 0
    started: float = 0.0
    next_start: float = 0.0
    backoff_s: float = 0.0
    process: subprocess.Popen[bytes] | BaseProcess | None = None
    serving: Any = None  # a gateway's multiprocessing Event: set once its app serves

    def serves(self) -> bool:
        """A gateway whose app has started and accepts (its Event is set)."""
        return self.alive() and self.serving is not None and self.serving.is_set()

    def alive(self) -> bool:
        if self.process is None:
            return False
        if isinstance(self.process, subprocess.Popen):
            return self.process.poll() is None
        return self.process.is_alive()

    def note_exit(self, now: float) -> None:
        # A child that dies young is restarted after a growing pause (crash loops cost nothing).
        quick = now - self.started < 10.0
        self.backoff_s = min(_BACKOFF_MAX_S, max(0.2, self.backoff_s * 2)) if quick else 0.0
        self.next_start = now + self.backoff_s
        self.restarts += 1
        self.process = None


@dataclass(frozen=True)
class Launcher:
    """How the supervisor starts the child of a slot: local worker `index` as `maas worker`,
    gateway `index` as a spawn child on the listening socket."""

    settings: Settings
    run: RunDir
    demo: bool
    log_level: str
    listener: socket.socket

    def worker(self, child: Child, index: int) -> None:
        command = worker_command(
            self.settings,
            self.run,
            index,
            name=child.name,
            restarts=child.restarts,
            log_level=self.log_level,
            supervisor_pid=os.getpid(),
        )
        env = worker_environment(self.settings)
        # Its own process group: a Ctrl-C in the terminal reaches the supervisor only, which
        # stops the gateways before the workers they are talking to. Not its own session: the
        # kernel's autogroup scheduler would then give it a CPU share of its own (a bench at
        # C=64 lost 17% of its throughput to that). It ends with this process
        # (`maas.supervision.lifeline`), its own children with it. Started from the main thread,
        # as every child is: the kernel's parent-death signal follows the thread that started
        # a child.
        child.process = subprocess.Popen(command, env=env, process_group=0)

    def gateway(self, child: Child, index: int) -> None:
        settings = gateway_settings(self.settings, self.run, index)
        context = multiprocessing.get_context("spawn")
        serving = context.Event()
        process = context.Process(
            target=run_gateway,
            args=(
                settings.model_dump(mode="json"),
                self.listener,
                self.demo,
                self.log_level,
                serving,
                os.getpid(),
            ),
            name=f"maas-gateway-{index}",
        )
        process.start()
        child.process = process
        child.serving = serving


def keep(
    child: Child,
    now: float,
    start: Callable[[Child], None],
    *,
    stopping: threading.Event,
    others_serve: bool = False,
) -> None:
    """Start `child` with `start` if its process has exited (said, and counted) or was never
    started, once its pause is over and unless the supervisor is `stopping`."""
    if child.alive():
        return
    if child.process is not None:
        code = exit_code(child.process)
        if (
            child.name.startswith("g")
            and not others_serve
            and child.restarts >= _GATEWAY_CRASHES
            and (now - child.started < 10.0)
        ):
            # A gateway that cannot even start (bad settings, broken install) would crash
            # forever; better to stop and say so than to look alive. While another one
            # serves (a gateway cannot start while the registry is down), keep trying.
            raise SystemExit(f"maas: gateway {child.name} keeps exiting ({code}); giving up")
        log.warning("%s exited (%s); restarting", child.name, code)
        print(f"maas: {child.name} exited ({code}); restarting", file=sys.stderr)
        child.note_exit(now)
    if now >= child.next_start and not stopping.is_set():
        child.started = now
        start(child)


def exit_code(process: subprocess.Popen[bytes] | BaseProcess) -> int | None:
    if isinstance(process, subprocess.Popen):
        return process.returncode
    return process.exitcode


def stop_all(children: list[Child], grace_s: float = 0.0) -> None:
    """SIGTERM to every live child at once, then wait for each, all within STOP_GRACE_S plus
    `grace_s` (a gateway's drain); SIGKILL to those still there."""
    for child in children:
        if child.alive() and child.process is not None:
            child.process.terminate()
    deadline = time.monotonic() + STOP_GRACE_S + grace_s
    for child in children:
        process = child.process
        if process is None:
            continue
        remaining = max(0.1, deadline - time.monotonic())
        if isinstance(process, subprocess.Popen):
            try:
                process.wait(timeout=remaining)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        else:
            process.join(remaining)
            if process.is_alive():
                process.kill()
                process.join()
