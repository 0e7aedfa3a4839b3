"""The stock Triton HTTP clients (`tritonclient.http`, sync and aio), unchanged, against a real
`maas serve`: what a team that already calls its models through Triton would run."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import tritonclient.http as httpclient
import tritonclient.http.aio as aioclient
from tritonclient.utils import InferenceServerException

from support.inprocess_gateway import ADMIN, ADMIN_SECRET
from support.model_files import IN, OUT, SlowMLP, expected, mlp_meta, tiny_mlp, torchscript_bytes
from support.processes import deploy, maas_server, wait_ready
from support.prometheus import parse, value

pytestmark = pytest.mark.slow

ROWS = np.array([[0.1, 0.2, 0.3, 0.4], [1.0, -1.0, 0.5, 2.0], [3.0, 0.0, 0.0, -3.0]], np.float32)


def _upload(base: str, model: str, seed: int, query: str = "") -> dict[str, Any]:
    """A tiny MLP (weights from `seed`) as a new version of `model`, once its load ended."""
    uploaded = httpx.post(
        f"{base}/admin/models/{model}/versions?wait=true{query}",
        files={"file": (f"{model}.pt", torchscript_bytes(tiny_mlp(seed=seed)))},
        data={"meta": json.dumps(mlp_meta())},
        headers=ADMIN,
    )
    assert uploaded.status_code == 201, uploaded.text
    version: dict[str, Any] = uploaded.json()
    return version


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One server for the module: `m` version 1 (production) and version 2 (alias `staging`)."""
    data_dir = tmp_path_factory.mktemp("triton")
    env = {"MAAS_BOOTSTRAP_ADMIN_KEY": ADMIN_SECRET}
    with maas_server(data_dir, "--gateways", "2", "--workers", "1", env=env) as base:
        deploy(base, torchscript_bytes(tiny_mlp(seed=1)), mlp_meta())
        _upload(base, "m", seed=2)
        staged = httpx.put(
            f"{base}/admin/models/m/aliases/staging", json={"version": 2}, headers=ADMIN
        )
        assert staged.status_code == 200, staged.text
        wait_ready(base)
        yield base


@pytest.fixture
def client(url: str) -> Iterator[httpclient.InferenceServerClient]:
    triton = httpclient.InferenceServerClient(url.removeprefix("http://"))
    try:
        yield triton
    finally:
        triton.close()


def _input(rows: np.ndarray, binary: bool = True) -> httpclient.InferInput:
    tensor = httpclient.InferInput("x", list(rows.shape), "FP32")
    tensor.set_data_from_numpy(rows, binary_data=binary)
    return tensor


def test_server_and_model_health_and_metadata(client: httpclient.InferenceServerClient) -> None:
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.get_server_metadata()["name"] == "maas"
    assert client.is_model_ready("m")
    assert client.is_model_ready("m", "2")
    assert client.is_model_ready("m", "staging")
    assert not client.is_model_ready("ghost")
    meta = client.get_model_metadata("m")
    assert meta["versions"] == ["1"]
    assert meta["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, IN]}]
    assert meta["outputs"] == [{"name": "y", "datatype": "FP32", "shape": [-1, OUT]}]
    assert client.get_model_metadata("m", "staging")["versions"] == ["2"]
    assert client.get_model_config("m")["max_batch_size"] == 8


def test_infer_binary_both_ways_several_instances(
    client: httpclient.InferenceServerClient,
) -> None:
    result = client.infer("m", [_input(ROWS)], request_id="r-1")
    got = result.as_numpy("y")
    assert got.shape == (3, OUT)
    np.testing.assert_allclose(got, expected(tiny_mlp(seed=1), ROWS.tolist()), atol=1e-5)
    response = result.get_response()
    assert (response["model_name"], response["model_version"], response["id"]) == (
        "m",
        "1",
        "r-1",
    )


def test_infer_json_both_ways_with_one_requested_output(
    client: httpclient.InferenceServerClient,
) -> None:
    wanted = [httpclient.InferRequestedOutput("y", binary_data=False)]
    result = client.infer("m", [_input(ROWS[:1], binary=False)], outputs=wanted)
    assert "data" in result.get_output("y")  # answered as JSON, as asked
    np.testing.assert_allclose(
        result.as_numpy("y"), expected(tiny_mlp(seed=1), ROWS[:1].tolist()), atol=1e-5
    )


def test_versioned_url_and_an_alias_as_the_version(
    client: httpclient.InferenceServerClient,
) -> None:
    second = expected(tiny_mlp(seed=2), ROWS.tolist())
    by_number = client.infer("m", [_input(ROWS)], model_version="2")
    by_alias = client.infer("m", [_input(ROWS)], model_version="staging")
    np.testing.assert_allclose(by_number.as_numpy("y"), second, atol=1e-5)
    np.testing.assert_allclose(by_alias.as_numpy("y"), second, atol=1e-5)
    assert by_alias.get_response()["model_version"] == "2"  # the version it resolved to


def test_client_mistakes_are_protocol_errors(client: httpclient.InferenceServerClient) -> None:
    with pytest.raises(InferenceServerException) as unknown:
        client.infer("ghost", [_input(ROWS)])
    assert unknown.value.status() == "404"
    assert "ghost" in unknown.value.message()

    wrong_type = httpclient.InferInput("x", [1, IN], "FP64")
    wrong_type.set_data_from_numpy(ROWS[:1].astype(np.float64))
    with pytest.raises(InferenceServerException) as datatype:
        client.infer("m", [wrong_type])
    assert datatype.value.status() == "400"
    assert "FP64" in datatype.value.message()

    wide = np.zeros((1, IN + 1), np.float32)
    with pytest.raises(InferenceServerException) as shape:
        client.infer("m", [_input(wide)])
    assert shape.value.status() == "400"
    assert "shape" in shape.value.message()

    with pytest.raises(InferenceServerException) as metadata:
        client.get_model_metadata("ghost")
    assert metadata.value.status() == "404"


@pytest.mark.parametrize(
    "asked",
    [{}, {"model_name": "m"}, {"model_name": "m", "model_version": "1"}],
    ids=["every_model", "model", "version"],
)
def test_inference_statistics_say_they_are_not_served_and_where_to_look(
    client: httpclient.InferenceServerClient, asked: dict[str, str]
) -> None:
    with pytest.raises(InferenceServerException) as refused:
        client.get_inference_statistics(**asked)
    assert refused.value.status() == "404"
    message = refused.value.message()
    assert "the statistics extension" in message
    assert "is not served by this release" in message
    assert "maas_request_phase_seconds" in message
    assert "does not exist" not in message  # not "model 'stats' does not exist"
    assert "statistics" not in client.get_server_metadata()["extensions"]


async def test_the_aio_client(url: str) -> None:
    client = aioclient.InferenceServerClient(url.removeprefix("http://"))
    try:
        assert await client.is_server_live()
        assert await client.is_model_ready("m", "staging")
        assert (await client.get_model_metadata("m"))["versions"] == ["1"]
        binary = await client.infer("m", [_input(ROWS)], model_version="staging")
        np.testing.assert_allclose(
            binary.as_numpy("y"), expected(tiny_mlp(seed=2), ROWS.tolist()), atol=1e-5
        )
        wanted = [aioclient.InferRequestedOutput("y", binary_data=False)]
        as_json = await client.infer("m", [_input(ROWS, binary=False)], outputs=wanted)
        np.testing.assert_allclose(
            as_json.as_numpy("y"), expected(tiny_mlp(seed=1), ROWS.tolist()), atol=1e-5
        )
        with pytest.raises(InferenceServerException) as unknown:
            await client.infer("ghost", [_input(ROWS)])
        assert unknown.value.status() == "404"
    finally:
        await client.close()


def test_each_protocol_is_counted_under_its_own_label(tmp_path: Path) -> None:
    env = {"MAAS_BOOTSTRAP_ADMIN_KEY": ADMIN_SECRET}
    with maas_server(tmp_path, "--gateways", "1", "--workers", "1", env=env) as base:
        deploy(base, torchscript_bytes(tiny_mlp(seed=1)), mlp_meta())
        client = httpclient.InferenceServerClient(base.removeprefix("http://"))
        try:
            client.infer("m", [_input(ROWS)])
        finally:
            client.close()
        native = httpx.post(f"{base}/v1/models/m:predict", json={"instances": ROWS.tolist()})
        assert native.status_code == 200
        _, samples = parse(httpx.get(f"{base}/metrics").text)
        for protocol in ("v1", "v2"):
            labels = {"model": "m", "version": "1", "protocol": protocol, "code": "200"}
            assert value(samples, "maas_requests_total", **labels) == 1


def test_a_v2_and_a_native_request_are_answered_from_one_batch(tmp_path: Path) -> None:
    env = {"MAAS_BOOTSTRAP_ADMIN_KEY": ADMIN_SECRET}
    with maas_server(tmp_path, "--gateways", "1", "--workers", "1", env=env) as base:
        # One worker runs one forward at a time: while `slow` computes, requests for `m` wait.
        slow_meta = mlp_meta(batching={"max_batch_size": 1, "max_delay_ms": 0})
        deploy(base, torchscript_bytes(SlowMLP(rounds=1000)), slow_meta, name="slow")
        deploy(base, torchscript_bytes(tiny_mlp(seed=1)), mlp_meta(), name="m")
        blocker = _raw_post(base, "/v1/models/slow:predict", {"instances": [[0.0] * IN]})
        with ThreadPoolExecutor(2) as pool:
            native = pool.submit(
                httpx.post,
                f"{base}/v1/models/m:predict",
                json={"instances": ROWS[:1].tolist()},
                timeout=60,
            )
            triton = httpclient.InferenceServerClient(base.removeprefix("http://"))
            v2 = pool.submit(triton.infer, "m", [_input(ROWS[1:])])
            # Both wait in m's queue (1 + 2 instances) while the slow forward runs.
            _wait_workers(base, lambda w: w["queue_depth"] == 3)
            assert native.result().status_code == 200
            np.testing.assert_allclose(
                v2.result().as_numpy("y"), expected(tiny_mlp(seed=1), ROWS[1:].tolist()), atol=1e-5
            )
            triton.close()
        assert b"200 OK" in blocker.recv(65536)
        blocker.close()
        stats = _wait_workers(base, lambda w: _stats(w, "m@1").get("instances") == 3)
        assert _stats(stats, "m@1")["batches"] == 1  # both requests shared one forward


def _raw_post(base: str, path: str, body: Any) -> socket.socket:
    """Send a request and leave its answer unread on the returned socket."""
    host, port = base.removeprefix("http://").split(":")
    data = json.dumps(body).encode()
    head = (
        f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(data)}\r\n\r\n"
    ).encode()
    sock = socket.create_connection((host, int(port)))
    sock.settimeout(60)
    sock.sendall(head + data)
    return sock


def _stats(worker: dict[str, Any], key: str) -> dict[str, Any]:
    found: dict[str, Any] = next((s for s in worker["stats"] if s["key"] == key), {})
    return found


def _wait_workers(base: str, check: Any, timeout_s: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        (worker,) = httpx.get(base + "/admin/workers", headers=ADMIN).json()["workers"]
        if check(worker):
            return dict(worker)
        if time.monotonic() > deadline:
            raise AssertionError(f"the worker never reached the expected state: {worker}")
        time.sleep(0.02)


def test_a_new_model_answers_the_default_version_right_after_its_upload(url: str) -> None:
    """No alias set by anyone: the first ready version became production, so tritonclient's
    default (no model_version) and a bare native name reach it on either gateway."""
    assert _upload(url, "fresh", seed=3, query="&create_model=true")["status"] == "ready"
    want = np.asarray(expected(tiny_mlp(seed=3), ROWS.tolist()), np.float32)
    for _ in range(4):  # new connections: the kernel spreads them over both gateways
        triton = httpclient.InferenceServerClient(url.removeprefix("http://"))
        try:
            got = triton.infer("fresh", [_input(ROWS)]).as_numpy("y")
        finally:
            triton.close()
        np.testing.assert_allclose(got, want, atol=1e-5)
        native = httpx.post(f"{url}/v1/models/fresh:predict", json={"instances": ROWS.tolist()})
        assert native.status_code == 200, native.text
        assert native.json()["version"] == 1
