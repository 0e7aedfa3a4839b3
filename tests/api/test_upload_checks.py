"""Uploads are refused at the door when the file cannot be a version, and with `?wait=true` a
worker's trial load decides the answer: no version number, no file and no model is left behind
by a refusal, and the message says what the file is and what to do."""

from __future__ import annotations

import io
import json
from typing import Any

import httpx
import pytest
import torch

from support.inprocess_gateway import ADMIN, Gateway
from support.model_files import (
    expected,
    export_bytes,
    failing_meta,
    mlp_meta,
    onnx_bytes,
    tiny_mlp,
    torchscript_bytes,
)


def _state_dict_bytes(whole_module: bool = False) -> bytes:
    buffer = io.BytesIO()
    torch.save(tiny_mlp() if whole_module else tiny_mlp().state_dict(), buffer)
    return buffer.getvalue()


async def _upload(
    gateway: Gateway, artifact: bytes, meta: dict[str, Any], query: str = "", name: str = "mlp"
) -> httpx.Response:
    return await gateway.client.post(
        f"/admin/models/{name}/versions{query}",
        files={"file": ("model.pt", artifact, "application/octet-stream")},
        data={"meta": json.dumps(meta)},
        headers=ADMIN,
    )


def _stored_files(gateway: Gateway) -> list[str]:
    return sorted(
        p.name for p in (gateway.services.store.root / "sha256").rglob("*") if p.is_file()
    )


@pytest.mark.parametrize(
    ("artifact", "fmt", "says"),
    [
        (b"hello, I am a text file\n", "torchscript", "a text file starting with 'hello, I am"),
        (_state_dict_bytes(), "torchscript", "save the model as a program instead"),
        (_state_dict_bytes(whole_module=True), "torch_export", "torch.jit.script(model)"),
        (torchscript_bytes(tiny_mlp()), "torch_export", 'set "format": "torchscript"'),
        (export_bytes(tiny_mlp()), "torchscript", 'set "format": "torch_export"'),
        (torchscript_bytes(tiny_mlp())[:2000], "torchscript", "a zip archive that is damaged"),
        (onnx_bytes(tiny_mlp()), "torchscript", 'set "format": "onnx"'),
        (export_bytes(tiny_mlp()), "onnx", 'set "format": "torch_export"'),
        (b"hello, I am a text file\n", "onnx", "the file is not an ONNX model: a text file"),
        (_state_dict_bytes(), "onnx", "torch.onnx.export(model, example, 'model.onnx'"),
    ],
    ids=[
        "text",
        "state_dict",
        "pickled_module",
        "script_as_export",
        "export_as_script",
        "cut",
        "onnx_as_script",
        "export_as_onnx",
        "text_as_onnx",
        "state_dict_as_onnx",
    ],
)
async def test_files_that_cannot_load_are_refused_before_a_version_exists(
    gateway: Gateway, artifact: bytes, fmt: str, says: str
) -> None:
    await gateway.create_model("mlp")
    refused = await _upload(gateway, artifact, mlp_meta(fmt))
    assert refused.status_code == 422, refused.text
    error = refused.json()["error"]
    assert error["code"] == "invalid_artifact"
    assert says in error["message"]
    assert "log" not in error["message"]  # never points at what the client cannot see
    assert _stored_files(gateway) == []
    good = await _upload(gateway, torchscript_bytes(tiny_mlp()), mlp_meta(load=False))
    assert good.json()["version"] == 1  # the refusal burned no number


@pytest.mark.parametrize(("fmt", "build"), [("torch_export", export_bytes), ("onnx", onnx_bytes)])
async def test_wait_answers_once_the_version_is_ready(
    gateway: Gateway, fmt: str, build: Any
) -> None:
    answer = await _upload(
        gateway, build(tiny_mlp()), mlp_meta(fmt), "?wait=true&create_model=true"
    )
    assert answer.status_code == 201, answer.text
    body = answer.json()
    assert (body["model"], body["version"], body["status"]) == ("mlp", 1, "ready")
    promoted = await gateway.client.post(
        "/admin/models/mlp/promote", json={"version": 1}, headers=ADMIN
    )
    assert promoted.status_code == 200
    served = await gateway.predict("/v1/models/mlp:predict", {"instances": [[1, 2, 3, 4]]})
    assert served.status_code == 200


def _external_data() -> bytes:
    """tiny_mlp as ONNX with its weights marked as kept in a file beside it."""
    import onnx
    from onnx.external_data_helper import convert_model_to_external_data

    model = onnx.load_model_from_string(onnx_bytes(tiny_mlp()))
    convert_model_to_external_data(model, location="model.onnx.data", size_threshold=0)
    return model.SerializeToString()


def _onnx_meta(batch: int = 8, **output: Any) -> dict[str, Any]:
    meta = mlp_meta("onnx")
    meta["outputs"][0].update(output)
    meta["batching"]["max_batch_size"] = batch
    return meta


@pytest.mark.parametrize(
    ("artifact", "meta", "says"),
    [
        (
            onnx_bytes(tiny_mlp(), input_name="input"),
            _onnx_meta(),
            "the ONNX graph has input 'input', which meta does not declare: declare every input "
            "of the graph ('input'), in the order the model takes them",
        ),
        (
            onnx_bytes(tiny_mlp()),
            _onnx_meta(name="logits"),
            "meta declares output 'logits' but the ONNX graph has no output of that name; its "
            "outputs are 'y'",
        ),
        (
            onnx_bytes(tiny_mlp()),
            _onnx_meta(dtype="int64"),
            "output 'y' is float32 in the ONNX graph, meta declares int64",
        ),
        (
            onnx_bytes(tiny_mlp()),
            _onnx_meta(shape=[3, 1]),
            "output 'y' has 2 axes in the ONNX graph ([batch, 3], the batch axis first), meta "
            "declares [3, 1] per instance, which makes 3 with the batch axis",
        ),
        (
            onnx_bytes(tiny_mlp()),
            _onnx_meta(shape=[10]),
            "output 'y' has shape [batch, 3] in the ONNX graph, meta declares [10] per "
            "instance: axis 1 is 3 in the graph, 10 in meta",
        ),
        (
            onnx_bytes(tiny_mlp(), batch=1),
            _onnx_meta(),
            "input 'x' has a fixed batch axis of 1 in the ONNX graph ([1, 4]), but maas runs "
            "batches of 1 to batching.max_batch_size (8) instances",
        ),
        (
            _external_data(),
            _onnx_meta(),
            "the ONNX model keeps its weights in external data files ('model.onnx.data')",
        ),
        (
            onnx_bytes(tiny_mlp())[:60],
            _onnx_meta(),
            "the file does not parse as an ONNX model (DecodeError: ",
        ),
    ],
    ids=["input_name", "output_name", "dtype", "rank", "axis", "fixed_batch", "external", "cut"],
)
async def test_an_onnx_graph_that_disagrees_with_meta_is_refused_saying_which(
    gateway: Gateway, artifact: bytes, meta: dict[str, Any], says: str
) -> None:
    await gateway.create_model("mlp")
    refused = await _upload(gateway, artifact, meta)
    assert refused.status_code == 422, refused.text
    error = refused.json()["error"]
    assert error["code"] == "invalid_artifact"
    assert error["message"].startswith(says), error["message"]
    assert _stored_files(gateway) == []


async def test_an_onnx_graph_that_fits_meta_is_served(gateway: Gateway) -> None:
    module = tiny_mlp(seed=6)
    rows = [[1.0, 2.0, 3.0, 4.0], [0.5, -0.5, 0.0, 1.0]]
    meta = _onnx_meta(batch=1)  # a fixed batch axis of 1 fits a version that runs one at a time
    meta["golden"] = [{"inputs": rows, "outputs": expected(module, rows)}]
    answer = await _upload(
        gateway, onnx_bytes(module, batch=1), meta, "?wait=true&create_model=true"
    )
    assert answer.status_code == 201, answer.text
    assert (answer.json()["format"], answer.json()["status"]) == ("onnx", "ready")
    served = await gateway.predict("/v1/models/mlp@1:predict", {"instances": rows})
    assert served.status_code == 200, served.text
    for got, want in zip(served.json()["predictions"], expected(module, rows), strict=True):
        assert got == pytest.approx(want, abs=1e-5)


def _wide_meta(**changes: Any) -> dict[str, Any]:
    meta = mlp_meta()
    meta["inputs"][0].update(changes)
    return meta


@pytest.mark.parametrize(
    ("meta", "says"),
    [
        (
            _wide_meta(shape=[7]),
            "input width mismatch: the model expects 4 values on the last axis of an instance, "
            "meta's inputs ('x' [7]) gave it 7",
        ),
        (_wide_meta(shape=[-1, 4]), "shapes are per instance, without the batch axis"),
        (failing_meta(), "output 'y' has shape [3] per instance, signature declares [7]"),
        (
            mlp_meta(golden=[{"inputs": [[1, 2, 3, 4]], "outputs": [[9.0, 9.0, 9.0]]}]),
            "golden example 0",
        ),
    ],
    ids=["width", "batch_axis_in_shape", "output_shape", "golden"],
)
async def test_wait_refuses_a_version_whose_trial_load_fails(
    gateway: Gateway, meta: dict[str, Any], says: str
) -> None:
    refused = await _upload(
        gateway, torchscript_bytes(tiny_mlp()), meta, "?wait=true&create_model=true"
    )
    assert refused.status_code == 422, refused.text
    error = refused.json()["error"]
    assert error["code"] == "model_load_error"
    assert says in error["message"]
    assert "TorchScript interpreter" not in error["message"]  # the cause, not torch's wrapper
    # Nothing is left: no model (it was to be created by this upload), no file.
    assert (await gateway.client.get("/admin/models/mlp", headers=ADMIN)).status_code == 404
    assert _stored_files(gateway) == []


async def test_without_wait_a_load_failure_is_kept_with_its_cause(gateway: Gateway) -> None:
    await gateway.create_model("mlp")
    accepted = await _upload(gateway, torchscript_bytes(tiny_mlp()), _wide_meta(shape=[7]))
    assert accepted.status_code == 201
    assert accepted.json()["status"] == "loading"
    settled = await gateway.wait_settled("mlp", accepted.json()["version"])
    assert settled["status"] == "failed"
    assert "mat1 and mat2 shapes cannot be multiplied" in settled["load_error"]
    assert "the model expects 4 values" in settled["load_error"]


async def test_unknown_model_is_404_unless_the_upload_may_create_it(gateway: Gateway) -> None:
    missing = await _upload(gateway, torchscript_bytes(tiny_mlp()), mlp_meta(), name="nope")
    assert missing.status_code == 404
    bad_name = await _upload(
        gateway, torchscript_bytes(tiny_mlp()), mlp_meta(), "?create_model=true", name="Bad!"
    )
    assert bad_name.status_code == 400
    created = await _upload(
        gateway, torchscript_bytes(tiny_mlp()), mlp_meta(load=False), "?create_model=true"
    )
    assert created.status_code == 201
    events = (await gateway.client.get("/admin/events?model=mlp", headers=ADMIN)).json()
    assert [e["action"] for e in events["events"]] == ["version.create", "model.create"]
