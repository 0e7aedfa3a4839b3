"""Starting and stopping the processes under test: `maas serve` and the bare uvicorn app.

Every child runs in its own session (so a Ctrl-C on the terminal reaches only the orchestrator,
which then stops them in order) and is stopped with SIGTERM to its process group, then SIGKILL
to whatever is left of that group after a grace period.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import httpx

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


class ProcessFailed(RuntimeError):
    """A child exited early or never became ready; the message carries its log tail."""


class ManagedProcess:
    """A child process in its own process group, with its output in `log_path` (or a pipe)."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        log_path: Path,
        env: Mapping[str, str] | None = None,
        stdout_pipe: bool = False,
    ) -> None:
        self.name = name
        self.log_path = log_path
        self._log: IO[bytes] = log_path.open("wb")
        self.popen = subprocess.Popen(
            list(argv),
            cwd=REPO,
            env=dict(env) if env is not None else None,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE if stdout_pipe else self._log,
            stderr=self._log,
            start_new_session=True,
            text=stdout_pipe,
        )
        self.pid = self.popen.pid
        self._stopped = False

    def __enter__(self) -> ManagedProcess:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, grace_s: float = 10.0) -> None:
        """SIGTERM to the group, wait up to `grace_s`, then SIGKILL what is left of it."""
        if self._stopped:
            return
        self._stopped = True
        pgid = self.pid  # start_new_session: the child leads its own group
        if self.alive():
            _signal_group(pgid, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=max(0.1, deadline - time.monotonic()))
        while _group_alive(pgid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if _group_alive(pgid) or self.alive():
            _signal_group(pgid, signal.SIGKILL)
            self.popen.wait()
        if self.popen.stdout is not None:
            self.popen.stdout.close()
        self._log.close()

    def log_size(self) -> int:
        try:
            return self.log_path.stat().st_size
        except OSError:
            return 0

    def log_since(self, offset: int) -> list[str]:
        """The log lines written after byte `offset` (see `log_size`)."""
        try:
            with self.log_path.open("rb") as log:
                log.seek(offset)
                return log.read().decode(errors="replace").splitlines()
        except OSError:
            return []

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, sig)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_ready(proc: ManagedProcess, url: str, timeout_s: float) -> None:
    """Poll `url` until it answers 200; fail at once if `proc` exits."""
    deadline = time.monotonic() + timeout_s
    last = "no answer"
    while time.monotonic() < deadline:
        if not proc.alive():
            raise ProcessFailed(
                f"{proc.name} exited with {proc.popen.returncode} before {url} was ready:\n"
                + proc.log_tail()
            )
        try:
            response = httpx.get(url, timeout=2.0)
            if response.status_code == 200:
                return
            last = f"{response.status_code} {response.text[:200]}"
        except httpx.HTTPError as exc:
            last = f"{type(exc).__name__}: {exc}"
        time.sleep(0.2)
    raise ProcessFailed(f"{url} not ready after {timeout_s:.0f} s ({last}):\n" + proc.log_tail())


def start_bare(port: int, processes: int, log_dir: Path) -> ManagedProcess:
    """The bare app under uvicorn (uvloop, httptools, no access log) in `processes` processes."""
    argv: list[str] = [
        sys.executable,
        "-m",
        "uvicorn",
        "bench.bare_app:app",
        "--app-dir",
        str(REPO),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--loop",
        "uvloop",
        "--http",
        "httptools",
        "--no-access-log",
        "--log-level",
        "warning",
    ]
    if processes > 1:
        argv += ["--workers", str(processes)]
    proc = ManagedProcess(f"bare-{processes}", argv, log_path=log_dir / f"bare-{processes}.log")
    try:
        wait_ready(proc, f"http://127.0.0.1:{port}/healthz", 30)
    except BaseException:
        proc.stop()
        raise
    return proc


def maas_env(data_dir: Path, secret: str) -> dict[str, str]:
    """The environment `maas serve` runs under: a fresh SQLite registry and artifact store."""
    env = dict(os.environ)
    env.update(
        {
            "MAAS_DATABASE_URL": f"sqlite:///{data_dir / 'registry.db'}",
            "MAAS_ARTIFACT_DIR": str(data_dir / "artifacts"),
            "MAAS_DATA_DIR": str(data_dir),
            "MAAS_TORCH_THREADS": "1",
            "MAAS_BOOTSTRAP_ADMIN_KEY": secret,
            "MAAS_REQUEST_TIMEOUT_MS": "30000",
        }
    )
    return env


def start_maas(
    port: int,
    *,
    workers: int,
    gateways: int,
    data_dir: Path,
    secret: str,
    ready_s: float = 120,
    source: Path | None = None,
) -> ManagedProcess:
    """`maas serve`, this checkout's, or with `source` the `maas` package under that `src/`
    directory (put first on PYTHONPATH for the server and every process it starts)."""
    argv = [
        str(BIN / "maas"),
        "serve",
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--gateways",
        str(gateways),
        "--log-level",
        "warning",
    ]
    env = maas_env(data_dir, secret)
    if source is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(source), env.get("PYTHONPATH")]))
    proc = ManagedProcess("maas serve", argv, log_path=data_dir / "maas.log", env=env)
    try:
        wait_ready(proc, f"http://127.0.0.1:{port}/readyz", ready_s)
    except BaseException:
        proc.stop()
        raise
    return proc


def python_module(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]


def describe(proc: ManagedProcess) -> dict[str, Any]:
    return {"name": proc.name, "pid": proc.pid, "log": str(proc.log_path)}
