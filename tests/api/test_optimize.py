"""int8 versions: `POST /admin/models/{name}/versions/{version}/optimize` against a real ONNX
parent, quantised and measured by the real child process (`maas.worker.optimize`), loaded by
the in-process worker; and the agreement bound on aliasing a derived version."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import torch

from support.inprocess_gateway import ADMIN, Gateway
from support.model_files import expected, mlp_meta, onnx_bytes, tiny_mlp, torchscript_bytes

ROWS = [[1.0, 2.0, 3.0, 4.0], [-1.0, 0.5, 2.0, -3.0], [0.1, -0.2, 0.3, 0.4]]
POSITIVE = [[float(i + 1), 0.5 * i + 1, 2.0, 0.25 * i + 0.5] for i in range(12)]


def near_tie() -> torch.nn.Module:
    """An MLP of one layer whose first two classes differ by less than an int8 step of its
    weights: the parent answers class 1 for every positive input, its int8 twin (both rows
    quantised alike, so a tie) class 0. Their top-1 agreement on positive inputs is 0."""
    layer = torch.nn.Linear(4, 3)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[1.0] * 4, [1.0001] * 4, [-1.0] * 4]))
        layer.bias.zero_()
    return torch.nn.Sequential(layer).eval()


def golden_meta(module: torch.nn.Module, **extra: Any) -> dict[str, Any]:
    return mlp_meta(
        "onnx", golden=[{"inputs": ROWS, "outputs": expected(module, ROWS), "atol": 1e-4}], **extra
    )


async def _optimize(
    gateway: Gateway, name: str, version: int, body: dict[str, Any], **query: str
) -> httpx.Response:
    return await gateway.client.post(
        f"/admin/models/{name}/versions/{version}/optimize",
        json=body,
        params=query,
        headers=ADMIN,
    )


async def _events(gateway: Gateway, action: str) -> list[dict[str, Any]]:
    response = await gateway.client.get(
        "/admin/events", params={"model": "mlp", "action": action}, headers=ADMIN
    )
    assert response.status_code == 200, response.text
    events: list[dict[str, Any]] = response.json()["events"]
    return events


async def test_optimize_derives_a_measured_int8_version(gateway: Gateway) -> None:
    module = tiny_mlp()
    await gateway.deploy("mlp", onnx_bytes(module), golden_meta(module, tags={"team": "ml"}))
    instances = [[float(i % 5) - 2, 0.5 * i, 1.0, -0.25 * i] for i in range(20)]
    labels = [int(row.index(max(row))) for row in expected(module, instances)]
    holdout = {"instances": instances, "labels": labels}
    body = {"method": "int8_dynamic", "min_agreement": 0.5, "holdout": holdout}
    response = await _optimize(gateway, "mlp", 1, body)
    assert response.status_code == 201, response.text
    version = response.json()
    assert version["version"] == 2
    assert version["status"] == "loading"
    assert version["format"] == "onnx"
    assert version["derived_from"] == {"version": 1, "method": "int8_dynamic", "min_agreement": 0.5}
    assert version["tags"] == {"team": "ml"}
    metrics = version["metrics"]
    assert 0 <= metrics["agreement"] <= 1
    assert metrics["max_abs_diff"] >= 0
    assert metrics["size_bytes"] > 0
    assert metrics["parent_size_bytes"] > 0
    assert metrics["holdout_count"] == 20
    assert metrics["golden_count"] == len(ROWS)
    assert metrics["parent_accuracy"] == 1.0  # the labels are the parent's own answers
    assert 0 <= metrics["accuracy"] <= 1
    for figure in ("latency_ms_b1", "latency_ms_b32", "parent_latency_ms_b1"):
        assert metrics[figure] > 0
    settled = await gateway.wait_settled("mlp", 2)
    assert settled["status"] == "ready", settled  # its golden examples are its own answers
    answered = await gateway.predict("/v1/models/mlp@2:predict", {"instances": ROWS})
    assert answered.status_code == 200, answered.text
    for got, want in zip(answered.json()["predictions"], expected(module, ROWS), strict=True):
        assert got == pytest.approx(want, abs=0.1)
    created = await _events(gateway, "version.create")
    assert created[0]["target"] == "mlp@2"
    assert created[0]["key"] == "bootstrap-admin"


async def test_optimize_with_wait_answers_the_loaded_version(gateway: Gateway) -> None:
    module = tiny_mlp(3)
    await gateway.deploy("mlp", onnx_bytes(module), golden_meta(module))
    response = await _optimize(gateway, "mlp", 1, {"method": "int8_dynamic"}, wait="true")
    assert response.status_code == 201, response.text
    version = response.json()
    assert version["status"] == "ready"
    assert version["derived_from"]["min_agreement"] == 0.99
    assert version["metrics"]["holdout_count"] == 0
    assert "accuracy" not in version["metrics"]


async def test_only_onnx_versions_can_be_optimised(gateway: Gateway) -> None:
    await gateway.deploy("mlp", torchscript_bytes(tiny_mlp()), mlp_meta())
    response = await _optimize(gateway, "mlp", 1, {"method": "int8_dynamic"})
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_artifact"
    assert "only ONNX versions can be optimised" in error["message"]


async def test_bad_requests_are_refused_before_any_work(gateway: Gateway) -> None:
    module = tiny_mlp()
    await gateway.deploy("mlp", onnx_bytes(module), golden_meta(module))
    cases: list[tuple[dict[str, Any], int, str]] = [
        ({"method": "fp16"}, 422, "invalid_request"),
        ({}, 422, "invalid_request"),
        ({"method": "int8_dynamic", "min_agreement": 1.5}, 422, "invalid_request"),
        ({"method": "int8_dynamic", "surprise": 1}, 422, "invalid_request"),
        ({"method": "int8_dynamic", "holdout": {"instances": []}}, 422, "invalid_request"),
        ({"method": "int8_dynamic", "holdout": {"instances": [[1.0, 2.0]]}}, 422, "invalid_input"),
        (
            {"method": "int8_dynamic", "holdout": {"instances": ROWS, "labels": [0, 1]}},
            422,
            "invalid_input",
        ),
        (
            {"method": "int8_dynamic", "holdout": {"instances": ROWS, "labels": [0, 1, 7]}},
            422,
            "invalid_input",
        ),
        (
            {"method": "int8_dynamic", "holdout": {"instances": ROWS, "labels": [0, 1, "cat"]}},
            422,
            "invalid_input",
        ),
    ]
    for body, status, code in cases:
        response = await _optimize(gateway, "mlp", 1, body)
        assert response.status_code == status, (body, response.text)
        assert response.json()["error"]["code"] == code, (body, response.text)
    wrong_shape = await _optimize(
        gateway, "mlp", 1, {"method": "int8_dynamic", "holdout": {"instances": [[1.0, 2.0]]}}
    )
    assert "holdout: " in wrong_shape.json()["error"]["message"]
    counts = await _optimize(
        gateway, "mlp", 1, {"method": "int8_dynamic", "holdout": {"instances": ROWS, "labels": [0]}}
    )
    assert "1 label(s) for 3 instance(s)" in counts.json()["error"]["message"]
    missing = await _optimize(gateway, "mlp", 9, {"method": "int8_dynamic"})
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "version_not_found"
    no_model = await _optimize(gateway, "nope", 1, {"method": "int8_dynamic"})
    assert no_model.status_code == 404
    versions = (await gateway.client.get("/admin/models/mlp", headers=ADMIN)).json()["versions"]
    assert [v["version"] for v in versions] == [1]  # nothing was registered


async def test_nothing_to_measure_on_is_refused(gateway: Gateway) -> None:
    await gateway.deploy("mlp", onnx_bytes(tiny_mlp()), mlp_meta("onnx"))
    response = await _optimize(gateway, "mlp", 1, {"method": "int8_dynamic"})
    assert response.status_code == 422, response.text
    assert "no golden examples" in response.json()["error"]["message"]
    holdout = {"method": "int8_dynamic", "holdout": {"instances": ROWS}}
    assert (await _optimize(gateway, "mlp", 1, holdout)).status_code == 201


async def test_a_derived_version_below_its_bound_is_not_aliased_unless_forced(
    gateway: Gateway,
) -> None:
    await gateway.deploy("mlp", onnx_bytes(near_tie()), mlp_meta("onnx"))
    body = {"method": "int8_dynamic", "min_agreement": 0.9, "holdout": {"instances": POSITIVE}}
    response = await _optimize(gateway, "mlp", 1, body, wait="true")
    assert response.status_code == 201, response.text
    derived = response.json()
    assert derived["status"] == "ready", derived
    assert derived["metrics"]["agreement"] == 0.0

    promote = await gateway.client.post(
        "/admin/models/mlp/promote", json={"version": 2}, headers=ADMIN
    )
    assert promote.status_code == 409, promote.text
    error = promote.json()["error"]
    assert error["code"] == "below_agreement"
    assert "0.00%" in error["message"]
    assert "90.00%" in error["message"]
    assert '"force": true' in error["message"]
    canary = {"routes": [{"version": 1, "weight": 90}, {"version": 2, "weight": 10}]}
    split = await gateway.client.put(
        "/admin/models/mlp/aliases/production", json=canary, headers=ADMIN
    )
    assert split.status_code == 409
    assert split.json()["error"]["code"] == "below_agreement"
    other = await gateway.client.put(
        "/admin/models/mlp/aliases/staging", json={"version": 2}, headers=ADMIN
    )
    assert other.status_code == 409

    forced = await gateway.client.put(
        "/admin/models/mlp/aliases/production", json={**canary, "force": True}, headers=ADMIN
    )
    assert forced.status_code == 200, forced.text
    # Less of the traffic for it needs no force; more does.
    less = {"routes": [{"version": 1, "weight": 95}, {"version": 2, "weight": 5}]}
    shrink = await gateway.client.put(
        "/admin/models/mlp/aliases/production", json=less, headers=ADMIN
    )
    assert shrink.status_code == 200, shrink.text
    refused = await gateway.client.post(
        "/admin/models/mlp/promote", json={"version": 2}, headers=ADMIN
    )
    assert refused.status_code == 409
    promoted = await gateway.client.post(
        "/admin/models/mlp/promote", json={"version": 2, "force": True}, headers=ADMIN
    )
    assert promoted.status_code == 200, promoted.text
    assert promoted.json()["routes"] == [{"version": 2, "weight": 100}]
    forced_events = await _events(gateway, "alias.force")
    assert [e["target"] for e in forced_events] == ["mlp/production", "mlp/production"]
    assert all(e["key"] == "bootstrap-admin" for e in forced_events)
    assert forced_events[0]["after"] == {
        "version": 2,
        "parent": 1,
        "agreement": 0.0,
        "min_agreement": 0.9,
    }

    back = await gateway.client.post(
        "/admin/models/mlp/rollback", json={"to_version": 1}, headers=ADMIN
    )
    assert back.status_code == 200, back.text
    undo = await gateway.client.post("/admin/models/mlp/rollback", json={}, headers=ADMIN)
    assert undo.status_code == 200, undo.text  # back onto 2, below its bound: never refused
    assert undo.json()["routes"] == [{"version": 2, "weight": 100}]


async def test_the_first_ready_rule_skips_a_version_below_its_bound(gateway: Gateway) -> None:
    """A model whose only versions are an unloaded parent and its derived versions: the one
    below its bound does not become production when ready, one within its bound does."""
    created = await gateway.create_model("mlp")
    assert created.status_code == 201
    parent = await gateway.upload("mlp", onnx_bytes(near_tie()), mlp_meta("onnx", load=False))
    assert parent.status_code == 201, parent.text
    holdout = {"instances": POSITIVE}
    low = await _optimize(gateway, "mlp", 1, {"method": "int8_dynamic", "holdout": holdout})
    assert low.status_code == 201, low.text
    assert (await gateway.wait_settled("mlp", 2))["status"] == "ready"
    model = (await gateway.client.get("/admin/models/mlp", headers=ADMIN)).json()
    assert model["aliases"] == []
    bound_met = {"method": "int8_dynamic", "min_agreement": 0.0, "holdout": holdout}
    ok = await _optimize(gateway, "mlp", 1, bound_met)
    assert ok.status_code == 201, ok.text
    assert (await gateway.wait_settled("mlp", 3))["status"] == "ready"
    model = (await gateway.client.get("/admin/models/mlp", headers=ADMIN)).json()
    assert [(a["alias"], a["routes"]) for a in model["aliases"]] == [
        ("production", [{"version": 3, "weight": 100}])
    ]


async def test_a_graph_with_nothing_to_quantise_is_a_clear_422(gateway: Gateway) -> None:
    """An ONNX model without weights (one Relu): dynamic quantisation leaves it as it is."""
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "relu",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    meta = mlp_meta("onnx")
    meta["outputs"][0]["shape"] = [4]
    await gateway.deploy("mlp", model.SerializeToString(), meta)
    response = await _optimize(
        gateway, "mlp", 1, {"method": "int8_dynamic", "holdout": {"instances": ROWS}}
    )
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_artifact"
    assert "cannot be made int8" in error["message"]
    assert "nothing" in error["message"]
