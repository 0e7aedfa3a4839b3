"""A gateway process stopped under load (SIGTERM, as a rolling restart does one at a time)
drains: its clients' requests all answer 200, the last ones it sends carry Connection: close,
the other gateway process takes the clients over, and `maas serve` starts it again."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import httpx
import pytest
from control_helpers import gateways, upload, wait_for, wait_ready_version

from artifacts import tiny_mlp, torchscript_bytes
from gateway import ADMIN, ADMIN_SECRET
from server import maas_server

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
            time.sleep(0.5)
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
