"""The Open Inference Protocol over HTTP in one gateway: health, metadata, readiness, config
and infer (JSON and binary tensors), with the protocol's own error shape throughout."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from support.inprocess_gateway import ADMIN, Gateway, make_settings, running_gateway
from support.model_files import OUT, expected, mlp_meta, tiny_mlp, torchscript_bytes
from support.prometheus import parse, value

ROWS = [[0.1, 0.2, 0.3, 0.4], [1.0, -1.0, 0.5, 2.0]]


@pytest.fixture
async def served(gateway: Gateway) -> Gateway:
    await gateway.deploy_three_versions("mlp")
    return gateway


def _v2_error(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}, body
    assert isinstance(body["error"], str)
    assert body["error"]
    message: str = body["error"]
    return message


def _json_request(rows: list[list[float]], **extra: Any) -> dict[str, Any]:
    return {
        "inputs": [{"name": "x", "shape": [len(rows), 4], "datatype": "FP32", "data": rows}],
        **extra,
    }


def _binary_request(rows: list[list[float]], **extra: Any) -> tuple[bytes, dict[str, str]]:
    array = np.asarray(rows, dtype=np.float32)
    header = {
        "inputs": [
            {
                "name": "x",
                "shape": list(array.shape),
                "datatype": "FP32",
                "parameters": {"binary_data_size": array.nbytes},
            }
        ],
        **extra,
    }
    text = json.dumps(header).encode()
    return text + array.tobytes(), {"Inference-Header-Content-Length": str(len(text))}


def _binary_output(response: httpx.Response, name: str = "y") -> np.ndarray[Any, Any]:
    length = int(response.headers["Inference-Header-Content-Length"])
    answer = json.loads(response.content[:length])
    offset = length
    for output in answer["outputs"]:
        size = output["parameters"]["binary_data_size"]
        if output["name"] == name:
            data = response.content[offset : offset + size]
            return np.frombuffer(data, dtype="<f4").reshape(output["shape"])
        offset += size
    raise AssertionError(f"no output {name}")


async def test_server_metadata_and_health_answer_json(served: Gateway) -> None:
    meta = (await served.client.get("/v2")).json()
    assert meta["name"] == "maas"
    assert "binary_tensor_data" in meta["extensions"]
    live = await served.client.get("/v2/health/live")
    assert (live.status_code, live.json()) == (200, {"live": True})
    ready = await served.client.get("/v2/health/ready")
    assert (ready.status_code, ready.json()) == (200, {"ready": True})


async def test_model_metadata_leads_shapes_with_the_batch_axis(served: Gateway) -> None:
    meta = (await served.client.get("/v2/models/mlp")).json()
    assert meta["name"] == "mlp"
    assert meta["versions"] == ["1"]  # what production points at
    assert meta["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}]
    assert meta["outputs"] == [{"name": "y", "datatype": "FP32", "shape": [-1, OUT]}]
    assert (await served.client.get("/v2/models/mlp/versions/2")).json()["versions"] == ["2"]
    # An alias as the version: the answer names the version it resolved to.
    staged = (await served.client.get("/v2/models/mlp/versions/staging")).json()
    assert staged["versions"] == ["2"]


async def test_model_readiness_and_unknown_models(served: Gateway) -> None:
    ready = await served.client.get("/v2/models/mlp/ready")
    assert ready.status_code == 200
    assert ready.json() == {"name": "mlp", "ready": True, "versions": ["1"]}
    assert (await served.client.get("/v2/models/mlp/versions/staging/ready")).json()[
        "versions"
    ] == ["2"]
    assert "ghost" in _v2_error(await served.client.get("/v2/models/ghost/ready"), 404)
    _v2_error(await served.client.get("/v2/models/ghost"), 404)
    _v2_error(await served.client.get("/v2/models/mlp/versions/9"), 404)
    _v2_error(await served.client.get("/v2/models/mlp/versions/nosuch/ready"), 404)
    not_ready = await served.client.get("/v2/models/mlp/versions/3/ready")
    assert (not_ready.status_code, not_ready.json()["ready"]) == (503, False)


async def test_model_config_in_triton_s_terms(served: Gateway) -> None:
    config = (await served.client.get("/v2/models/mlp/config")).json()
    assert config["max_batch_size"] == 8
    assert config["input"] == [{"name": "x", "data_type": "TYPE_FP32", "dims": [4]}]
    assert config["dynamic_batching"] == {"max_queue_delay_microseconds": 2000}


async def test_infer_with_json_tensors(served: Gateway) -> None:
    response = await served.client.post(
        "/v2/models/mlp/infer", content=json.dumps(_json_request(ROWS, id="req-7"))
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert (body["model_name"], body["model_version"], body["id"]) == ("mlp", "1", "req-7")
    (output,) = body["outputs"]
    assert (output["name"], output["datatype"], output["shape"]) == ("y", "FP32", [2, OUT])
    want = np.asarray(expected(tiny_mlp(seed=1), ROWS)).ravel()
    np.testing.assert_allclose(output["data"], want, atol=1e-5)


async def test_infer_with_binary_tensors_both_ways_on_an_alias(served: Gateway) -> None:
    body, headers = _binary_request(ROWS, parameters={"binary_data_output": True})
    headers["Content-Type"] = "application/octet-stream"
    response = await served.client.post(
        "/v2/models/mlp/versions/staging/infer", content=body, headers=headers
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/octet-stream"
    assert response.headers["X-Model-Version"] == "2"
    got = _binary_output(response)
    np.testing.assert_allclose(got, expected(tiny_mlp(seed=2), ROWS), atol=1e-5)


async def test_a_split_alias_routes_v2_requests_by_routing_key(served: Gateway) -> None:
    split = {"routes": [{"version": 1, "weight": 50}, {"version": 2, "weight": 50}]}
    answer = await served.client.put("/admin/models/mlp/aliases/canary", json=split, headers=ADMIN)
    assert answer.status_code == 200, answer.text
    seen = set()
    for key in ("a", "b", "c", "d", "e", "f", "g", "h"):
        first = await served.client.post(
            "/v2/models/mlp/versions/canary/infer",
            content=json.dumps(_json_request(ROWS[:1])),
            headers={"X-Routing-Key": key},
        )
        again = await served.client.post(
            "/v2/models/mlp/versions/canary/infer",
            content=json.dumps(_json_request(ROWS[:1])),
            headers={"X-Routing-Key": key},
        )
        assert first.json()["model_version"] == again.json()["model_version"]
        seen.add(first.json()["model_version"])
    assert seen == {"1", "2"}


async def test_infer_errors_take_the_protocol_s_shape(served: Gateway) -> None:
    post = served.client.post
    _v2_error(await post("/v2/models/ghost/infer", content=json.dumps(_json_request(ROWS))), 404)
    _v2_error(await post("/v2/models/mlp/versions/9/infer", content=b"{}"), 404)
    _v2_error(await post("/v2/models/mlp/infer", content=b"{not json"), 400)
    wrong = _json_request(ROWS)
    wrong["inputs"][0]["datatype"] = "FP64"
    assert "FP64" in _v2_error(await post("/v2/models/mlp/infer", content=json.dumps(wrong)), 400)
    body, headers = _binary_request(ROWS)
    headers["Inference-Header-Content-Length"] = str(len(body) + 1)
    _v2_error(await post("/v2/models/mlp/infer", content=body, headers=headers), 400)
    method = await served.client.get("/v2/models/mlp/infer")
    _v2_error(method, 405)
    _v2_error(await served.client.get("/v2/nothing/here"), 404)
    _v2_error(
        await post("/v2/models/mlp/versions/3/infer", content=json.dumps(_json_request(ROWS))), 409
    )


async def test_v2_is_counted_as_v2_and_needs_a_key_like_native(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, require_infer_key=True)
    async with running_gateway(settings) as gateway:
        await gateway.deploy("mlp", torchscript_bytes(tiny_mlp()), mlp_meta())
        request = json.dumps(_json_request(ROWS))
        refused = await gateway.client.post("/v2/models/mlp/infer", content=request)
        assert "key" in _v2_error(refused, 401)
        ok = await gateway.client.post("/v2/models/mlp/infer", content=request, headers=ADMIN)
        assert ok.status_code == 200, ok.text
        _, samples = parse((await gateway.client.get("/metrics")).text)
        labels = {"model": "mlp", "version": "1", "protocol": "v2"}
        assert value(samples, "maas_requests_total", **labels, code="200") == 1
        # Auth comes before the ref is resolved: a refused request names no version.
        unknown = {"model": "_unknown", "version": "_", "protocol": "v2"}
        assert value(samples, "maas_requests_total", **unknown, code="401") == 1
        assert (
            value(samples, "maas_requests_total", **{**labels, "protocol": "v1"}, code="200") == 0
        )


async def test_a_gzip_body_is_inflated_under_the_cap(served: Gateway) -> None:
    import gzip

    body = gzip.compress(json.dumps(_json_request(ROWS)).encode())
    response = await served.client.post(
        "/v2/models/mlp/infer", content=body, headers={"Content-Encoding": "gzip"}
    )
    assert response.status_code == 200, response.text
    bomb = gzip.compress(b" " * (17 * 1024 * 1024))  # inflates past the 16 MiB body cap
    _v2_error(
        await served.client.post(
            "/v2/models/mlp/infer", content=bomb, headers={"Content-Encoding": "gzip"}
        ),
        413,
    )
    _v2_error(
        await served.client.post(
            "/v2/models/mlp/infer", content=b"xx", headers={"Content-Encoding": "br"}
        ),
        400,
    )
