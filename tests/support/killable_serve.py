"""A `maas serve` to kill: started on a data directory that outlives it, so a test can SIGKILL
the whole tree (supervisor, gateways, workers) and start another on the same data."""

from __future__ import annotations

import sys
from pathlib import Path

from support.inprocess_gateway import ADMIN
from support.processes import Child, answers_200, maas_env, process_tree, start

__all__ = ["kill_tree", "process_tree", "start_serve", "stop_serve", "wait_up"]


def kill_tree(process: Child) -> None:
    """SIGKILL `process` and everything below it at once, as a host losing power would."""
    process.kill_all()


def start_serve(data: Path, port: int, log: Path, *, gateways: int = 1, workers: int = 1) -> Child:
    """`maas serve` on `port` with its registry, artifacts and key file in `data`."""
    env = maas_env(
        data,
        MAAS_BOOTSTRAP_ADMIN_KEY=ADMIN["Authorization"].removeprefix("Bearer "),
        MAAS_SWEEP_MIN_AGE_S="0",
    )
    argv = [sys.executable, "-m", "maas", "serve", "--port", str(port)]
    argv += ["--gateways", str(gateways), "--workers", str(workers)]
    return start(argv, log=log, env=env)


def wait_up(url: str, process: Child, log: Path) -> None:
    """Until `process` (logging to `log`) answers /healthz at `url`."""
    assert process.log == log, (process.log, log)
    process.wait_ready(answers_200(url + "/healthz"), f"maas serve answering on {url}", 60)


def stop_serve(process: Child) -> None:
    process.stop(grace_s=30)
