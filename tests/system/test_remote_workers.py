"""`maas serve --workers 0` with remote workers listed in MAAS_WORKER_ENDPOINTS: tcp:// links
with the deployment's CurveZMQ keys, placement on them, inference through them, and a worker
started with other keys never used.

Every process runs on this host (the multi-host test puts them in network namespaces), so the
workers read artifacts from the gateway's artifact directory. Workers that announce themselves
in the registry instead of being listed join and leave here too.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from maas.transport.curve import make_keys
from maas.types import PHASES
from support.control import upload, wait_for, wait_ready_version, workers
from support.inprocess_gateway import ADMIN_SECRET
from support.model_files import mlp_meta, tiny_mlp, torchscript_bytes
from support.processes import free_port, maas_server, maas_worker
from support.prometheus import Sample, parse, value


@contextmanager
def remote_worker(name: str, keys: Path, log: Path, **env: str) -> Iterator[str]:
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    with maas_worker(endpoint, name, env={"MAAS_WORKER_KEYS_DIR": str(keys), **env}, log=log):
        yield endpoint


def _phases_add_up(url: str, number: int, requests: int) -> None:
    """Through tcp:// workers, whose instants the gateways translate by the clock offset their
    heartbeats measure, each request's phases still add up to its duration."""
    labels = {"model": "m", "version": str(number)}

    def scraped() -> dict[Sample, float] | None:
        _, samples = parse(httpx.get(url + "/metrics").text)
        counts = {
            value(samples, "maas_request_phase_seconds_count", phase=p, **labels) for p in PHASES
        }
        return samples if counts == {requests} else None

    samples = wait_for(scraped, "every request's phases written by both gateways")
    phases = [
        value(samples, "maas_request_phase_seconds_sum", phase=p, **labels) or 0.0 for p in PHASES
    ]
    duration = value(samples, "maas_request_duration_seconds_sum", **labels)
    assert min(phases) >= 0.0, phases
    assert sum(phases) == pytest.approx(duration, rel=0.10), (phases, duration)


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
            assert {a.status_code for a in answers} == {200}, [
                a.text for a in answers if a.status_code != 200
            ]
            assert len({str(a.json()["predictions"]) for a in answers}) == 1
            _phases_add_up(url, number, requests=20)
            banner = (tmp_path / "server.log").read_text()
            assert "0 worker processes and 3 remote workers" in banner
            wait_for(
                lambda: all(w["gateways"] >= 1 for w in workers(url) if w["healthy"]),
                "gateways connected to the remote workers",
            )


def test_workers_join_and_leave_through_the_registry(tmp_path: Path) -> None:
    """`maas worker` with MAAS_DATABASE_URL announces itself; gateways that list no worker
    connect to it, place versions on it, and let it go once it stops announcing."""
    keys = tmp_path / "keys"
    make_keys(keys)
    registry = {"MAAS_DATABASE_URL": f"sqlite:///{tmp_path}/registry.db"}
    env = {
        "MAAS_WORKER_KEYS_DIR": str(keys),
        "MAAS_BOOTSTRAP_ADMIN_KEY": ADMIN_SECRET,
        "MAAS_WORKER_TTL_S": "3",
    }
    # One gateway process: each view below is then the one the next request gets.
    with maas_server(tmp_path, "--workers", "0", "--gateways", "1", env=env) as url:
        wait_for(
            lambda: (
                "remote workers join by announcing themselves in the registry"
                in (tmp_path / "server.log").read_text()
            ),
            "the banner",
        )
        assert workers(url) == []
        with remote_worker("r1", keys, tmp_path / "r1.log", **registry) as r1:
            (joined,) = wait_for(
                lambda: [w for w in workers(url) if w["healthy"]], "the worker to join"
            )
            assert joined["endpoint"] == r1
            assert joined["id"] == "r1"
            number = upload(url, "m", torchscript_bytes(tiny_mlp()), mlp_meta())
            wait_ready_version(url, "m", number)
            with remote_worker("r2", keys, tmp_path / "r2.log", **registry) as r2:
                wait_for(
                    lambda: (
                        {w["endpoint"] for w in workers(url) if "m@1" in w["versions"]} == {r1, r2}
                    ),
                    "the second worker to join and get m@1",
                )
        # r1 and r2 are gone (killed: no goodbye), so their rows go stale and the gateways
        # let both go.
        wait_for(lambda: workers(url) == [], "the killed workers to be let go", 30)
        with remote_worker("r3", keys, tmp_path / "r3.log", **registry) as r3:
            wait_for(
                lambda: [(w["endpoint"], w["versions"]) for w in workers(url)] == [(r3, ["m@1"])],
                "a new worker to take the version",
            )
            answers = [
                httpx.post(
                    url + f"/v1/models/m/versions/{number}:predict",
                    json={"instances": [[1, 2, 3, 4]]},
                )
                for _ in range(10)
            ]
            assert {a.status_code for a in answers} == {200}
            assert "joined (registered in the registry)" in (tmp_path / "server.log").read_text()


def test_a_worker_without_the_registry_s_tables_keeps_trying(tmp_path: Path) -> None:
    """A worker that starts before the registry is migrated says so and announces later."""
    keys = tmp_path / "keys"
    make_keys(keys)
    registry = {"MAAS_DATABASE_URL": f"sqlite:///{tmp_path}/registry.db"}
    log = tmp_path / "early.log"
    with remote_worker("early", keys, log, **registry) as endpoint:
        wait_for(lambda: "cannot announce worker early" in log.read_text(), "the warning")
        env = {"MAAS_WORKER_KEYS_DIR": str(keys), "MAAS_BOOTSTRAP_ADMIN_KEY": ADMIN_SECRET}
        with maas_server(tmp_path, "--workers", "0", env=env) as url:
            wait_for(
                lambda: [w["endpoint"] for w in workers(url) if w["healthy"]] == [endpoint],
                "the worker to join once the registry exists",
            )
            assert "announced in the registry again" in log.read_text()
