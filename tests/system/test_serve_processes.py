"""`maas serve` as real processes: G gateways on one port share workers; a dead one returns."""

from __future__ import annotations

import json
import os
import signal
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from support.inprocess_gateway import ADMIN, ADMIN_SECRET
from support.model_files import SlowMLP, expected, mlp_meta, tiny_mlp, torchscript_bytes
from support.processes import deploy, maas_server
from support.prometheus import CONTRACT_FAMILIES, Sample, parse, value


def _wait(url: str, check: Any, timeout_s: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        body: dict[str, Any] = httpx.get(url + "/admin/workers", headers=ADMIN).json()
        if check(body["workers"]):
            return body
        if time.monotonic() > deadline:
            raise AssertionError(f"workers never reached the expected state: {body}")
        time.sleep(0.1)


def _raw_predict(url: str) -> tuple[str, int, bytes]:
    """Host, port and the bytes of one predict request, for tests that hang up or hold on."""
    host, port = url.removeprefix("http://").split(":")
    body = json.dumps({"instances": [[1.0, 2.0, 3.0, 4.0]]}).encode()
    head = (
        "POST /v1/models/m:predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return host, int(port), head.encode() + body


def _predict_many(url: str, count: int) -> None:
    instances = [[float(i), 1.0, 2.0, 3.0] for i in range(4)]
    want = expected(tiny_mlp(), instances)
    for _ in range(count):
        # A new connection each time, so the kernel spreads them over the gateway processes.
        with httpx.Client(base_url=url) as client:
            response = client.post("/v1/models/m:predict", json={"instances": instances})
        assert response.status_code == 200, response.text
        got = response.json()["predictions"]
        assert np.allclose(got, want, atol=1e-5)


def test_two_gateways_share_one_worker_and_a_killed_worker_comes_back(tmp_path: Path) -> None:
    env = {"MAAS_BOOTSTRAP_ADMIN_KEY": ADMIN_SECRET}
    with maas_server(tmp_path, "--gateways", "2", "--workers", "1", env=env) as url:
        deploy(url, torchscript_bytes(tiny_mlp()), mlp_meta())
        body = _wait(url, lambda ws: ws and ws[0]["healthy"] and ws[0]["gateways"] == 2)
        (worker,) = body["workers"]
        assert worker["versions"] == ["m@1"]
        assert worker["device"] == "cpu"
        assert worker["restarts"] == 0
        # A CPU worker reports the host's memory (what placement weighs) and its threads.
        meminfo = dict(
            line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines()
        )
        assert worker["memory_total_bytes"] == int(meminfo["MemTotal"].split()[0]) * 1024
        assert 0 < worker["memory_free_bytes"] < worker["memory_total_bytes"]
        assert worker["threads"] >= 1
        _predict_many(url, 20)

        os.kill(worker["pid"], signal.SIGKILL)
        restarted = _wait(
            url,
            lambda ws: ws[0]["healthy"] and ws[0]["restarts"] == 1 and ws[0]["versions"] == ["m@1"],
        )
        assert restarted["workers"][0]["pid"] != worker["pid"]
        _predict_many(url, 20)
        ready = httpx.get(url + "/readyz")
        assert ready.status_code == 200, ready.text
        samples = _scrape_until(
            url, lambda s: value(s, "maas_worker_restarts_total", worker="w0") == 1
        )
        assert value(samples, "maas_worker_up", worker="w0") == 1


def _scrape_until(url: str, check: Any, timeout_s: float = 10) -> dict[Sample, float]:
    """Scrape over new connections (so over every gateway) until `check` holds."""
    deadline = time.monotonic() + timeout_s
    while True:
        families, samples = parse(httpx.get(url + "/metrics").text)
        assert families >= CONTRACT_FAMILIES
        if check(samples):
            return samples
        if time.monotonic() > deadline:
            raise AssertionError(f"metrics never reached the expected state: {samples}")
        time.sleep(0.1)


def test_metrics_add_up_over_every_gateway_process(tmp_path: Path) -> None:
    env = {"MAAS_BOOTSTRAP_ADMIN_KEY": ADMIN_SECRET}
    with maas_server(tmp_path, "--gateways", "2", "--workers", "1", env=env) as url:
        deploy(url, torchscript_bytes(tiny_mlp()), mlp_meta())
        _wait(url, lambda ws: ws and ws[0]["healthy"] and ws[0]["gateways"] == 2)
        _predict_many(url, 30)
        for _ in range(5):
            with httpx.Client(base_url=url) as client:
                assert client.post("/v1/models/nope:predict", json={}).status_code == 404
        for _ in range(12):  # new connections: the kernel spreads them over both gateways
            samples = _scrape_until(
                url,
                # Workers and gateways write what they counted every 0.2 s: a scrape on one
                # gateway sees the other's last requests once it wrote them.
                lambda s: (
                    value(s, "maas_queue_wait_seconds_count", model="m", version="1", worker="w0")
                    == 30
                    and value(s, "maas_request_duration_seconds_count", model="m", version="1")
                    == 30
                    and value(
                        s,
                        "maas_requests_total",
                        model="_unknown",
                        version="_",
                        protocol="v1",
                        code="404",
                    )
                    == 5
                ),
            )
            ok = {"model": "m", "version": "1", "protocol": "v1", "code": "200"}
            assert value(samples, "maas_requests_total", **ok) == 30
            junk = {"model": "_unknown", "version": "_", "protocol": "v1", "code": "404"}
            assert value(samples, "maas_requests_total", **junk) == 5
            assert value(samples, "maas_batch_size_sum", model="m", version="1", worker="w0") == 120
            assert (
                value(samples, "maas_request_duration_seconds_count", model="m", version="1") == 30
            )
            assert (
                value(samples, "maas_model_version_status", model="m", version="1", status="ready")
                == 1
            )
            assert (
                value(samples, "maas_alias_target", model="m", alias="production", version="1") == 1
            )
            assert value(samples, "maas_worker_up", worker="w0") == 1


def test_gateway_processes_do_not_import_torch(tmp_path: Path) -> None:
    env = {"MAAS_BOOTSTRAP_ADMIN_KEY": ADMIN_SECRET}
    with maas_server(tmp_path, "--gateways", "1", "--workers", "1", env=env) as url:
        deploy(url, torchscript_bytes(tiny_mlp()), mlp_meta())
        (worker,) = _wait(url, lambda ws: ws and ws[0]["healthy"])["workers"]
        server_pids = _children_of(os.getpid())
        gateways = [
            pid for pid in _descendants(server_pids) if pid != worker["pid"] and _is_python(pid)
        ]
        assert gateways
        for pid in gateways:
            maps = Path(f"/proc/{pid}/maps").read_text()
            assert "libtorch" not in maps, f"gateway {pid} loaded torch"
        assert "libtorch" in Path(f"/proc/{worker['pid']}/maps").read_text()


def _children_of(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(entry.name))
    return out


def _descendants(pids: list[int]) -> list[int]:
    out: list[int] = []
    for pid in pids:
        out.append(pid)
        out.extend(_descendants(_children_of(pid)))
    return out


def _is_python(pid: int) -> bool:
    try:
        return "python" in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return False


def _forwards_begun(count: int) -> Callable[[dict[Sample, float]], bool]:
    """Whether the worker took `count` requests of m@1 into batches (a request's queue wait
    ends as its forward begins)."""
    labels = {"model": "m", "version": "1", "worker": "w0"}
    return lambda s: value(s, "maas_queue_wait_seconds_count", **labels) == count


def test_a_request_whose_client_hangs_up_is_not_computed(tmp_path: Path) -> None:
    env = {"MAAS_BOOTSTRAP_ADMIN_KEY": ADMIN_SECRET}
    with maas_server(tmp_path, "--gateways", "1", "--workers", "1", env=env) as url:
        meta = mlp_meta(batching={"max_batch_size": 1, "max_delay_ms": 0, "max_queue": 8})
        deploy(url, torchscript_bytes(SlowMLP(rounds=1500)), meta)
        host, port, request = _raw_predict(url)
        with httpx.Client(base_url=url, timeout=60) as client:
            with socket.create_connection((host, port)) as busy:
                busy.sendall(request)  # occupies the worker with one slow forward
                _scrape_until(url, _forwards_begun(1))
                with socket.create_connection((host, port)) as gone:
                    gone.sendall(request)
                    _wait(url, lambda ws: ws[0]["queue_depth"] == 1)
                # `gone` hung up while queued behind `busy`; `busy` waits for its answer.
                assert b"200 OK" in busy.recv(65536)
            assert client.post("/v1/models/m:predict", json={"instances": [[0.0] * 4]}).is_success
        stats = _wait(url, lambda ws: ws[0]["stats"] and ws[0]["stats"][0]["instances"] >= 2)
        assert stats["workers"][0]["stats"][0]["instances"] == 2  # busy + the last; not `gone`


def test_after_a_restart_ready_means_servable(tmp_path: Path) -> None:
    env = {"MAAS_BOOTSTRAP_ADMIN_KEY": ADMIN_SECRET}
    with maas_server(tmp_path, "--gateways", "2", env=env) as url:
        deploy(url, torchscript_bytes(tiny_mlp()), mlp_meta())
    with maas_server(tmp_path, "--gateways", "2", env=env, ready_path="/readyz") as url:
        _predict_many(url, 10)  # no 409 "loading" from either gateway once /readyz says ready


def test_a_full_queue_answers_429_with_retry_after(tmp_path: Path) -> None:
    env = {"MAAS_BOOTSTRAP_ADMIN_KEY": ADMIN_SECRET}
    with maas_server(tmp_path, "--gateways", "1", env=env) as url:
        meta = mlp_meta(batching={"max_batch_size": 1, "max_delay_ms": 0, "max_queue": 1})
        deploy(url, torchscript_bytes(SlowMLP(rounds=1500)), meta)
        host, port, request = _raw_predict(url)
        with (
            socket.create_connection((host, port)) as running,
            socket.create_connection((host, port)) as queued,
        ):
            running.sendall(request)  # the worker's one slow forward
            _scrape_until(url, _forwards_begun(1))
            queued.sendall(request)  # fills the queue of one
            _wait(url, lambda ws: ws[0]["queue_depth"] == 1)
            refused = httpx.post(url + "/v1/models/m:predict", json={"instances": [[0.0] * 4]})
            assert refused.status_code == 429
            assert refused.json()["error"]["code"] == "queue_full"
            assert int(refused.headers["Retry-After"]) >= 1
            assert b"200 OK" in running.recv(65536)
            assert b"200 OK" in queued.recv(65536)


def test_every_worker_loads_a_version_unless_replicas_limits_it(tmp_path: Path) -> None:
    env = {"MAAS_BOOTSTRAP_ADMIN_KEY": ADMIN_SECRET}
    with maas_server(tmp_path, "--gateways", "1", "--workers", "2", env=env) as url:
        deploy(url, torchscript_bytes(tiny_mlp()), mlp_meta())
        _wait(url, lambda ws: len(ws) == 2 and all(w["versions"] == ["m@1"] for w in ws))
        _predict_many(url, 10)
        uploaded = httpx.post(
            url + "/admin/models/m/versions",
            files={"file": ("m.pt", torchscript_bytes(tiny_mlp(seed=1)))},
            data={"meta": json.dumps(mlp_meta(replicas=1))},
            headers=ADMIN,
        )
        assert uploaded.status_code == 201, uploaded.text
        body = _wait(url, lambda ws: sum("m@2" in w["versions"] for w in ws) == 1)
        assert sorted(w["id"] for w in body["workers"]) == ["w0", "w1"]
        assert [w["id"] for w in body["workers"] if "m@2" in w["versions"]] == ["w0"]


def _version(url: str, name: str, number: int) -> dict[str, Any]:
    body: dict[str, Any] = httpx.get(
        f"{url}/admin/models/{name}/versions/{number}", headers=ADMIN
    ).json()
    return body


def _kill_while_loading(url: str, key: str, restarts: int) -> None:
    """SIGKILL the worker while it loads `key`, as the kernel's OOM killer would."""
    body = _wait(url, lambda ws: ws[0]["restarts"] == restarts and key in ws[0]["loading"])
    os.kill(body["workers"][0]["pid"], signal.SIGKILL)


def test_a_load_that_keeps_killing_its_worker_ends_failed(tmp_path: Path) -> None:
    env = {"MAAS_BOOTSTRAP_ADMIN_KEY": ADMIN_SECRET}
    # Each warm-up forward of this model takes a good part of a second: time to kill it.
    slow = torchscript_bytes(SlowMLP(rounds=500))
    meta = json.dumps(mlp_meta(batching={"max_batch_size": 2}))
    with maas_server(tmp_path, "--gateways", "1", "--workers", "1", env=env) as url:
        assert httpx.post(url + "/admin/models", json={"name": "s"}, headers=ADMIN).is_success

        def upload() -> None:
            files = {"file": ("s.pt", slow)}
            response = httpx.post(
                url + "/admin/models/s/versions", files=files, data={"meta": meta}, headers=ADMIN
            )
            assert response.status_code == 201, response.text

        # One death while loading is not held against the version: the worker comes back and
        # loads it again.
        upload()
        _kill_while_loading(url, "s@1", restarts=0)
        _wait(url, lambda ws: ws[0]["restarts"] == 1 and ws[0]["versions"] == ["s@1"])
        assert _version(url, "s", 1)["status"] == "ready"

        # A version that kills the worker at every load ends failed after the second death,
        # and the restarted worker does not try it again.
        upload()
        _kill_while_loading(url, "s@2", restarts=1)
        _kill_while_loading(url, "s@2", restarts=2)
        deadline = time.monotonic() + 10
        while (version := _version(url, "s", 2))["status"] != "failed":
            assert time.monotonic() < deadline, version
            time.sleep(0.1)
        assert "died while loading" in version["load_error"]
        body = _wait(url, lambda ws: ws[0]["restarts"] == 3 and ws[0]["versions"] == ["s@1"])
        time.sleep(0.5)  # the resync loads one version after the other: s@2 would be next
        worker = _wait(url, lambda ws: True)["workers"][0]
        assert worker["pid"] == body["workers"][0]["pid"]
        assert worker["versions"] == ["s@1"]
        assert worker["loading"] == []
        assert _version(url, "s", 1)["status"] == "ready"
        samples = _scrape_until(url, lambda s: True)
        assert value(samples, "maas_worker_restarts_total", worker="w0") == 3
        assert (
            value(samples, "maas_model_version_status", model="s", version="2", status="failed")
            == 1
        )
