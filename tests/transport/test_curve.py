"""tcp:// links between gateways and workers: CurveZMQ with the deployment's keys, and nothing
for a peer without them."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import zmq

from maas.dispatch.pool import WorkerPool
from maas.transport import messages as msg
from maas.transport.curve import DeploymentKeys, KeysError, make_keys
from maas.worker.loop import WorkerServer
from support.worker_thread import serving

MAAS = [sys.executable, "-m", "maas"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def tcp_worker(keys: DeploymentKeys) -> Iterator[str]:
    endpoint = f"tcp://127.0.0.1:{_free_port()}"
    with serving(WorkerServer(endpoint=endpoint, worker_id="tw", device="cpu", keys=keys)):
        yield endpoint


def _keys(folder: Path) -> DeploymentKeys:
    make_keys(folder)
    return DeploymentKeys.load(folder)


async def test_a_gateway_with_the_keys_is_served(tmp_path: Path) -> None:
    keys = _keys(tmp_path / "keys")
    with tcp_worker(keys) as endpoint:
        pool = WorkerPool([endpoint], keys=keys)
        await pool.start()
        try:
            (worker,) = pool.describe()
            assert worker["healthy"] is True
            assert worker["id"] == "tw"
        finally:
            await pool.close()


async def test_a_gateway_with_other_keys_never_connects(tmp_path: Path) -> None:
    keys = _keys(tmp_path / "keys")
    stranger = _keys(tmp_path / "other")
    with tcp_worker(keys) as endpoint:
        pool = WorkerPool([endpoint], keys=stranger)
        await pool.start()  # waits up to a heartbeat window for the worker to answer
        try:
            (worker,) = pool.describe()
            assert worker["healthy"] is False
            assert worker["pid"] is None  # not one status came through
        finally:
            await pool.close()


def test_a_plain_socket_gets_no_answer(tmp_path: Path) -> None:
    keys = _keys(tmp_path / "keys")
    with tcp_worker(keys) as endpoint:
        context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        sock = context.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(endpoint)
        sock.send(msg.encode(msg.Ping(1, 1)))
        assert sock.poll(1000) == 0  # the CURVE handshake never completed: no status
        sock.close()
        context.term()


async def test_a_tcp_endpoint_without_keys_is_not_used(tmp_path: Path) -> None:
    pool = WorkerPool([f"tcp://127.0.0.1:{_free_port()}"])
    await pool.start()
    try:
        (worker,) = pool.describe()
        assert worker["healthy"] is False
        assert "MAAS_WORKER_KEYS_DIR" in worker["reason"]
    finally:
        await pool.close()


def test_keys_worker_makes_both_pairs_once(tmp_path: Path) -> None:
    folder = tmp_path / "keys"
    made = subprocess.run(
        [*MAAS, "keys", "worker", "--out", str(folder)], capture_output=True, text=True
    )
    assert made.returncode == 0, made.stderr
    names = sorted(p.name for p in folder.iterdir())
    assert names == ["gateway.key", "gateway.key_secret", "worker.key", "worker.key_secret"]
    assert (folder / "worker.key_secret").stat().st_mode & 0o077 == 0
    keys = DeploymentKeys.load(folder)
    assert keys.worker_public != keys.gateway_public
    again = subprocess.run(
        [*MAAS, "keys", "worker", "--out", str(folder)], capture_output=True, text=True
    )
    assert again.returncode == 1
    assert again.stderr.startswith("error: ")
    assert "already holds" in again.stderr
    assert DeploymentKeys.load(folder) == keys  # nothing overwritten


def test_missing_keys_are_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(KeysError, match="maas keys worker --out"):
        DeploymentKeys.load(tmp_path)
    plain = subprocess.run(
        [*MAAS, "worker", "--listen", f"127.0.0.1:{_free_port()}"], capture_output=True, text=True
    )
    assert plain.returncode == 1
    assert "MAAS_WORKER_KEYS_DIR" in plain.stderr
    assert "Traceback" not in plain.stderr
