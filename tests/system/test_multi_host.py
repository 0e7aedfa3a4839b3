"""Five hosts, each its own network namespace and address: a PostgreSQL host, two gateway
hosts (`maas serve --workers 0`) and two worker hosts (`maas worker --listen`, CurveZMQ), plus a
stranger worker with other keys. The gateways list wk1 (and the stranger) in
MAAS_WORKER_ENDPOINTS; wk2 joins by announcing itself in the registry. Inference through both
gateways, a promotion seen by both within 1 s, a worker host killed under load (no request
hangs), a gateway host cut from the database (it keeps serving), and the stranger refused.

No disk is shared: artifacts live in S3-compatible object storage on a host of its own (moto's
S3 server), and each gateway host has its own scratch directory. wk1 has the bucket's
credentials and downloads each artifact from it; wk2 has none and fetches by sha256 over its
CurveZMQ link from a gateway, which reads the bucket.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from maas.transport.curve import make_keys
from support.control import upload, wait_for, wait_ready_version
from support.inprocess_gateway import ADMIN, ADMIN_SECRET
from support.model_files import mlp_meta, tiny_mlp, torchscript_bytes
from support.netns import Host, env_of, network, skip_reason
from support.postgres import _as_server_user, _init_cluster, _run

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

MAAS = [sys.executable, "-m", "maas"]
ROW = {"instances": [[1.0, 2.0, 3.0, 4.0]]}
WORKER_PORT, GATEWAY_PORT, S3_PORT = 5555, 8000, 9000
BUCKET = "maas-artifacts"


def _start_postgres(host: Host, base: Path) -> tuple[str, list[str], Path]:
    prefix, owner = _as_server_user()
    data, _port = _init_cluster(base, prefix, owner)  # its own port: 5432 below wins
    with (data / "postgresql.conf").open("a") as fh:
        fh.write(f"listen_addresses = '{host.address}'\nport = 5432\n")
    with (data / "pg_hba.conf").open("a") as fh:
        fh.write("host all all 10.213.0.0/16 trust\n")
    pg_ctl = shutil.which("pg_ctl") or "pg_ctl"
    log = base / "server.log"
    _run(
        [
            "ip",
            "netns",
            "exec",
            host.netns,
            *prefix,
            pg_ctl,
            "-D",
            str(data),
            "-l",
            str(log),
            "-w",
            "start",
        ],
        cwd=base,
        what="pg_ctl start in the database host",
        log=log,
    )

    async def create() -> None:
        conn: Any = await asyncpg.connect(
            host=host.address, port=5432, user="postgres", database="postgres"
        )
        try:
            await conn.execute('CREATE DATABASE "maas"')
        finally:
            await conn.close()

    asyncio.run(create())
    return f"postgresql://postgres@{host.address}:5432/maas", prefix, data


def _start_s3(host: Host, log: Path) -> dict[str, str]:
    """moto's S3 server on `host`, with the bucket made; the AWS variables that reach it."""
    host.popen(
        [sys.executable, "-m", "moto.server", "-H", host.address, "-p", str(S3_PORT)],
        env=env_of(),
        log=log,
    )
    endpoint = f"http://{host.address}:{S3_PORT}"

    def up() -> bool:
        try:
            return httpx.put(f"{endpoint}/{BUCKET}", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    wait_for(up, "the S3 host to serve", 30)
    return {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "maas-test",
        "AWS_SECRET_ACCESS_KEY": "maas-test-secret",
        "AWS_REGION": "us-east-1",
    }


def _gateway_url(host: Host) -> str:
    return f"http://{host.address}:{GATEWAY_PORT}"


def _wait_up(url: str, log: Path, timeout_s: float = 90) -> None:
    def up() -> bool:
        try:
            return httpx.get(url + "/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_for(up, f"{url} to serve", timeout_s)
    except AssertionError:
        raise AssertionError(f"{url} not up:\n{log.read_text(errors='replace')[-4000:]}") from None


def _served_version(url: str) -> int:
    answer = httpx.post(url + "/v1/models/m:predict", json=ROW, timeout=5)
    assert answer.status_code == 200, answer.text
    version: int = answer.json()["version"]
    return version


def _workers(url: str) -> dict[str, dict[str, Any]]:
    listed = httpx.get(url + "/admin/workers", headers=ADMIN, timeout=5).json()["workers"]
    return {w["endpoint"]: w for w in listed}


def _traffic_adds_up_over_both_gateway_hosts(
    a: str, b: str, began: float, durations: list[tuple[float, int]]
) -> None:
    """The live traffic route of either gateway host counts the load through both: every
    answered request and every 5xx of the load, from the second it began."""
    answered = sum(1 for _, status in durations if status)
    failed = sum(1 for _, status in durations if status >= 500)
    lost = len(durations) - answered  # no answer reached the client (may have been counted)
    seen: dict[str, Any] = {}

    def counted(url: str) -> bool:
        body = httpx.get(
            url + "/admin/models/m/traffic?minutes=2&step_s=1", headers=ADMIN, timeout=5
        ).json()
        requests = errors = 0.0
        for version in body["versions"]:
            for point in version["points"]:
                if datetime.fromisoformat(point["at"]).timestamp() >= int(began):
                    n = point["requests_per_s"] * body["step_s"]
                    requests += n
                    errors += (point["error_rate"] or 0) * n
        seen.update(url=url, requests=round(requests), errors=round(errors), body=body)
        return answered <= seen["requests"] <= answered + lost

    for url in (a, b):
        wait_for(lambda url=url: counted(url), f"{url}'s traffic to count the load", 15)
        assert seen["body"]["gateways"] == 2, seen  # one gateway process on each host
        assert failed <= seen["errors"] <= failed + lost, (failed, seen)
    print(f"traffic over both gateway hosts: {seen['requests']} requests, {seen['errors']} 5xx")


def test_two_gateway_hosts_two_worker_hosts_one_database_host() -> None:
    reason = skip_reason()
    if reason is not None:
        pytest.skip(reason)
    if shutil.which("initdb") is None:
        pytest.skip("PostgreSQL binaries (initdb, pg_ctl) are not on PATH")
    base = Path(tempfile.mkdtemp(prefix="maas-hosts-"))
    base.chmod(0o755)
    pg_dir = base / "pg"
    pg_dir.mkdir()
    keys, other_keys = base / "keys", base / "other-keys"
    make_keys(keys)
    make_keys(other_keys)
    pg: tuple[list[str], Path] | None = None

    def log(name: str) -> Path:
        return base / f"{name}.log"

    try:
        with network() as net:
            db, gw1, gw2, wk1, wk2, s3 = (
                net.add(name, number)
                for name, number in (
                    ("db", 1),
                    ("gw1", 11),
                    ("gw2", 12),
                    ("wk1", 21),
                    ("wk2", 22),
                    ("s3", 31),
                )
            )
            database_url, prefix, data = _start_postgres(db, pg_dir)
            pg = (prefix, data)
            bucket = {"MAAS_ARTIFACT_URL": f"s3://{BUCKET}/models", **_start_s3(s3, log("s3"))}
            endpoints = [f"tcp://{h.address}:{WORKER_PORT}" for h in (wk1, wk2)]
            stranger = f"tcp://{wk2.address}:{WORKER_PORT + 1}"
            for host, endpoint, name, folder, extra in (
                (wk1, endpoints[0], "wk1", keys, bucket),  # downloads from the bucket
                (wk2, endpoints[1], "wk2", keys, {"MAAS_DATABASE_URL": database_url}),
                (wk2, stranger, "stranger", other_keys, {}),
            ):
                host.popen(
                    [
                        *MAAS,
                        "worker",
                        "--listen",
                        endpoint.removeprefix("tcp://"),
                        "--id",
                        name,
                        "--threads",
                        "1",
                    ],
                    env=env_of(
                        MAAS_WORKER_KEYS_DIR=folder,
                        MAAS_WORKER_CACHE_DIR=base / f"cache-{name}",
                        **extra,
                    ),
                    log=log(name),
                )
            gateway_env = env_of(
                MAAS_DATABASE_URL=database_url,
                MAAS_WORKER_ENDPOINTS=",".join([endpoints[0], stranger]),
                MAAS_WORKER_KEYS_DIR=keys,
                MAAS_BOOTSTRAP_ADMIN_KEY=ADMIN_SECRET,
                MAAS_TORCH_THREADS=1,
                **bucket,
            )
            for host in (gw1, gw2):  # one after the other: the first migrates the registry
                (base / host.name).mkdir()
                own_disk = {"MAAS_ARTIFACT_DIR": str(base / host.name / "scratch")}
                host.popen(
                    [
                        *MAAS,
                        "serve",
                        "--workers",
                        "0",
                        "--gateways",
                        "1",
                        "--host",
                        host.address,
                        "--port",
                        str(GATEWAY_PORT),
                        "--data-dir",
                        str(base / host.name),
                    ],
                    env={**gateway_env, **own_disk},
                    log=log(host.name),
                )
                _wait_up(_gateway_url(host), base / f"{host.name}.log")
            a, b = _gateway_url(gw1), _gateway_url(gw2)

            # Two versions on both worker hosts, one uploaded through each gateway host,
            # production → 1, served through both gateways.
            for seed, url in ((1, a), (2, b)):
                number = upload(url, "m", torchscript_bytes(tiny_mlp(seed=seed)), mlp_meta())
                wait_ready_version(url, "m", number)
            put = httpx.put(
                a + "/admin/models/m/aliases/production", json={"version": 1}, headers=ADMIN
            )
            assert put.status_code == 200, put.text
            for url in (a, b):
                wait_for(
                    lambda url=url: all(
                        {"m@1", "m@2"} <= set(_workers(url)[e]["versions"]) for e in endpoints
                    ),
                    f"both worker hosts to hold m@1 and m@2, seen from {url}",
                    60,
                )
                assert _served_version(url) == 1
            # The stranger never completed a handshake with either gateway.
            for url in (a, b):
                seen = _workers(url)[stranger]
                assert seen["healthy"] is False
                assert seen["pid"] is None
            for name in ("wk1", "wk2"):
                fetched = [p.name for p in (base / f"cache-{name}").iterdir()]
                assert len(fetched) == 2, name  # both versions' artifacts, fetched by sha256
            told = {n: (base / f"{n}.log").read_text(errors="replace") for n in ("wk1", "wk2")}
            assert told["wk1"].count("downloaded artifact") == 2, told["wk1"][-3000:]
            assert "fetched artifact" not in told["wk1"]
            assert told["wk2"].count("fetched artifact") == 2, told["wk2"][-3000:]
            for host in (gw1, gw2):
                kept = [p for p in (base / host.name).rglob("*") if "sha256" in p.parts]
                assert kept == [], kept  # no gateway host keeps an artifact on its disk
            joined = _workers(b)[endpoints[1]]
            assert joined["id"] == "wk2"
            assert joined["memory_total_bytes"] > 0
            print(f"wk2 joined both gateways through the registry: {joined['endpoint']}")
            print(f"\nhosts: {', '.join(f'{h.name}={h.address}' for h in net.hosts.values())}")

            # A promotion through A is served by B within 1 s.
            started = time.monotonic()
            put = httpx.put(
                a + "/admin/models/m/aliases/production", json={"version": 2}, headers=ADMIN
            )
            assert put.status_code == 200, put.text
            wait_for(lambda: _served_version(b) == 2, "B to serve the promotion", 5)
            converged = time.monotonic() - started
            print(f"promotion through gw1 served by gw2 after {converged * 1000:.0f} ms")
            assert converged <= 1.0

            # A worker host dies under load: requests fail fast or go to the other host.
            durations: list[tuple[float, int]] = []
            stop = threading.Event()

            def drive(url: str) -> None:
                with httpx.Client(base_url=url, timeout=10) as client:
                    while not stop.is_set():
                        begun = time.monotonic()
                        try:
                            status = client.post("/v1/models/m:predict", json=ROW).status_code
                        except httpx.HTTPError:
                            status = 0
                        durations.append((time.monotonic() - begun, status))

            clients = [threading.Thread(target=drive, args=(url,)) for url in (a, b, a, b)]
            time.sleep(1.05)  # the requests so far end in an earlier second than the load's
            load_began = time.time()
            for thread in clients:
                thread.start()
            wait_for(lambda: len(durations) >= 50, "load to be under way")
            wk1.kill()
            killed_at = len(durations)
            wait_for(  # the other host serves: 20 answers in a row after the kill, all 200
                lambda: (
                    len(durations) >= killed_at + 20 and all(s == 200 for _, s in durations[-20:])
                ),
                "the other worker host to serve alone",
                15,
            )
            stop.set()
            for thread in clients:
                thread.join(15)
            after = durations[killed_at:]
            slowest = max(d for d, _ in durations)
            failed = [s for _, s in after if s != 200]
            print(
                f"worker host wk1 killed under load: {len(durations)} requests, {len(after)} "
                f"after the kill, {len(failed)} not 200 ({sorted(set(failed))}), "
                f"slowest {slowest * 1000:.0f} ms"
            )
            assert slowest < 5.0  # none hangs
            assert not any(t.is_alive() for t in clients)
            assert [s for _, s in after[-20:]] == [200] * 20  # the other host serves
            assert all(s in (200, 503) for _, s in after)
            _traffic_adds_up_over_both_gateway_hosts(a, b, load_began, durations)

            # gw2 loses the database: it keeps serving what it knows.
            gw2.cut_from(db)
            time.sleep(1.0)
            answers = [
                httpx.post(b + "/v1/models/m:predict", json=ROW, timeout=5) for _ in range(20)
            ]
            assert {r.status_code for r in answers} == {200}
            assert {r.json()["version"] for r in answers} == {2}
            print("gw2 cut from the database host: 20/20 predictions answered 200")
    finally:
        if pg is not None:
            prefix, data = pg
            pg_ctl = shutil.which("pg_ctl") or "pg_ctl"
            subprocess.run(
                [*prefix, pg_ctl, "-D", str(data), "-m", "immediate", "-w", "stop"],
                capture_output=True,
            )
        shutil.rmtree(base, ignore_errors=True)
