"""SIGKILL of the `maas serve` supervisor alone, under load: its gateways and workers (and
anything below them) end within 2 s, the port is free, and a second `maas serve` on the same
port and data serves alone (`maas.supervision.lifeline`)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import time
from pathlib import Path

import httpx
import pytest

from support.control import (
    Answer,
    gateways,
    is_gateway_process,
    start_clients,
    stop_clients,
    upload,
    wait_for,
    wait_ready_version,
    workers,
)
from support.inprocess_gateway import ADMIN
from support.killable_serve import process_tree, start_serve, stop_serve, wait_up
from support.model_files import tiny_mlp, torchscript_bytes
from support.processes import free_port

pytestmark = pytest.mark.slow

GONE_WITHIN_S = 2.0
ROW = {"instances": [[1.0, 2.0, 3.0, 4.0]]}


def _identity(pid: int) -> tuple[str, int] | None:
    """A live process's command line and start time (which tells it from a later process given
    the same pid); None once it is gone or a zombie waiting for its new parent to reap it."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] in ("Z", "X"):
        return None
    return cmdline.decode(errors="replace"), int(fields[19])


def _living(tree: dict[int, tuple[str, int]]) -> dict[int, str]:
    """The processes of `tree` that still run, with their command lines."""
    return {
        pid: seen[0].replace("\0", " ")
        for pid, seen in tree.items()
        if _identity(pid) is not None and _identity(pid) == seen
    }


def _port_free(port: int) -> bool:
    """Whether `maas serve` could listen on `port` (as it binds: SO_REUSEADDR, so connections
    of the old processes waiting out TIME_WAIT do not count)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
            sock.listen()
        except OSError:
            return False
        return True


def _promote_a_model(url: str) -> None:
    version = upload(url, "m", torchscript_bytes(tiny_mlp()))
    wait_ready_version(url, "m", version)
    promoted = httpx.post(f"{url}/admin/models/m/promote", json={"version": version}, headers=ADMIN)
    assert promoted.status_code == 200, promoted.text


def _answers_200(url: str) -> bool:
    with contextlib.suppress(httpx.HTTPError):
        return httpx.post(url + "/v1/models/m:predict", json=ROW, timeout=5).status_code == 200
    return False


def test_a_killed_supervisor_takes_its_gateways_and_workers_with_it(tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    first_log = tmp_path / "serve-0.log"
    first = start_serve(tmp_path, port, first_log, gateways=2)
    tree: dict[int, tuple[str, int]] = {}
    answers: list[Answer] = []
    clients = None
    try:
        wait_up(url, first, first_log)
        _promote_a_model(url)
        clients = start_clients(url, 4, answers, fresh_connections=True)
        wait_for(lambda: sum(a.status == 200 for a in answers) >= 50, "load to be under way")
        for pid in process_tree(first.pid)[1:]:
            if (seen := _identity(pid)) is not None:
                tree[pid] = seen
        kinds = [cmd for cmd, _ in tree.values()]
        assert sum(is_gateway_process(pid) for pid in tree) == 2, kinds
        assert sum("\0worker\0" in cmd for cmd in kinds) == 1, kinds

        first.send_signal(signal.SIGKILL)
        killed = time.monotonic()
        first.wait(5)
        while _living(tree) and time.monotonic() - killed < GONE_WITHIN_S:
            time.sleep(0.02)
        took = time.monotonic() - killed
        assert _living(tree) == {}, f"alive {took:.2f} s after the kill: {_living(tree)}"
        assert _port_free(port), f"port {port} still taken {took:.2f} s after the kill"
        print(f"\n{len(tree)} processes gone {took:.3f} s after the supervisor's SIGKILL")
    finally:
        if clients is not None:
            stop_clients(*clients)
        for pid in _living(tree):  # a failed run leaves nothing behind to disturb the next
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if first.poll() is None:
            first.kill()
            first.wait()
    assert sum(a.status == 200 for a in answers) >= 50

    second_log = tmp_path / "serve-1.log"
    second = start_serve(tmp_path, port, second_log, gateways=2)
    try:
        wait_up(url, second, second_log)
        wait_for(lambda: _answers_200(url), "the second serve to answer predicts", 60)
        ours = set(process_tree(second.pid))
        # The old gateways' registry rows age out (plane.LIVE_S); then only the new ones live.
        wait_for(
            lambda: {g["pid"] for g in gateways(url)} <= ours,
            "only the second serve's gateways to be listed",
        )
        assert {w["pid"] for w in workers(url)} <= ours
        assert all(_answers_200(url) for _ in range(20))
        assert _living(tree) == {}
    finally:
        stop_serve(second)
