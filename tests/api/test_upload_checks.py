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
from support.model_files import export_bytes, failing_meta, mlp_meta, tiny_mlp, torchscript_bytes


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
    ],
    ids=["text", "state_dict", "pickled_module", "script_as_export", "export_as_script", "cut"],
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


async def test_wait_answers_once_the_version_is_ready(gateway: Gateway) -> None:
    answer = await _upload(
        gateway, export_bytes(tiny_mlp()), mlp_meta("torch_export"), "?wait=true&create_model=true"
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
