"""`maas serve --workers 0` with remote workers listed in MAAS_WORKER_ENDPOINTS: tcp:// links
with the deployment's CurveZMQ keys, placement on them, inference through them, and a worker
started with other keys never used.

Every process runs on this host (the multi-host test puts them in network namespaces), so the
workers read artifacts from the gateway's artifact directory.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from control_helpers import upload, wait_for, wait_ready_version, workers

from artifacts import mlp_meta, tiny_mlp, torchscript_bytes
from gateway import ADMIN_SECRET
from maas.transport.curve import make_keys
from server import maas_server


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def remote_worker(name: str, keys: Path, log: Path) -> Iterator[str]:
    endpoint = f"tcp://127.0.0.1:{_free_port()}"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "maas",
                "worker",
                "--listen",
                endpoint,
                "--id",
                name,
                "--threads",
                "1",
            ],
            env={**os.environ, "MAAS_WORKER_KEYS_DIR": str(keys)},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        yield endpoint
    finally:
        process.kill()
        process.wait()


def test_gateways_serve_through_remote_workers_and_skip_a_stranger(tmp_path: Path) -> None:
    keys, other = tmp_path / "keys", tmp_path / "other-keys"
    make_keys(keys)
    make_keys(other)
    with (
        remote_worker("r1", keys, tmp_path / "r1.log") as r1,
        remote_worker("r2", keys, tmp_path / "r2.log") as r2,
        remote_worker("stranger", other, tmp_path / "s.log") as stranger,
    ):
        env = {
            "MAAS_WORKER_ENDPOINTS": ",".join((r1, r2, stranger)),
            "MAAS_WORKER_KEYS_DIR": str(keys),
            "MAAS_BOOTSTRAP_ADMIN_KEY": ADMIN_SECRET,
        }
        with maas_server(tmp_path, "--workers", "0", "--gateways", "2", env=env) as url:
            number = upload(url, "m", torchscript_bytes(tiny_mlp()), mlp_meta())
            wait_ready_version(url, "m", number)
            listed = wait_for(
                lambda: (
                    (ws := workers(url))
                    and sum(1 for w in ws if w["healthy"] and "m@1" in w["versions"]) == 2
                    and ws
                ),
                "both remote workers to hold m@1",
            )
            by_endpoint = {w["endpoint"]: w for w in listed}
            assert by_endpoint[r1]["id"] == "r1"
            assert by_endpoint[r2]["id"] == "r2"
            assert all("m@1" in by_endpoint[e]["versions"] for e in (r1, r2))
            # The worker with other keys never completed a handshake: never heard from.
            assert by_endpoint[stranger]["healthy"] is False
            assert by_endpoint[stranger]["pid"] is None
            answers = [
                httpx.post(
                    url + f"/v1/models/m/versions/{number}:predict",
                    json={"instances": [[1, 2, 3, 4]]},
                )
                for _ in range(20)
            ]
            assert {a.status_code for a in answers} == {200}
            assert len({str(a.json()["predictions"]) for a in answers}) == 1
            banner = (tmp_path / "server.log").read_text()
            assert "0 worker processes and 3 remote workers" in banner
            wait_for(
                lambda: all(w["gateways"] >= 1 for w in workers(url) if w["healthy"]),
                "gateways connected to the remote workers",
            )


def test_workers_0_without_endpoints_is_one_line(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "maas", "serve", "--workers", "0", "--port", str(_free_port())],
        env={**os.environ, "MAAS_DATA_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert "MAAS_WORKER_ENDPOINTS" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "registry.db").exists()
