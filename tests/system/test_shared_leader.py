"""The Kubernetes topology of `deploy/k8s/base` on loopback: one PostgreSQL, an S3 bucket (moto's
server), two `maas serve --workers 0` instances each with its own disk, two workers that
announce themselves in the registry. No disk is shared by anything.

Besides announcing, r1 is listed in A's MAAS_WORKER_ENDPOINTS and r2 in B's, so each instance
finds the other worker only through its announcement. Whatever each lists, every gateway
competes for the one shared placement lease (with a lease per listed set, A and B would each
lead, both placing on both workers). Under continuous predictions through both instances:
exactly one of the three gateways leads over 30 s of polls; a version uploaded through A
(`replicas: 2`) is loaded exactly once on each worker (the workers log each load) and served by
both instances; a promotion through B returns once every gateway confirmed it, and both serve
it; no request fails. Then the leading gateway is SIGKILLed: another takes over, the supervisor
replaces the killed one, and the next version (`replicas: 1`) is loaded exactly once.
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

import httpx
import pytest

from maas.transport.curve import make_keys
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
from support.inprocess_gateway import ADMIN, ADMIN_SECRET
from support.model_files import mlp_meta, tiny_mlp, torchscript_bytes
from support.processes import free_port, maas_server, maas_worker
from support.s3_server import S3Server

pytestmark = pytest.mark.postgres

POLL_S = 30.0
ROW = {"instances": [[1.0, 2.0, 3.0, 4.0]]}


def artifact_settings(s3: S3Server) -> dict[str, str]:
    """Where every process keeps or finds artifacts: a bucket, with the AWS variables to reach
    it (gateways and workers alike, as the Kubernetes base gives them from its Secret)."""
    return {"MAAS_ARTIFACT_URL": f"s3://{s3.create_bucket()}/models", **s3.env()}


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
def shared_workers(tmp_path: Path, database_url: str, s3: S3Server) -> Iterator[_Deployment]:
    keys = tmp_path / "keys"
    make_keys(keys)
    r1, r2 = (f"tcp://127.0.0.1:{free_port()}" for _ in range(2))
    common = {
        "MAAS_DATABASE_URL": database_url,
        "MAAS_WORKER_KEYS_DIR": str(keys),
        "MAAS_BOOTSTRAP_ADMIN_KEY": ADMIN_SECRET,
        **artifact_settings(s3),
    }
    logs = {"r1": tmp_path / "r1.log", "r2": tmp_path / "r2.log"}
    worker_env = {k: v for k, v in common.items() if k != "MAAS_BOOTSTRAP_ADMIN_KEY"}
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with ExitStack() as stack:
        a = stack.enter_context(
            maas_server(
                tmp_path / "a",
                *("--workers", "0", "--gateways", "2"),
                env={**common, **own_disk(tmp_path / "a"), "MAAS_WORKER_ENDPOINTS": r1},
            )
        )
        for name, endpoint in (("r1", r1), ("r2", r2)):
            stack.enter_context(maas_worker(endpoint, name, env=worker_env, log=logs[name]))
        b = stack.enter_context(
            maas_server(
                tmp_path / "b",
                *("--workers", "0", "--gateways", "1"),
                env={**common, **own_disk(tmp_path / "b"), "MAAS_WORKER_ENDPOINTS": r2},
            )
        )
        for url in (a, b):
            wait_for(partial(_reaches, url, {r1, r2}), f"{url} to reach both workers")
        yield _Deployment(a, b, logs)


def own_disk(folder: Path) -> dict[str, str]:
    return {
        "MAAS_ARTIFACT_DIR": str(folder / "scratch"),
        "MAAS_WORKER_CACHE_DIR": str(folder / "worker-cache"),  # not read by a gateway
    }


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


def _served(url: str) -> int:
    answer = httpx.post(url + "/v1/models/m:predict", json=ROW, timeout=10)
    assert answer.status_code == 200, answer.text
    version: int = answer.json()["version"]
    return version


def test_the_kubernetes_topology_on_a_bucket_one_leader_each_version_loaded_once(
    tmp_path: Path, postgres_url: str, s3_server: S3Server
) -> None:
    with shared_workers(tmp_path, postgres_url, s3_server) as dep:
        wait_for(lambda: len(gateways(dep.a)) == 3, "three live gateways")
        wait_for(lambda: any(g["leader"] for g in gateways(dep.a)), "a leader")

        # Uploaded through A, whichever gateway leads: loaded once on each of the two workers.
        first = upload(dep.a, "m", torchscript_bytes(tiny_mlp(seed=1)), mlp_meta(replicas=2))
        wait_ready_version(dep.b, "m", first)
        key = f"m@{first}"
        answers: list[Answer] = []
        clients = [start_clients(url, 2, answers) for url in (dep.a, dep.b)]
        try:
            leader = _one_leader((dep.a, dep.b), POLL_S)
            assert dep.loads(key) == {"r1": 1, "r2": 1}
            assert dep.holders(dep.a, key) == dep.holders(dep.b, key) == ["r1", "r2"]
            # A second version, promoted through B: confirmed by every gateway when it returns.
            second = upload(dep.b, "m", torchscript_bytes(tiny_mlp(seed=2)), mlp_meta(replicas=2))
            wait_ready_version(dep.a, "m", second)
            promoted = httpx.put(
                dep.b + "/admin/models/m/aliases/production",
                json={"version": second},
                headers=ADMIN,
                timeout=30,
            )
            assert promoted.status_code == 200, promoted.text
            assert [_served(url) for url in (dep.a, dep.b, dep.a, dep.b)] == [second] * 4
            wait_for(
                lambda: sum(a.version == second for a in answers) >= 50,
                "clients through A and B answered by the second version",
            )
        finally:
            for stop, threads in clients:
                stop_clients(stop, threads)
        failed = [a for a in answers if a.status != 200]
        print(f"{len(answers)} predictions through A and B, {len(failed)} failed")
        assert len(answers) > 100
        assert failed == [], failed[:5]
        assert {a.version for a in answers} == {first, second}
        assert dep.loads(f"m@{second}") == {"r1": 1, "r2": 1}
        for folder in (tmp_path / "a", tmp_path / "b"):
            kept = [p for p in folder.rglob("*") if "sha256" in p.parts]
            assert kept == [], kept  # no instance keeps an artifact on its own disk

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
        # The killed gateway's supervisor starts another in its place, and the dead one's row
        # ages out: three gateways again, still one leader among them.
        wait_for(
            lambda: len(gs := gateways(dep.b)) == 3 and pid not in {g["pid"] for g in gs},
            "the killed gateway to be replaced",
            timeout_s=30,
        )
        _one_leader((dep.a, dep.b), 3.0)

        third = upload(dep.a, "m", torchscript_bytes(tiny_mlp(seed=3)), mlp_meta(replicas=1))
        wait_ready_version(dep.b, "m", third)
        time.sleep(2)  # time enough for a second placer, were there one, to load it too
        loads = {k: dep.loads(k) for k in (key, f"m@{second}", f"m@{third}")}
        print(
            f"leader {leader['id']} killed; {successor['id']} led "
            f"{1000 * handed_over:.0f} ms later; loads per worker: {loads}"
        )
        assert sum(loads[f"m@{third}"].values()) == 1, loads
        assert loads[key] == loads[f"m@{second}"] == {"r1": 1, "r2": 1}, loads  # not again
        assert handed_over <= 10
