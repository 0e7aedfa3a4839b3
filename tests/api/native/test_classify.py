"""`POST /v1/models/{ref}:classify` through an in-process gateway on a real model: every ref
form, the version's top_k and softmax, a version without postprocess refused before anything
runs, and the client's mistakes."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import orjson
import pytest

from maas.api.inference_schemas import Classification
from maas.api.native.classify import ClassifyCodec
from maas.api.native.codec import NativeCodec
from maas.serving.head import RequestHead
from maas.types import PostProcess, TensorSpec
from support.inprocess_gateway import Gateway
from support.model_files import expected, mlp_meta, tiny_mlp, torchscript_bytes
from support.prometheus import parse, value
from support.sample_records import version_record

ROWS = [[0.1, 0.2, 0.3, 0.4], [1.0, -1.0, 0.5, 2.0], [3.0, 0.0, 0.0, -3.0]]
LABELS = ["cat", "dog", "bird"]


def _meta(**post: Any) -> dict[str, Any]:
    return mlp_meta(postprocess={"output": "y", "labels": LABELS, **post})


def _softmax(logits: list[float]) -> np.ndarray:
    e = np.exp(np.array(logits, np.float64) - max(logits))
    return e / e.sum()


def _want(logits: list[float], k: int, soft: bool) -> list[tuple[str, float]]:
    scores = _softmax(logits) if soft else np.array(logits)
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))[:k]
    return [(LABELS[i], float(scores[i])) for i in order]


def _check(result: list[Any], module: Any, rows: list[list[float]], k: int, soft: bool) -> None:
    assert len(result) == len(rows)
    for got, logits in zip(result, expected(module, rows), strict=True):
        want = _want(logits, k, soft)
        assert [label for label, _ in got] == [label for label, _ in want]
        assert [score for _, score in got] == pytest.approx([s for _, s in want], abs=1e-5)


async def _batches(gateway: Gateway, model: str, version: int) -> float | None:
    _, samples = parse((await gateway.client.get("/metrics")).text)
    return value(
        samples, "maas_batch_size_count", model=model, version=str(version), worker="inprocess"
    )


async def test_every_ref_form_classifies_on_the_version_it_names(gateway: Gateway) -> None:
    first, second = tiny_mlp(seed=1), tiny_mlp(seed=2)
    v1 = await gateway.deploy("clf", torchscript_bytes(first), _meta(softmax=True, top_k=2))
    v2 = await gateway.deploy(
        "clf", torchscript_bytes(second), _meta(softmax=False, top_k=3), alias="staging"
    )
    cases = {
        "/v1/models/clf:classify": (v1, first, 2, True),
        "/v1/models/clf@production:classify": (v1, first, 2, True),
        f"/v1/models/clf@{v1}:classify": (v1, first, 2, True),
        f"/v1/models/clf@{v2}:classify": (v2, second, 3, False),
        f"/v1/models/clf/versions/{v1}:classify": (v1, first, 2, True),
        "/v1/models/clf/labels/staging:classify": (v2, second, 3, False),
        "/v1/models/clf@staging:classify": (v2, second, 3, False),
    }
    for path, (version, module, k, soft) in cases.items():
        response = await gateway.predict(path, {"instances": ROWS})
        assert response.status_code == 200, (path, response.text)
        body = response.json()
        assert (body["model"], body["version"]) == ("clf", version), path
        assert list(body) == ["result", "model", "version"]
        Classification.model_validate_json(response.content, strict=True)  # as documented
        _check(body["result"], module, ROWS, k, soft)
        assert response.headers["X-Model-Version"] == str(version)


async def test_softmax_scores_are_probabilities_and_raw_ones_are_the_logits(
    gateway: Gateway,
) -> None:
    module = tiny_mlp(seed=3)
    await gateway.deploy("soft", torchscript_bytes(module), _meta(softmax=True, top_k=3))
    await gateway.deploy("raw", torchscript_bytes(module), _meta(top_k=3))
    soft = (await gateway.predict("/v1/models/soft:classify", {"instances": ROWS})).json()
    raw = (await gateway.predict("/v1/models/raw:classify", {"instances": ROWS})).json()
    for row in soft["result"]:
        assert sum(score for _, score in row) == pytest.approx(1.0, abs=1e-5)
        assert all(0 <= score <= 1 for _, score in row)
    _check(soft["result"], module, ROWS, 3, True)
    _check(raw["result"], module, ROWS, 3, False)
    predicted = (await gateway.predict("/v1/models/raw:predict", {"instances": ROWS})).json()
    for row, logits in zip(raw["result"], predicted["predictions"], strict=True):
        assert sorted(score for _, score in row) == pytest.approx(sorted(logits))


async def test_top_k_cut_to_the_classes_and_one_best_class(gateway: Gateway) -> None:
    module = tiny_mlp(seed=4)
    await gateway.deploy("wide", torchscript_bytes(module), _meta(top_k=50))
    await gateway.deploy("one", torchscript_bytes(module), _meta(top_k=1))
    wide = (await gateway.predict("/v1/models/wide:classify", {"instances": ROWS})).json()
    assert [len(row) for row in wide["result"]] == [3, 3, 3]
    one = (await gateway.predict("/v1/models/one:classify", {"instances": ROWS})).json()
    _check(one["result"], module, ROWS, 1, False)


async def test_the_default_top_k_is_five_and_many_instances_keep_their_order(
    gateway: Gateway,
) -> None:
    module = tiny_mlp(seed=5)
    await gateway.deploy("many", torchscript_bytes(module), _meta())  # max_batch_size 8
    rows = [[float(i), float(-i), i / 10, 1.0] for i in range(21)]
    response = await gateway.predict("/v1/models/many:classify", {"instances": rows})
    assert response.status_code == 200, response.text
    _check(response.json()["result"], module, rows, 3, False)


async def test_a_version_without_postprocess_is_refused_before_it_runs(gateway: Gateway) -> None:
    version = await gateway.deploy("plain", torchscript_bytes(tiny_mlp()), mlp_meta())
    for body in ({"instances": ROWS}, b"{not json"):
        response = await gateway.predict("/v1/models/plain:classify", body)
        assert response.status_code == 400, response.text
        error = response.json()["error"]
        assert error["code"] == "no_postprocess"
        assert error["message"].startswith(f"plain@{version} declares no postprocess")
        assert ":predict" in error["message"]
    assert await _batches(gateway, "plain", version) == 0  # nothing reached the worker
    assert (await gateway.predict("/v1/models/plain:predict", {"instances": ROWS})).is_success


async def test_unknown_refs_and_routes_are_404s(gateway: Gateway) -> None:
    await gateway.deploy("clf", torchscript_bytes(tiny_mlp()), _meta())
    cases = {
        "/v1/models/ghost:classify": "model_not_found",
        "/v1/models/clf@9:classify": "version_not_found",
        "/v1/models/clf/labels/nope:classify": "alias_not_found",
        "/v1/models/clf/extra/1:classify": "not_found",
    }
    for path, code in cases.items():
        response = await gateway.predict(path, {"instances": ROWS})
        assert response.status_code == 404, (path, response.text)
        assert response.json()["error"]["code"] == code, path
    message = (await gateway.predict("/v1/models/clf/x/1:classify", {})).json()["error"]
    assert "/v1/models/NAME/labels/ALIAS:classify" in message["message"]
    bad_version = await gateway.predict("/v1/models/clf/versions/0:classify", {"instances": ROWS})
    assert bad_version.status_code == 400
    asked_with_get = await gateway.client.get("/v1/models/clf:classify")
    assert asked_with_get.status_code == 405
    assert asked_with_get.headers["Allow"] == "POST"


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (b"{not json", 400, "bad_request"),
        ({"inputs": ROWS}, 400, "bad_request"),
        ({"instances": []}, 400, "bad_request"),
        ({"instances": [[1.0, 2.0]]}, 422, "invalid_input"),
        ({"instances": [["a", "b", "c", "d"]]}, 422, "invalid_input"),
    ],
)
async def test_a_bad_body_is_the_clients_mistake(
    gateway: Gateway, body: Any, status: int, code: str
) -> None:
    version = await gateway.deploy("clf", torchscript_bytes(tiny_mlp()), _meta())
    response = await gateway.predict("/v1/models/clf:classify", body)
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code
    assert await _batches(gateway, "clf", version) == 0


async def test_classify_requests_are_counted_under_the_native_protocol(gateway: Gateway) -> None:
    await gateway.deploy("clf", torchscript_bytes(tiny_mlp()), _meta())
    await gateway.deploy("plain", torchscript_bytes(tiny_mlp()), mlp_meta())
    for _ in range(2):
        assert (await gateway.predict("/v1/models/clf:classify", {"instances": ROWS})).is_success
    await gateway.predict("/v1/models/plain:classify", {"instances": ROWS})
    await gateway.predict("/v1/models/ghost:classify", {"instances": ROWS})
    _, samples = parse((await gateway.client.get("/metrics")).text)
    assert (
        value(samples, "maas_requests_total", model="clf", version="1", protocol="v1", code="200")
        == 2
    )
    assert (
        value(samples, "maas_requests_total", model="plain", version="1", protocol="v1", code="400")
        == 1
    )
    assert (
        value(
            samples, "maas_requests_total", model="_unknown", version="_", protocol="v1", code="404"
        )
        == 1
    )
    assert value(samples, "maas_batch_size_sum", model="clf", version="1", worker="inprocess") == 6


def test_instances_grouped_by_shape_are_answered_in_request_order() -> None:
    """Instances of a free-axis input batch by shape; the answer follows the request."""
    plain = version_record(
        TensorSpec("x", "float32", (-1,)), outputs=(TensorSpec("y", "float32", (3,)),)
    )
    post = PostProcess(output="y", labels=("a", "b", "c"), top_k=1)
    record = dataclasses.replace(plain, postprocess=post)
    body = b'{"instances": [[1.0], [1.0, 2.0], [2.0]]}'
    codec = ClassifyCodec()
    request = codec.decode(body, RequestHead([]), record)
    assert [len(group[0]) for group in request.groups] == [2, 1]  # [1.0] and [2.0] together
    assert len(NativeCodec().decode(body, RequestHead([]), record).groups) == 2  # as :predict
    outputs = [
        [np.array([[0.9, 0.0, 0.1], [0.8, 0.1, 0.1]], np.float32)],  # instances 0 and 2
        [np.array([[0.0, 0.1, 0.9]], np.float32)],  # instance 1
    ]
    reply = codec.encode(request, outputs, record)
    assert orjson.loads(reply.body)["result"] == [[["a", 0.9]], [["c", 0.9]], [["a", 0.8]]]
