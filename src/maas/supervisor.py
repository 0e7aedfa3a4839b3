"""`maas serve`: G gateway processes on one port and N worker processes, kept alive.

This is the supervisor process, which puts `maas serve` together. It binds the listening
socket first (`maas.supervision.listener`: a busy port is one line, before anything exists on
disk), prepares the registry once (migrations, bootstrap key, `maas.supervision.prepare`) so
gateways do not race on it, makes a private run directory (what each child is given, on top of
the user's settings: `maas.supervision.wiring`), and then, every `POLL_S`, keeps each gateway
and worker running (`maas.supervision.children`: a dead one is restarted with its restart
count, and the gateway that leads placement loads its versions onto a new worker when it first
answers), and carries out a rolling restart of the gateways on SIGHUP
(`maas.supervision.rolling`). A gateway process runs `maas.supervision.gateway`. The gateways
tell each other of registry changes through sockets in `run_dir/peers`.

SIGTERM or SIGINT stops the gateways first (they drain, `maas.api.drain`, and finish
what they hold with the workers), then the workers, and removes the run directory.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from maas.config import Settings
from maas.supervision.children import Child, Launcher, keep, stop_all
from maas.supervision.gateway import run_gateway
from maas.supervision.listener import StartupError, accepts, bind
from maas.supervision.prepare import prepare_registry
from maas.supervision.rolling import RollingRestart
from maas.supervision.wiring import METRICS_VARIABLE, RunDir

# `run_gateway` stays importable from here: a supervisor started before the split names the
# gateway's entry `maas.supervisor.run_gateway` when a rolling restart takes up a new install.
__all__ = ["POLL_S", "StartupError", "Supervisor", "banner", "mask_password", "run_gateway"]

POLL_S = 0.1


@dataclass
class Supervisor:
    settings: Settings
    demo: bool = False
    log_level: str = "info"
    run_dir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="maas-")))
    # Set by SIGTERM/SIGINT; the poll loop waits on it, so a stop is acted on at once.
    _stop_requested: threading.Event = field(default_factory=threading.Event)
    _rolling: RollingRestart = field(default_factory=RollingRestart)  # SIGHUP

    def run(self) -> None:
        # The port first: a busy one is said in one line before anything exists on disk. It is
        # bound here and listened on by the first gateway that serves, so a connection is
        # accepted only once something answers it (`/healthz` from the first moment).
        listener = bind(self.settings.host, self.settings.port)
        try:
            self._run(listener)
        finally:
            listener.close()

    def _run(self, listener: socket.socket) -> None:
        asyncio.run(prepare_registry(self.settings))
        # The gateways count requests into files here; a scrape on any of them adds them up,
        # and a restarted gateway's predecessor still counts (see
        # maas.observability.metrics). Every child inherits the variable.
        run = RunDir(self.run_dir)
        run.metrics.mkdir()
        os.environ[METRICS_VARIABLE] = str(run.metrics)
        launch = Launcher(self.settings, run, self.demo, self.log_level, listener)
        workers = [Child(f"w{i}") for i in range(self.settings.workers)]
        gateways = [Child(f"g{i}") for i in range(self.settings.gateways)]
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._stop)
        signal.signal(signal.SIGHUP, self._rolling.request)
        stopping = self._stop_requested
        announced = False
        try:
            while not stopping.is_set():
                if not announced and accepts(self.settings.host, self.settings.port):
                    print(banner(self.settings), file=sys.stderr)
                    announced = True
                now = time.monotonic()
                for index, child in enumerate(workers):
                    keep(child, now, partial(launch.worker, index=index), stopping=stopping)
                # While a gateway is being replaced, its old process serves: no crash loop.
                replacing = self._rolling.retiring is not None
                for index, child in enumerate(gateways):
                    serving = replacing or any(g.alive() for g in gateways if g is not child)
                    keep(
                        child,
                        now,
                        partial(launch.gateway, index=index),
                        stopping=stopping,
                        others_serve=serving,
                    )
                self._rolling.step(gateways, launch.gateway)
                stopping.wait(POLL_S)
        finally:
            # Gateways first: they finish what they hold with the workers (and drain).
            retiring = self._rolling.retiring
            stop_all([*gateways, *([retiring] if retiring else [])], grace_s=self.settings.drain_s)
            stop_all(workers)
            shutil.rmtree(self.run_dir, ignore_errors=True)

    def _stop(self, signum: int, frame: Any) -> None:
        self._stop_requested.set()


def banner(settings: Settings) -> str:
    """One line on what is on, once the port accepts connections."""
    where = f"http://{settings.host}:{settings.port}"
    infer = "inference needs a key" if settings.require_infer_key else "inference needs no key"
    return (
        f"maas: ready on {where} ({where}/docs): {settings.gateways} gateway and "
        f"{settings.workers} worker processes{_remote(settings)}, "
        f"registry {mask_password(settings.database_url)}, "
        f"admin routes need a key, {infer} (MAAS_REQUIRE_INFER_KEY)"
    )


def _remote(settings: Settings) -> str:
    count = len(settings.worker_endpoints)
    listed = f" and {count} remote worker{'s' if count != 1 else ''}" if count else ""
    if settings.workers == 0:
        listed += " (remote workers join by announcing themselves in the registry)"
    return listed


def mask_password(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    credentials, at, host = rest.rpartition("@")
    if not sep or not at or ":" not in credentials:
        return url
    user = credentials.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}"
