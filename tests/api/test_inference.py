"""Upload → load → predict through the native REST routes and v2 infer, every runtime (the same
weights as TorchScript, torch.export and ONNX), all refs."""

from __future__ import annotations

import json

import numpy as np
import pytest

from support.inprocess_gateway import Gateway
from support.model_files import (
    OUT,
    expected,
    export_bytes,
    mlp_meta,
    onnx_bytes,
    tiny_mlp,
    torchscript_bytes,
)
from support.prometheus import parse, value

ROWS = [[0.1, 0.2, 0.3, 0.4], [1.0, -1.0, 0.5, 2.0], [0.0, 0.0, 0.0, 0.0]]
RUNTIMES = pytest.mark.parametrize(
    ("fmt", "build"),
    [("torchscript", torchscript_bytes), ("torch_export", export_bytes), ("onnx", onnx_bytes)],
)


@RUNTIMES
async def test_upload_load_predict(gateway: Gateway, fmt: str, build: object) -> None:
    module = tiny_mlp(seed=1)
    artifact = build(module)  # type: ignore[operator]
    version = await gateway.deploy("mlp", artifact, mlp_meta(fmt))
    response = await gateway.predict("/v1/models/mlp:predict", {"instances": ROWS})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == "mlp"
    assert body["version"] == version
    want = expected(module, ROWS)
    for got_row, want_row in zip(body["predictions"], want, strict=True):
        assert got_row == pytest.approx(want_row, abs=1e-5)
    assert response.headers["X-Model-Name"] == "mlp"
    assert response.headers["X-Model-Version"] == str(version)
    assert response.headers["X-Request-Id"]


async def test_all_four_ref_forms_and_alias_routing(gateway: Gateway) -> None:
    first, second = tiny_mlp(seed=1), tiny_mlp(seed=2)
    v1 = await gateway.deploy("mlp", torchscript_bytes(first), mlp_meta())
    v2 = await gateway.deploy("mlp", torchscript_bytes(second), mlp_meta(), alias="staging")
    cases = {
        "/v1/models/mlp:predict": (v1, first),
        "/v1/models/mlp@production:predict": (v1, first),
        f"/v1/models/mlp@{v2}:predict": (v2, second),
        f"/v1/models/mlp/versions/{v1}:predict": (v1, first),
        "/v1/models/mlp/labels/staging:predict": (v2, second),
        "/v1/models/mlp@staging:predict": (v2, second),
    }
    for path, (version, module) in cases.items():
        response = await gateway.predict(path, {"instances": ROWS[:1]})
        assert response.status_code == 200, (path, response.text)
        assert response.json()["version"] == version, path
        assert response.json()["predictions"][0] == pytest.approx(
            expected(module, ROWS[:1])[0], abs=1e-5
        )


async def test_request_id_is_echoed(gateway: Gateway) -> None:
    await gateway.deploy("mlp", torchscript_bytes(tiny_mlp()), mlp_meta())
    response = await gateway.predict(
        "/v1/models/mlp:predict", {"instances": ROWS[:1]}, **{"X-Request-Id": "abc-123"}
    )
    assert response.headers["X-Request-Id"] == "abc-123"
    missing = await gateway.predict(
        "/v1/models/nope:predict", {"instances": ROWS[:1]}, **{"X-Request-Id": "err-1"}
    )
    assert missing.status_code == 404
    assert missing.headers["X-Request-Id"] == "err-1"


@RUNTIMES
async def test_v2_infer_json_and_binary_and_the_version_s_metrics(
    gateway: Gateway, fmt: str, build: object
) -> None:
    module = tiny_mlp(seed=5)
    version = await gateway.deploy("mlp", build(module), mlp_meta(fmt))  # type: ignore[operator]
    want = np.asarray(expected(module, ROWS), dtype=np.float32)
    tensor = {"name": "x", "shape": [len(ROWS), 4], "datatype": "FP32"}
    answered = await gateway.predict("/v2/models/mlp/infer", {"inputs": [{**tensor, "data": ROWS}]})
    assert answered.status_code == 200, answered.text
    (output,) = answered.json()["outputs"]
    assert (output["name"], output["datatype"], output["shape"]) == ("y", "FP32", [3, OUT])
    np.testing.assert_allclose(output["data"], want.ravel(), atol=1e-5)
    array = np.asarray(ROWS, dtype=np.float32)
    header = json.dumps(
        {
            "inputs": [{**tensor, "parameters": {"binary_data_size": array.nbytes}}],
            "parameters": {"binary_data_output": True},
        }
    ).encode()
    binary = await gateway.client.post(
        "/v2/models/mlp/infer",
        content=header + array.tobytes(),
        headers={
            "Inference-Header-Content-Length": str(len(header)),
            "Content-Type": "application/octet-stream",
        },
    )
    assert binary.status_code == 200, binary.text
    length = int(binary.headers["Inference-Header-Content-Length"])
    got = np.frombuffer(binary.content[length:], dtype="<f4").reshape(3, OUT)
    np.testing.assert_allclose(got, want, atol=1e-5)
    _, samples = parse((await gateway.client.get("/metrics")).text)
    labels = {"model": "mlp", "version": str(version)}
    assert value(samples, "maas_requests_total", code="200", protocol="v2", **labels) == 2
    # Both forwards measured by the worker, as for every runtime.
    worker = {**labels, "worker": "inprocess"}
    assert value(samples, "maas_inference_duration_seconds_count", **worker) == 2
    assert value(samples, "maas_batch_size_sum", **worker) == 2 * len(ROWS)


@RUNTIMES
async def test_request_larger_than_max_batch_is_split_in_order(
    gateway: Gateway, fmt: str, build: object
) -> None:
    module = tiny_mlp(seed=3)
    await gateway.deploy("mlp", build(module), mlp_meta(fmt))  # type: ignore[operator]  # max 8
    rows = [[float(i), float(-i), i / 10, 1.0] for i in range(21)]
    response = await gateway.predict("/v1/models/mlp:predict", {"instances": rows})
    assert response.status_code == 200
    for got_row, want_row in zip(
        response.json()["predictions"], expected(module, rows), strict=True
    ):
        assert got_row == pytest.approx(want_row, abs=1e-5)
