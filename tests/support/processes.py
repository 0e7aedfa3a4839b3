"""Child processes of the suite, started one way: `started` (or `start` where a test kills and
restarts a child by hand). A child writes stdout and stderr to a log file, may lead a process
group of its own, is waited for until a readiness check passes (failing with its log if it
exits first or never gets there), and is stopped by SIGTERM, then SIGKILL to it and everything
below it, and reaped. On a failure inside `started`, the child's log is printed (pytest shows
it with the failure). Also: real `maas serve` and `maas worker` processes on top of that."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx

from support.inprocess_gateway import ADMIN

LOG_TAIL = 20_000  # characters of a child's log that a failure shows
SCRATCH_LOG = "child.log"


class Child(subprocess.Popen[bytes]):
    """A process a test started (with `start`): a Popen that knows its log and how it ends."""

    def __init__(
        self,
        argv: Sequence[str],
        *,
        log: Path,
        stderr_log: Path | None,
        env: dict[str, str] | None,
        cwd: Path | None,
        own_group: bool,
    ) -> None:
        self.argv = list(argv)
        self.log = log
        self.stderr_log = stderr_log
        self.own_group = own_group
        with contextlib.ExitStack() as files:  # the child keeps its own copies of these
            out = files.enter_context(log.open("wb"))
            err = files.enter_context(stderr_log.open("wb")) if stderr_log else subprocess.STDOUT
            super().__init__(
                self.argv,
                env=env,
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                process_group=0 if own_group else None,
            )

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stderr_text(self) -> str:
        """What it wrote to stderr, where that has a file of its own (`stderr_log`)."""
        assert self.stderr_log is not None, "stderr goes to the log"
        return self.stderr_log.read_text(errors="replace")

    def describe(self) -> str:
        """Its command, exit status and the end of its log: what a failure message shows."""
        state = "running" if self.poll() is None else f"exit status {self.returncode}"
        text = self.log_text()
        if self.stderr_log is not None:
            text += "\n--- stderr ---\n" + self.stderr_text()
        return f"{' '.join(self.argv)} ({state}), log {self.log}:\n{text[-LOG_TAIL:]}"

    def wait_ready(self, ready: Callable[[], object], what: str, timeout_s: float = 60) -> None:
        """Until `ready()` is true; fails with the log if the child exits first or `timeout_s`
        passes."""
        deadline = time.monotonic() + timeout_s
        while not ready():
            if self.poll() is not None:
                raise AssertionError(f"exited before {what}: {self.describe()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"not {what} within {timeout_s:.0f} s: {self.describe()}")
            time.sleep(0.1)

    def signal_all(self, sig: int) -> None:
        """`sig` to the child, or to its whole group where it leads one."""
        with contextlib.suppress(ProcessLookupError):
            if self.own_group:
                os.killpg(self.pid, sig)
            else:
                self.send_signal(sig)

    def kill_all(self) -> None:
        """SIGKILL to the child and everything below it at once (its group too, where it leads
        one), as a host losing power would; then reap it."""
        kill_all([self])

    def stop(self, grace_s: float = 15) -> None:
        stop_all([self], grace_s)

    def _sigkill_tree(self) -> None:
        if self.poll() is not None:
            return
        for pid in process_tree(self.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if self.own_group:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGKILL)


def kill_all(children: Iterable[Child]) -> None:
    """SIGKILL to every child and everything below each, all at once; then reap them."""
    children = list(children)
    for child in children:
        child._sigkill_tree()
    for child in children:
        child.wait(10)


def stop_all(children: Iterable[Child], grace_s: float = 15) -> None:
    """SIGTERM to every child at once (none with `grace_s` 0); those still running after
    `grace_s` are killed with everything below them (`kill_all`). All are reaped."""
    children = list(children)
    if grace_s > 0:
        for child in children:
            if child.poll() is None:
                child.signal_all(signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    running = []
    for child in children:
        try:
            child.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            running.append(child)
    kill_all(running)


def start(
    argv: Sequence[str],
    *,
    log: Path | None = None,
    stderr_log: Path | None = None,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    own_group: bool = False,
) -> Child:
    """Start `argv` with stdout and stderr in `log` (a scratch file if None), or stderr in
    `stderr_log` where given; `env` is its whole environment (None: this one's); with
    `own_group` it leads a process group, so signals reach its children too."""
    if log is None:
        log = Path(tempfile.mkdtemp(prefix="maas-child-")) / SCRATCH_LOG
    return Child(argv, log=log, stderr_log=stderr_log, env=env, cwd=cwd, own_group=own_group)


@contextlib.contextmanager
def started(
    argv: Sequence[str],
    *,
    log: Path | None = None,
    stderr_log: Path | None = None,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    own_group: bool = False,
    ready: Callable[[], object] | None = None,
    what: str = "ready",
    ready_s: float = 60,
    grace_s: float = 15,
) -> Iterator[Child]:
    """`start` the child, wait until `ready()` (if given), and stop it on the way out
    (`Child.stop` with `grace_s`); if anything in between fails, its log is printed."""
    child = start(argv, log=log, stderr_log=stderr_log, env=env, cwd=cwd, own_group=own_group)
    ok = False
    try:
        if ready is not None:
            child.wait_ready(ready, what, ready_s)
        yield child
        ok = True
    finally:
        try:
            child.stop(grace_s)
        finally:
            if not ok:
                print(f"\n--- child process ---\n{child.describe()}")
            elif log is None:  # a scratch log nobody asked for: gone with the child
                shutil.rmtree(child.log.parent, ignore_errors=True)


def process_tree(root: int) -> list[int]:
    """`root` and every process below it (gateways and workers lead their own groups)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):
                stat = (entry / "stat").read_text()
                parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = [root], [root]
    while frontier:
        children = [pid for pid, parent in parents.items() if parent in frontier]
        found += children
        frontier = children
    return found


def answers_200(url: str) -> Callable[[], bool]:
    """A readiness check: GET `url` answers 200."""

    def check() -> bool:
        try:
            return httpx.get(url, timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    return check


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def maas_env(data_dir: Path, **extra: str) -> dict[str, str]:
    """This environment, with `maas serve`'s registry, artifacts and data in `data_dir` and one
    torch thread, plus `extra`."""
    return {
        **os.environ,
        "MAAS_DATABASE_URL": f"sqlite:///{data_dir}/registry.db",
        "MAAS_ARTIFACT_DIR": str(data_dir / "artifacts"),
        "MAAS_DATA_DIR": str(data_dir),
        "MAAS_TORCH_THREADS": "1",
        **extra,
    }


@contextlib.contextmanager
def maas_server(
    data_dir: Path,
    *args: str,
    env: dict[str, str] | None = None,
    ready_path: str = "/healthz",
    wait_s: float = 60,
) -> Iterator[str]:
    """`maas serve` on a free port with its data in `data_dir` (log: `server.log` there), up
    once `ready_path` answers 200; its URL. SIGTERM on the way out."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with started(
        [sys.executable, "-m", "maas", "serve", "--port", str(port), *args],
        log=data_dir / "server.log",
        env=maas_env(data_dir, **(env or {})),
        ready=answers_200(url + ready_path),
        what=f"maas serve answering {ready_path} on {url}",
        ready_s=wait_s,
    ):
        yield url


@contextlib.contextmanager
def maas_worker(
    endpoint: str,
    worker_id: str | None = None,
    *,
    env: dict[str, str] | None = None,
    log: Path | None = None,
) -> Iterator[Child]:
    """`maas worker --listen ENDPOINT` with one torch thread (logging at info where the test
    reads its `log`), killed on the way out."""
    argv = [sys.executable, "-m", "maas", "worker", "--listen", endpoint, "--threads", "1"]
    if worker_id is not None:
        argv += ["--id", worker_id]
    argv += ["--log-level", "info" if log is not None else "warning"]
    with started(argv, log=log, env={**os.environ, **(env or {})}, grace_s=0) as child:
        yield child


def deploy(
    url: str, artifact: bytes, meta: dict[str, Any], name: str = "m", admin: dict[str, str] = ADMIN
) -> None:
    """Create `name`, upload version 1, wait until it is ready and alias it `production`."""
    assert httpx.post(url + "/admin/models", json={"name": name}, headers=admin).status_code == 201
    uploaded = httpx.post(
        f"{url}/admin/models/{name}/versions",
        files={"file": ("model.pt", artifact)},
        data={"meta": json.dumps(meta)},
        headers=admin,
    )
    assert uploaded.status_code == 201, uploaded.text
    for _ in range(300):
        status = httpx.get(f"{url}/admin/models/{name}/versions/1", headers=admin).json()["status"]
        if status != "loading":
            break
        time.sleep(0.05)
    assert status == "ready"
    alias = httpx.put(
        f"{url}/admin/models/{name}/aliases/production", json={"version": 1}, headers=admin
    )
    assert alias.status_code == 200


def wait_ready(url: str, hits: int = 6, timeout_s: float = 30) -> None:
    """Until `hits` answers in a row from /readyz, each on a new connection (so from every
    gateway process, as the kernel spreads them), are 200: a gateway learns of another's
    loads from the workers' next heartbeat."""
    deadline = time.monotonic() + timeout_s
    streak = 0
    while streak < hits:
        streak = streak + 1 if httpx.get(url + "/readyz").status_code == 200 else 0
        if time.monotonic() > deadline:
            raise AssertionError(f"not ready: {httpx.get(url + '/readyz').text}")
        time.sleep(0.02)
