"""The classification extension of `/v2/models/.../infer` in one gateway, on a real model:
requests built and answers read by tritonclient's own code (`generate_request_body`,
`InferResult.from_response_body`), JSON and binary, with and without the version's labels."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import tritonclient.http as httpclient

from maas.api.v2.classification import class_count
from maas.errors import BadRequest
from maas.types import TensorSpec
from support.inprocess_gateway import Gateway
from support.model_files import expected, mlp_meta, tiny_mlp, torchscript_bytes
from support.prometheus import parse, value

ROWS = np.array([[0.1, 0.2, 0.3, 0.4], [1.0, -1.0, 0.5, 2.0], [3.0, 0.0, 0.0, -3.0]], np.float32)
LABELS = ["cat", "dog", "bird"]


def _strings(logits: list[float], k: int, labels: list[str] | None, soft: bool) -> list[str]:
    """What Triton answers: `%f` of the score, the index, the label; best first."""
    scores = np.array(logits, np.float32)
    if soft:
        e = np.exp(scores.astype(np.float64) - scores.max())
        scores = (e / e.sum()).astype(np.float32)
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))[:k]
    return [f"{float(scores[i]):f}:{i}" + (f":{labels[i]}" if labels else "") for i in order]


async def _infer(
    gateway: Gateway, path: str, outputs: list[httpclient.InferRequestedOutput], rows: Any = ROWS
) -> httpclient.InferResult:
    tensor = httpclient.InferInput("x", list(rows.shape), "FP32")
    tensor.set_data_from_numpy(rows, binary_data=True)
    body, json_size = httpclient.InferenceServerClient.generate_request_body(
        [tensor], outputs=outputs
    )
    headers = {"Content-Type": "application/octet-stream"}
    if json_size is not None:
        headers["Inference-Header-Content-Length"] = str(json_size)
    response = await gateway.client.post(path, content=body, headers=headers)
    assert response.status_code == 200, response.text
    length = response.headers.get("Inference-Header-Content-Length")
    return httpclient.InferResult.from_response_body(
        response.content, header_length=None if length is None else int(length)
    )


def _decoded(values: np.ndarray) -> list[list[str]]:
    return [[v.decode() if isinstance(v, bytes) else v for v in row] for row in values.tolist()]


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
async def test_class_count_answers_triton_strings_with_the_versions_labels(
    gateway: Gateway, binary: bool
) -> None:
    module = tiny_mlp(seed=1)
    meta = mlp_meta(postprocess={"output": "y", "labels": LABELS, "softmax": True})
    await gateway.deploy("clf", torchscript_bytes(module), meta)
    wanted = [httpclient.InferRequestedOutput("y", binary_data=binary, class_count=2)]
    result = await _infer(gateway, "/v2/models/clf/infer", wanted)
    output = result.get_output("y")
    assert output["datatype"] == "BYTES"
    assert output["shape"] == [3, 2]
    assert ("data" in output) is not binary
    got = result.as_numpy("y")
    assert got.shape == (3, 2)
    logits = expected(module, ROWS.tolist())
    assert _decoded(got) == [_strings(row, 2, LABELS, soft=True) for row in logits]


async def test_without_postprocess_the_strings_are_score_and_index(gateway: Gateway) -> None:
    module = tiny_mlp(seed=2)
    await gateway.deploy("plain", torchscript_bytes(module), mlp_meta())
    wanted = [httpclient.InferRequestedOutput("y", class_count=1)]  # binary by default
    result = await _infer(gateway, "/v2/models/plain/versions/1/infer", wanted)
    logits = expected(module, ROWS.tolist())
    assert _decoded(result.as_numpy("y")) == [_strings(row, 1, None, soft=False) for row in logits]


async def test_a_class_count_past_the_classes_answers_every_class(gateway: Gateway) -> None:
    """Triton cuts k to the output's elements (shape [N, min(k, C)]); so does maas."""
    module = tiny_mlp(seed=3)
    meta = mlp_meta(postprocess={"output": "y", "labels": LABELS})
    await gateway.deploy("clf", torchscript_bytes(module), meta)
    wanted = [httpclient.InferRequestedOutput("y", binary_data=False, class_count=10)]
    result = await _infer(gateway, "/v2/models/clf/infer", wanted)
    assert result.get_output("y")["shape"] == [3, 3]
    logits = expected(module, ROWS.tolist())
    assert _decoded(result.as_numpy("y")) == [_strings(r, 3, LABELS, soft=False) for r in logits]


async def test_classification_and_values_in_one_answer(gateway: Gateway) -> None:
    module = tiny_mlp(seed=4)
    await gateway.deploy("clf", torchscript_bytes(module), mlp_meta())
    body = {
        "inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": ROWS[0].tolist()}],
        "outputs": [{"name": "y", "parameters": {"classification": 3}}],
    }
    response = await gateway.client.post("/v2/models/clf/infer", json=body)
    assert response.status_code == 200, response.text
    (output,) = response.json()["outputs"]
    assert output["datatype"] == "BYTES"
    assert output["shape"] == [1, 3]
    assert output["data"] == _strings(expected(module, ROWS[:1].tolist())[0], 3, None, False)
    plain = await gateway.client.post("/v2/models/clf/infer", json={"inputs": body["inputs"]})
    assert plain.json()["outputs"][0]["datatype"] == "FP32"  # only when asked


@pytest.mark.parametrize("k", [0, -1, 2.5, "2", True, None, [2]])
async def test_a_bad_class_count_is_a_400_before_anything_runs(gateway: Gateway, k: Any) -> None:
    await gateway.deploy("clf", torchscript_bytes(tiny_mlp()), mlp_meta())
    body = {
        "inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": ROWS[0].tolist()}],
        "outputs": [{"name": "y", "parameters": {"classification": k}}],
    }
    response = await gateway.client.post("/v2/models/clf/infer", json=body)
    if k is None:  # null is no classification asked, as an absent parameter
        assert response.status_code == 200, response.text
        return
    assert response.status_code == 400, response.text
    assert response.json() == {
        "error": "output 'y': parameters.classification must be a positive integer (how many "
        "classes to answer per instance)"
    }
    _, samples = parse((await gateway.client.get("/metrics")).text)
    forwards = value(samples, "maas_batch_size_count", model="clf", version="1", worker="inprocess")
    assert forwards == 0


async def test_server_metadata_lists_the_extension(gateway: Gateway) -> None:
    assert "classification" in (await gateway.client.get("/v2")).json()["extensions"]


def test_a_bool_output_has_no_class_results() -> None:
    with pytest.raises(BadRequest, match="not available for a BOOL output"):
        class_count(2, TensorSpec("mask", "bool", (3,)))
    assert class_count(None, TensorSpec("mask", "bool", (3,))) == 0
