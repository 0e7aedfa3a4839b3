"""Two `maas serve --workers 0` instances on one registry share two announced workers: one leader.

Both workers announce themselves in the registry; besides, A (two gateways) lists r1 in its
MAAS_WORKER_ENDPOINTS and B (one gateway) lists r2, so each finds the other worker only through
its announcement. Whatever each lists, every gateway competes for the one shared placement lease
(with a lease per listed set, A and B would each lead, both placing on both workers): exactly one
of the three leads over ~10 s of polls, a version with `replicas: 1` is loaded exactly once (the
workers log each load they do), and when the leading gateway is SIGKILLed another takes over and
the next version is loaded exactly once too.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from control_helpers import (
    gateways,
    is_gateway_process,
    upload,
    wait_for,
    wait_ready_version,
    workers,
)

from artifacts import mlp_meta, tiny_mlp, torchscript_bytes
from gateway import ADMIN_SECRET
from maas.transport.curve import make_keys
from server import free_port, maas_server, maas_worker

pytestmark = pytest.mark.postgres

POLL_S = 10.0


def artifact_settings(tmp_path: Path) -> dict[str, str]:
    """Where both instances keep artifacts. Today one directory both can see (their workers read
    the files there too, on this host); with object storage this returns its settings instead,
    and nothing else in the test changes."""
    return {"MAAS_ARTIFACT_DIR": str(tmp_path / "artifacts")}


class _Deployment:
    """The two instances' URLs, and the workers' logs."""

    def __init__(self, a: str, b: str, logs: dict[str, Path]) -> None:
        self.a, self.b, self.logs = a, b, logs

    def loads(self, key: str) -> dict[str, int]:
        """How many times each worker loaded `key`, from its own log."""
        return {
            name: log.read_text(errors="replace").count(f"worker {name} loaded {key}\n")
            for name, log in self.logs.items()
        }

    def holders(self, url: str, key: str) -> list[str]:
        return sorted(w["id"] for w in workers(url) if key in w["versions"])


@contextmanager
def shared_workers(tmp_path: Path, database_url: str) -> Iterator[_Deployment]:
    keys = tmp_path / "keys"
    make_keys(keys)
    r1, r2 = (f"tcp://127.0.0.1:{free_port()}" for _ in range(2))
    common = {
        "MAAS_DATABASE_URL": database_url,
        "MAAS_WORKER_KEYS_DIR": str(keys),
        "MAAS_BOOTSTRAP_ADMIN_KEY": ADMIN_SECRET,
        **artifact_settings(tmp_path),
    }
    logs = {"r1": tmp_path / "r1.log", "r2": tmp_path / "r2.log"}
    worker_env = {"MAAS_DATABASE_URL": database_url, "MAAS_WORKER_KEYS_DIR": str(keys)}
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with ExitStack() as stack:
        a = stack.enter_context(
            maas_server(
                tmp_path / "a",
                *("--workers", "0", "--gateways", "2"),
                env={**common, "MAAS_WORKER_ENDPOINTS": r1},
            )
        )
        for name, endpoint in (("r1", r1), ("r2", r2)):
            stack.enter_context(maas_worker(endpoint, name, env=worker_env, log=logs[name]))
        b = stack.enter_context(
            maas_server(
                tmp_path / "b",
                *("--workers", "0", "--gateways", "1"),
                env={**common, "MAAS_WORKER_ENDPOINTS": r2},
            )
        )
        for url in (a, b):
            wait_for(partial(_reaches, url, {r1, r2}), f"{url} to reach both workers")
        yield _Deployment(a, b, logs)


def _reaches(url: str, endpoints: set[str]) -> bool:
    return {w["endpoint"] for w in workers(url) if w["healthy"]} == endpoints


def _one_leader(urls: tuple[str, str], seconds: float) -> dict[str, Any]:
    """Polls /admin/gateways through both instances for `seconds`: every answer lists the three
    gateways and exactly one leader, the same one throughout. That leader."""
    deadline = time.monotonic() + seconds
    seen: set[str] = set()
    polls = 0
    while time.monotonic() < deadline:
        listed = gateways(urls[polls % 2])
        leaders = [g for g in listed if g["leader"]]
        assert len(listed) == 3, listed
        assert len(leaders) == 1, listed
        seen.add(leaders[0]["id"])
        polls += 1
        time.sleep(0.1)
    assert len(seen) == 1, seen
    print(f"\n{polls} polls of /admin/gateways over {seconds:.0f} s: one leader, {seen.pop()}")
    return leaders[0]


def test_one_leader_places_on_shared_workers_and_hands_over(
    tmp_path: Path, postgres_url: str
) -> None:
    with shared_workers(tmp_path, postgres_url) as dep:
        wait_for(lambda: len(gateways(dep.a)) == 3, "three live gateways")
        wait_for(lambda: any(g["leader"] for g in gateways(dep.a)), "a leader")
        leader = _one_leader((dep.a, dep.b), POLL_S)

        # Uploaded through B, whichever gateway leads: the leader loads it on one worker.
        first = upload(dep.b, "m", torchscript_bytes(tiny_mlp(seed=1)), mlp_meta(replicas=1))
        wait_ready_version(dep.a, "m", first)
        time.sleep(2)  # time enough for a second placer, were there one, to load it too
        key = f"m@{first}"
        assert sum(dep.loads(key).values()) == 1, dep.loads(key)
        assert len(dep.holders(dep.a, key)) == 1
        assert dep.holders(dep.a, key) == dep.holders(dep.b, key)

        pid = leader["pid"]
        assert is_gateway_process(pid), pid
        os.kill(pid, signal.SIGKILL)
        killed = time.monotonic()
        successor = wait_for(
            lambda: [g for g in gateways(dep.b) if g["leader"] and g["pid"] != pid],
            "another gateway to lead",
            timeout_s=15,
        )[0]
        handed_over = time.monotonic() - killed
        # The killed gateway's supervisor starts another in its place: three gateways again,
        # still one leader among them.
        wait_for(
            lambda: len(gs := [g for g in gateways(dep.b) if g["pid"] != pid]) == 3 and gs,
            "the killed gateway to be replaced",
            timeout_s=30,
        )
        _one_leader((dep.a, dep.b), 3.0)

        second = upload(dep.a, "m", torchscript_bytes(tiny_mlp(seed=2)), mlp_meta(replicas=1))
        wait_ready_version(dep.b, "m", second)
        time.sleep(2)
        loads = {k: dep.loads(k) for k in (key, f"m@{second}")}
        print(
            f"leader {leader['id']} killed; {successor['id']} led "
            f"{1000 * handed_over:.0f} ms later; loads per worker: {loads}"
        )
        assert sum(loads[f"m@{second}"].values()) == 1, loads
        assert sum(loads[key].values()) == 1, loads  # not loaded again by the new leader
        assert handed_over <= 10
