"""`maas serve`: G gateway processes on one port and N worker processes, kept alive.

The supervisor prepares the registry once (migrations, bootstrap key) so gateways do not race
on it, binds the listening socket and hands it to every gateway (the kernel spreads
connections), starts workers on `ipc://` sockets in a private run directory (what each child
is given, on top of the user's settings: `maas.supervision.wiring`), and restarts any
child that exits: a dead worker is noticed within `POLL_S` and restarted with its restart count,
and the gateway that leads placement loads its versions onto the new process when it first
answers. The gateways tell each other of registry changes through sockets in `run_dir/peers`.

SIGHUP restarts the gateway processes one at a time (a rolling restart, to take up a new
install of the package): each gets a replacement beside it, and is stopped (it drains, see
`maas.supervision.drain`) only once the replacement serves, so the port always has a gateway
behind it.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import multiprocessing
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

from maas.config import Settings
from maas.supervision.wiring import (
    METRICS_VARIABLE,
    RunDir,
    gateway_settings,
    worker_command,
    worker_environment,
)

log = logging.getLogger(__name__)

POLL_S = 0.1
LOG_FORMAT = "%(asctime)s %(name)s %(levelname)s %(message)s"
_BACKOFF_MAX_S = 5.0
_STOP_GRACE_S = 10.0
_GATEWAY_CRASHES = 5
_REPLACEMENT_TRIES = 3  # a rolling restart stops when a replacement has exited this often


class StartupError(Exception):
    """`maas serve` cannot start (the port is taken...): one line for the operator, said
    before anything was created."""


@dataclass
class _Child:
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


@dataclass
class Supervisor:
    settings: Settings
    demo: bool = False
    log_level: str = "info"
    run_dir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="maas-")))
    # Set by SIGTERM/SIGINT; the poll loop waits on it, so a stop is acted on at once.
    _stop_requested: threading.Event = field(default_factory=threading.Event)
    _roll_requested: threading.Event = field(default_factory=threading.Event)  # SIGHUP
    _roll: _Roll | None = None

    def run(self) -> None:
        # The port first: a busy one is said in one line before anything exists on disk. It is
        # bound here and listened on by the first gateway that serves, so a connection is
        # accepted only once something answers it (`/healthz` from the first moment).
        listener = _bind(self.settings.host, self.settings.port)
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
        workers = [_Child(f"w{i}") for i in range(self.settings.workers)]
        gateways = [_Child(f"g{i}") for i in range(self.settings.gateways)]
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._stop)
        signal.signal(signal.SIGHUP, self._request_roll)
        announced = False
        try:
            while not self._stop_requested.is_set():
                if not announced and _accepts(self.settings.host, self.settings.port):
                    print(banner(self.settings), file=sys.stderr)
                    announced = True
                now = time.monotonic()
                for index, child in enumerate(workers):
                    self._keep(child, now, lambda c, i=index: self._start_worker(c, i))
                # While a gateway is being replaced, its old process serves: no crash loop.
                replacing = self._roll is not None and self._roll.retiring is not None
                for index, child in enumerate(gateways):
                    serving = replacing or any(g.alive() for g in gateways if g is not child)
                    self._keep(
                        child,
                        now,
                        lambda c, i=index: self._start_gateway(c, i, listener),
                        others_serve=serving,
                    )
                self._roll_gateways(gateways, listener)
                self._stop_requested.wait(POLL_S)
        finally:
            # Gateways first: they finish what they hold with the workers (and drain).
            retiring = [self._roll.retiring] if self._roll and self._roll.retiring else []
            _stop_all([*gateways, *retiring], grace_s=self.settings.drain_s)
            _stop_all(workers)
            shutil.rmtree(self.run_dir, ignore_errors=True)

    def _stop(self, signum: int, frame: Any) -> None:
        self._stop_requested.set()

    def _request_roll(self, signum: int, frame: Any) -> None:
        self._roll_requested.set()

    def _roll_gateways(self, gateways: list[_Child], listener: socket.socket) -> None:
        """One step of a rolling restart, if one is asked for or under way: start the current
        gateway's replacement once it serves itself, stop the old process once the
        replacement serves, and go on to the next gateway once the old one has exited."""
        if self._roll is None:
            if not self._roll_requested.is_set():
                return
            self._roll_requested.clear()  # a SIGHUP during a roll asks for another one after it
            self._roll = _Roll(pending=list(range(len(gateways))))
            print(f"maas: rolling restart of {len(gateways)} gateway process(es)", file=sys.stderr)
        roll = self._roll
        index = roll.pending[0]
        child = gateways[index]
        if roll.retiring is None:
            if not child.serves():
                return  # it is (re)starting: the replacement waits until it serves
            roll.retiring = _Child(
                f"{child.name}-old", process=child.process, serving=child.serving
            )
            roll.restarts = child.restarts
            child.process = None
            child.started = time.monotonic()
            self._start_gateway(child, index, listener)
            return
        old = roll.retiring
        if not roll.stopping:
            if child.restarts - roll.restarts >= _REPLACEMENT_TRIES:
                self._abandon_roll(child, roll)
                return
            if not child.serves():
                return  # a replacement that dies is restarted by `_keep`; the old one serves on
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

    def _abandon_roll(self, child: _Child, roll: _Roll) -> None:
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

    def _keep(self, child: _Child, now: float, start: Any, *, others_serve: bool = False) -> None:
        if child.alive():
            return
        if child.process is not None:
            code = _exit_code(child.process)
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
        if now >= child.next_start and not self._stop_requested.is_set():
            child.started = now
            start(child)

    def _start_worker(self, child: _Child, index: int) -> None:
        command = worker_command(
            self.settings,
            RunDir(self.run_dir),
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

    def _start_gateway(self, child: _Child, index: int, listener: socket.socket) -> None:
        settings = gateway_settings(self.settings, RunDir(self.run_dir), index)
        context = multiprocessing.get_context("spawn")
        serving = context.Event()
        process = context.Process(
            target=run_gateway,
            args=(
                settings.model_dump(mode="json"),
                listener,
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


@dataclass
class _Roll:
    """A rolling restart under way: the gateways still to restart (the first is the current
    one) and, while it is being replaced, its old process."""

    pending: list[int]
    retiring: _Child | None = None
    restarts: int = 0  # the gateway's restart count when its replacement was started
    stopping: bool = False  # the old process has been sent SIGTERM


async def prepare_registry(settings: Settings) -> None:
    """Migrations, the bootstrap key and the sweep of what a crash left (`maas.store.sweeper`),
    once, before any gateway starts."""
    from maas.auth.keys import ensure_key
    from maas.registry import db
    from maas.registry.service import Registry
    from maas.store import deployment_store
    from maas.store.sweeper import sweep
    from maas.types import Scope

    database = db.open_database(settings.database_url)
    try:
        await db.upgrade(database.engine)
        registry = Registry(database.reads, writes=database.writes)
        store = deployment_store(settings)
        report = await sweep(registry, store, min_age_s=settings.sweep_min_age_s)
        if report.cleaned:
            print(f"maas: {report}", file=sys.stderr)
        if settings.bootstrap_admin_key:
            await ensure_key(
                registry,
                name="bootstrap-admin",
                secret=settings.bootstrap_admin_key,
                scopes=[Scope.ADMIN.value],
            )
    finally:
        await database.dispose()


def run_gateway(
    settings_data: dict[str, Any],
    listener: socket.socket,
    demo: bool,
    log_level: str,
    serving: Any = None,
    supervisor_pid: int | None = None,
) -> None:
    """A gateway process: the FastAPI app under uvicorn, on the supervisor's socket. It ends
    with its supervisor (`maas.supervision.lifeline`): no restart would come, and it holds the
    port."""
    if supervisor_pid is not None:
        from maas.supervision import lifeline

        lifeline.hold(supervisor_pid)
    import uvicorn
    import uvicorn.protocols.http.httptools_impl as httptools_impl

    # uvicorn stops reading a connection once 64 KiB of body wait for the app, and starts again
    # when the app takes them: a 588 KiB image tensor took ten such turns, about 1.2 ms of this
    # process at 8 concurrent requests (bench, resnet rows). The inference route reads every
    # body whole (up to MAAS_MAX_BODY_BYTES) at once, so nothing is gained by pausing sooner.
    setattr(httptools_impl, "HIGH_WATER_LIMIT", _BODY_HIGH_WATER)  # noqa: B010 - not exported

    os.setpgrp()  # like the workers: stopped by the supervisor, in order, not by a Ctrl-C
    logging.basicConfig(level=log_level.upper(), format=LOG_FORMAT)
    logging.getLogger("alembic").setLevel(logging.WARNING)

    from maas.app import MaasApp, create_app
    from maas.supervision.drain import Drain, DrainingServer

    settings = Settings(**settings_data)
    hook = None
    if demo:
        from maas.demo.setup import install_demo, wait_for_demo

        hook = install_demo if settings.gateway_index == 0 else wait_for_demo
    app = create_app(settings, on_started=hook, calm_gc=True)
    config = uvicorn.Config(
        app,
        log_level=log_level,
        log_config=uvicorn_log_config(),
        access_log=False,  # maas writes its own (maas.api.access_log)
        timeout_graceful_shutdown=int(_STOP_GRACE_S),
    )
    drain = app.drain if isinstance(app, MaasApp) else Drain()
    on_serving = serving.set if serving is not None else None
    server = DrainingServer(config, drain, settings.drain_s, on_serving=on_serving)
    server.run(sockets=[listener])


_BODY_HIGH_WATER = 1024 * 1024


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise StartupError(
                f"port {port} on {host} is already in use by another process; stop it or "
                "choose another port with --port or MAAS_PORT"
            ) from None
        raise StartupError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.set_inheritable(True)
    return sock


def _accepts(host: str, port: int) -> bool:
    target = "127.0.0.1" if host in ("0.0.0.0", "") else "::1" if host == "::" else host
    try:
        with socket.create_connection((target, port), timeout=0.2):
            return True
    except OSError:
        return False


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


def uvicorn_log_config() -> dict[str, Any]:
    """uvicorn's own lines in maas's one format (timestamp, logger, level, message)."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"maas": {"format": LOG_FORMAT}},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "maas",
                "stream": "ext://sys.stderr",
            }
        },
        "loggers": {
            "uvicorn": {"handlers": ["stderr"], "level": "INFO", "propagate": False},
            "uvicorn.error": {"level": "INFO"},
        },
    }


def _exit_code(process: subprocess.Popen[bytes] | BaseProcess) -> int | None:
    if isinstance(process, subprocess.Popen):
        return process.returncode
    return process.exitcode


def _stop_all(children: list[_Child], grace_s: float = 0.0) -> None:
    for child in children:
        if child.alive() and child.process is not None:
            child.process.terminate()
    deadline = time.monotonic() + _STOP_GRACE_S + grace_s
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
