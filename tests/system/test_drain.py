"""A gateway process stopped under load (SIGTERM) drains: its clients' requests all answer 200,
the last ones it sends carry Connection: close, the other gateway process takes the clients
over, and `maas serve` starts it again. A rolling restart (SIGHUP to `maas serve`) replaces
every gateway that way without a failed request, and stops when a replacement cannot start."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
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
)
from support.inprocess_gateway import ADMIN, ADMIN_SECRET
from support.model_files import tiny_mlp, torchscript_bytes
from support.processes import maas_server

pytestmark = pytest.mark.slow

ROW = {"instances": [[1.0, 2.0, 3.0, 4.0]]}


def test_a_gateway_stopped_under_load_fails_no_request(tmp_path: Path) -> None:
    env = {"MAAS_BOOTSTRAP_ADMIN_KEY": ADMIN_SECRET, "MAAS_DRAIN_S": "3"}
    with maas_server(tmp_path, "--workers", "1", "--gateways", "2", env=env) as url:
        version = upload(url, "mlp", torchscript_bytes(tiny_mlp()))
        wait_ready_version(url, "mlp", version)
        promoted = httpx.post(
            f"{url}/admin/models/mlp/promote", json={"version": version}, headers=ADMIN
        )
        assert promoted.status_code == 200, promoted.text
        before = {g["pid"] for g in gateways(url)}
        assert len(before) == 2

        stop = threading.Event()
        codes: list[int] = []
        errors: list[str] = []
        closing = 0
        lock = threading.Lock()

        def load() -> None:
            nonlocal closing
            with httpx.Client(base_url=url, timeout=10) as client:  # keep-alive connections
                while not stop.is_set():
                    try:
                        answer = client.post("/v1/models/mlp:predict", json=ROW)
                    except httpx.HTTPError as exc:
                        with lock:
                            errors.append(f"{type(exc).__name__}: {exc}")
                        continue
                    with lock:
                        codes.append(answer.status_code)
                        closing += answer.headers.get("connection", "") == "close"

        threads = [threading.Thread(target=load) for _ in range(6)]
        for thread in threads:
            thread.start()
        try:
            wait_for(lambda: len(codes) > 200, "load to be under way")
            victim = sorted(before)[0]
            os.kill(victim, signal.SIGTERM)
            sent_before = len(codes)
            wait_for(
                lambda: (pids := {g["pid"] for g in gateways(url)}) != before and len(pids) == 2,
                "the stopped gateway to be started again",
                timeout_s=60,
            )
            restarted = len(codes) + len(errors)
            wait_for(
                lambda: len(codes) + len(errors) >= restarted + 50,
                "requests answered after the restart",
            )
        finally:
            stop.set()
            for thread in threads:
                thread.join(30)
        after_stop = len(codes) - sent_before
        print(
            f"\n{len(codes)} requests, {after_stop} after the SIGTERM, "
            f"{len(errors)} errors, {closing} answers with Connection: close"
        )
        assert errors == []
        assert set(codes) == {200}
        assert after_stop > 100
        assert closing >= 1  # the drained process told its clients to move


def _serve_with_a_model(tmp_path: Path, gateways_n: int) -> contextlib.AbstractContextManager[str]:
    env = {"MAAS_BOOTSTRAP_ADMIN_KEY": ADMIN_SECRET, "MAAS_DRAIN_S": "2"}
    return maas_server(tmp_path, "--workers", "1", "--gateways", str(gateways_n), env=env)


def _promote_a_model(url: str) -> None:
    version = upload(url, "m", torchscript_bytes(tiny_mlp()))
    wait_ready_version(url, "m", version)
    promoted = httpx.post(f"{url}/admin/models/m/promote", json={"version": version}, headers=ADMIN)
    assert promoted.status_code == 200, promoted.text


def _gateway_pids(supervisor: int) -> set[int]:
    children = Path(f"/proc/{supervisor}/task/{supervisor}/children").read_text().split()
    return {int(pid) for pid in children if is_gateway_process(int(pid))}


def _supervisor_of(url: str) -> int:
    pid = gateways(url)[0]["pid"]
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[1])


@pytest.mark.parametrize("gateways_n", [1, 2])
def test_a_rolling_restart_under_load_fails_no_request(tmp_path: Path, gateways_n: int) -> None:
    """SIGHUP to `maas serve` replaces every gateway process, one at a time, under load: even
    a single gateway is replaced without a failed request (its replacement serves first)."""
    with _serve_with_a_model(tmp_path, gateways_n) as url:
        _promote_a_model(url)
        supervisor = _supervisor_of(url)
        before = wait_for(
            lambda: len(pids := _gateway_pids(supervisor)) == gateways_n and pids, "gateways"
        )
        answers: list[Answer] = []
        stop, threads = start_clients(url, 6, answers)  # keep-alive connections
        try:
            wait_for(lambda: len(answers) > 200, "load to be under way")
            os.kill(supervisor, signal.SIGHUP)
            sent_before = len(answers)
            log = tmp_path / "server.log"
            wait_for(lambda: "rolling restart done" in log.read_text(), "the roll", timeout_s=90)
            rolled = len(answers)
            wait_for(lambda: len(answers) >= rolled + 50, "requests answered after the roll")
        finally:
            stop_clients(stop, threads)
        after = _gateway_pids(supervisor)
        failed = [a for a in answers if a.status != 200]
        print(
            f"\n{gateways_n} gateway(s): {len(answers)} requests, "
            f"{len(answers) - sent_before} after the SIGHUP, {len(failed)} failed"
        )
        assert failed == []
        assert len(answers) - sent_before > 100
        assert len(after) == gateways_n
        assert not after & before  # every one is new
        said = log.read_text()
        assert f"maas: g{gateways_n - 1} restarted ({gateways_n}/{gateways_n})" in said


def test_a_rolling_restart_whose_replacement_cannot_start_keeps_the_old_gateway(
    tmp_path: Path,
) -> None:
    """A replacement that keeps exiting (here: its artifact directory is a file, so its startup
    fails) stops the roll; the old process never stopped serving."""
    with _serve_with_a_model(tmp_path, 1) as url:
        _promote_a_model(url)
        supervisor = _supervisor_of(url)
        before = wait_for(lambda: _gateway_pids(supervisor), "the gateway")
        store = tmp_path / "artifacts"
        store.rename(tmp_path / "artifacts-away")
        store.write_text("not a directory")
        answers: list[Answer] = []
        stop, threads = start_clients(url, 2, answers)
        try:
            wait_for(lambda: len(answers) > 50, "load to be under way")
            os.kill(supervisor, signal.SIGHUP)
            log = tmp_path / "server.log"
            wait_for(lambda: "rolling restart stopped" in log.read_text(), "the roll", timeout_s=90)
            stopped = len(answers)
            wait_for(lambda: len(answers) >= stopped + 50, "requests answered after the roll")
        finally:
            stop_clients(stop, threads)
            store.unlink()
            (tmp_path / "artifacts-away").rename(store)
        failed = [a for a in answers if a.status != 200]
        print(f"\na roll that could not start: {len(answers)} requests, {len(failed)} failed")
        assert failed == []
        assert _gateway_pids(supervisor) == before
        assert "the old process serves on" in log.read_text()
