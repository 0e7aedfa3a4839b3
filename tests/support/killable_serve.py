"""A `maas serve` to kill: started on a data directory that outlives it, so a test can SIGKILL
the whole tree (supervisor, gateways, workers) and start another on the same data."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from support.inprocess_gateway import ADMIN


def process_tree(root: int) -> list[int]:
    """`root` and every process below it (gateways and workers are their own groups)."""
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


def kill_tree(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL `process` and everything below it at once, as a host losing power would."""
    for pid in process_tree(process.pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    process.wait(10)


def start_serve(
    data: Path, port: int, log: Path, *, gateways: int = 1, workers: int = 1
) -> subprocess.Popen[bytes]:
    """`maas serve` on `port` with its registry, artifacts and key file in `data`."""
    env = {
        **os.environ,
        "MAAS_DATABASE_URL": f"sqlite:///{data}/registry.db",
        "MAAS_ARTIFACT_DIR": str(data / "artifacts"),
        "MAAS_DATA_DIR": str(data),
        "MAAS_TORCH_THREADS": "1",
        "MAAS_BOOTSTRAP_ADMIN_KEY": ADMIN["Authorization"].removeprefix("Bearer "),
        "MAAS_SWEEP_MIN_AGE_S": "0",
    }
    argv = [sys.executable, "-m", "maas", "serve", "--port", str(port)]
    argv += ["--gateways", str(gateways), "--workers", str(workers)]
    return subprocess.Popen(argv, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)


def wait_up(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    for _ in range(600):
        assert process.poll() is None, log.read_text()
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                return
        time.sleep(0.1)
    raise AssertionError(log.read_text())


def stop_serve(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        kill_tree(process)
