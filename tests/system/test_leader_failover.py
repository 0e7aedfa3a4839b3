"""The gateway leading placement dies while a version loads: another takes over and finishes.

One `maas serve --gateways 2 --workers 1` under continuous predicts. Right after an upload
answered (its load under way), the leader is SIGKILLed. Another gateway must take the lease, the
version must end ready and be loaded on the worker exactly once, the supervisor must restart
the killed gateway, and the only failed requests may be those the killed process held.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from support.control import (
    Answer,
    gateways,
    start_clients,
    stop_clients,
    upload,
    wait_for,
    wait_loaded,
    wait_ready_version,
    workers,
)
from support.inprocess_gateway import ADMIN_SECRET
from support.model_files import SlowMLP, mlp_meta, tiny_mlp, torchscript_bytes
from support.processes import deploy, maas_server, wait_ready

CLIENTS = 8


def test_a_killed_leader_hands_over_and_its_load_completes_once(tmp_path: Path) -> None:
    env = {"MAAS_BOOTSTRAP_ADMIN_KEY": ADMIN_SECRET}
    with maas_server(tmp_path, "--gateways", "2", "--workers", "1", env=env) as url:
        deploy(url, torchscript_bytes(tiny_mlp(seed=1)), mlp_meta())
        wait_loaded(url, {"m@1"})
        wait_ready(url)
        live = wait_for(
            lambda: (
                (gs := gateways(url)) and len(gs) == 2 and sum(g["leader"] for g in gs) == 1 and gs
            ),
            "two live gateways, one of them leading",
        )
        (leader,) = [g for g in live if g["leader"]]

        answers: list[Answer] = []
        stop, threads = start_clients(url, CLIENTS, answers, fresh_connections=True)
        try:
            wait_for(lambda: len(answers) >= 50, "load to be under way")
            # A version whose warm-up forward takes seconds: its load is still under way on the
            # worker when the next leader takes over, and asks the worker for it again.
            slow = mlp_meta(batching={"max_batch_size": 1})
            number = upload(url, "m", torchscript_bytes(SlowMLP(rounds=2500)), slow)
            key = f"m@{number}"
            loading = wait_for(
                lambda: key in (ws := workers(url))[0]["loading"] and ws[0]["loading"],
                f"the worker to load {key}",
                timeout_s=10,
            )
            os.kill(leader["pid"], signal.SIGKILL)
            killed = time.monotonic()

            successor = wait_for(
                lambda: [g for g in gateways(url) if g["leader"] and g["pid"] != leader["pid"]],
                "another gateway to lead",
                timeout_s=10,
            )[0]
            handed_over = time.monotonic() - killed
            still_loading = key in workers(url)[0]["loading"]
            wait_ready_version(url, "m", number)
            wait_loaded(url, {"m@1", key})
            # The supervisor starts a new gateway in place of the killed one.
            restarted = wait_for(
                lambda: (
                    len(gs := [g for g in gateways(url) if g["pid"] != leader["pid"]]) == 2 and gs
                ),
                "the killed gateway to be restarted",
            )
            back = len(answers)  # some requests over both gateways after the restart:
            wait_for(lambda: len(answers) >= back + 50, "requests answered after the restart")
        finally:
            stop_clients(stop, threads)
        log = (tmp_path / "server.log").read_text(errors="replace")

    dropped = [a for a in answers if a.status == 0]
    http_errors = [a for a in answers if a.status not in (0, 200)]
    after_kill = [a for a in answers if a.sent >= killed]
    loads = log.count(f"worker w0 loaded {key}")
    print(
        f"\nleader {leader['id']} killed while the worker loaded {loading}; "
        f"{successor['id']} leads {1000 * handed_over:.0f} ms later "
        f"({'still' if still_loading else 'no longer'} loading); gateways now "
        f"{sorted(g['id'] for g in restarted)}\n"
        f"{len(answers)} requests, {len(after_kill)} sent after the kill; "
        f"{len(dropped)} connection-level failures {sorted({a.error for a in dropped})}, "
        f"{len(http_errors)} HTTP errors {sorted({(a.status, a.error) for a in http_errors})}; "
        f"{key} loaded {loads} time(s)"
    )
    assert handed_over <= 10
    assert loads == 1
    assert len(dropped) <= CLIENTS  # at most one in flight per client when the process died
    assert all(a.sent < killed <= a.answered for a in dropped)
    # The restarted gateway takes connections on the shared socket only once it has heard from
    # its workers (before that it would answer 503 "no ready worker holds m@1").
    assert http_errors == []
    assert [a for a in after_kill if a.status != 200] == []
