"""Real `maas serve` and `maas worker` processes, for tests that need real HTTP and links."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from support.inprocess_gateway import ADMIN


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def maas_server(
    data_dir: Path,
    *args: str,
    env: dict[str, str] | None = None,
    ready_path: str = "/healthz",
    wait_s: float = 60,
) -> Iterator[str]:
    port = free_port()
    environ = {
        **os.environ,
        "MAAS_DATABASE_URL": f"sqlite:///{data_dir}/registry.db",
        "MAAS_ARTIFACT_DIR": str(data_dir / "artifacts"),
        "MAAS_DATA_DIR": str(data_dir),
        "MAAS_TORCH_THREADS": "1",
        **(env or {}),
    }
    log = open(data_dir / "server.log", "wb")  # noqa: SIM115 - closed below
    process = subprocess.Popen(
        [sys.executable, "-m", "maas", "serve", "--port", str(port), *args],
        env=environ,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + wait_s
        while True:
            if process.poll() is not None:
                raise AssertionError(f"server exited: {(data_dir / 'server.log').read_text()}")
            try:
                if httpx.get(url + ready_path, timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"server not up: {(data_dir / 'server.log').read_text()}")
            time.sleep(0.1)
        yield url
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


@contextlib.contextmanager
def maas_worker(
    endpoint: str,
    worker_id: str | None = None,
    *,
    env: dict[str, str] | None = None,
    log: Path | None = None,
) -> Iterator[subprocess.Popen[bytes]]:
    """`maas worker --listen ENDPOINT` with one torch thread, killed on the way out."""
    argv = [sys.executable, "-m", "maas", "worker", "--listen", endpoint, "--threads", "1"]
    if worker_id is not None:
        argv += ["--id", worker_id]
    out = open(log, "wb") if log is not None else None  # noqa: SIM115 - closed below
    process = subprocess.Popen(
        [*argv, "--log-level", "info" if log is not None else "warning"],
        env={**os.environ, **(env or {})},
        stdout=out,
        stderr=subprocess.STDOUT if out is not None else None,
    )
    try:
        yield process
    finally:
        process.kill()
        process.wait()
        if out is not None:
            out.close()


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
