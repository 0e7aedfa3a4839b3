"""Messages that name the real problem (issue 27): a body that is not JSON says what it looks
like and what the route takes, dtypes in the contract's words, a load error with the exception
that caused it, an ONNX file named as one, an unknown verb, Triton's statistics routes, a
version that cannot serve saying why and what to do, and a batch axis hinted at in a shape."""

from __future__ import annotations

import dataclasses
import gzip
import json
import tempfile
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import torch

from support.inprocess_gateway import ADMIN, Gateway
from support.model_files import IN, SlowMLP, failing_meta, mlp_meta, tiny_mlp, torchscript_bytes

PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(64)
ROWS = np.array([[0.1, 0.2, 0.3, 0.4], [1.0, -1.0, 0.5, 2.0]], np.float32)
TAKES = ':predict takes {"instances": [...]} as JSON'
NEEDS_LENGTH = (
    "a binary tensor request needs the Inference-Header-Content-Length header giving the JSON "
    "header's length"
)


@pytest.fixture
async def served(gateway: Gateway) -> Gateway:
    await gateway.deploy("mlp", torchscript_bytes(tiny_mlp()), mlp_meta())
    return gateway


def _native_error(response: httpx.Response, status: int, code: str) -> str:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code, error
    message: str = error["message"]
    return message


def _v2_error(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}, body
    assert isinstance(body["error"], str), body
    message: str = body["error"]
    return message


async def _upload(
    gateway: Gateway, artifact: bytes, meta: dict[str, Any], query: str = ""
) -> httpx.Response:
    return await gateway.client.post(
        f"/admin/models/mlp/versions{query}",
        files={"file": ("model.bin", artifact, "application/octet-stream")},
        data={"meta": json.dumps(meta)},
        headers=ADMIN,
    )


# 1. A body that is neither JSON nor a binary tensor request ---------------------------------


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (PNG, "it looks like a PNG image (image/png)"),
        (b"\xff\xd8\xff\xe0\x00\x10JFIF", "it looks like a JPEG image (image/jpeg)"),
        (b"instances=1,2,3,4", "form fields (application/x-www-form-urlencoded)"),
        (gzip.compress(b'{"instances": [[1, 2, 3, 4]]}'), "send it with Content-Encoding: gzip"),
        (b"\x00\x01\x02\x03\x04", "binary data starting with 00 01 02 03"),
        (b"hello", "text starting with 'hello'"),
    ],
    ids=["png", "jpeg", "form", "gzip", "binary", "text"],
)
async def test_a_native_body_that_is_not_json_says_what_it_looks_like(
    served: Gateway, body: bytes, says: str
) -> None:
    response = await served.predict("/v1/models/mlp:predict", body)
    message = _native_error(response, 400, "bad_request")
    assert message.startswith("the body is not JSON: "), message
    assert says in message
    assert message.endswith(TAKES)
    assert "UTF-8" not in message
    assert "surrogates" not in message


async def test_a_multipart_upload_to_predict_is_told_it_is_not_taken(served: Gateway) -> None:
    response = await served.client.post(
        "/v1/models/mlp:predict", files={"file": ("digit.png", PNG, "image/png")}
    )
    message = _native_error(response, 400, "bad_request")
    assert "it looks like a multipart/form-data upload, which this route does not take" in message
    assert message.endswith(TAKES)


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b"", "the body is empty; " + TAKES),
        (b'{"instances": [[1, 2, 3, 4]]', "malformed JSON: "),  # JSON with a mistake: as before
        (b"[1, 2", "malformed JSON: "),
    ],
)
async def test_empty_and_broken_json_bodies_keep_their_400(
    served: Gateway, body: bytes, says: str
) -> None:
    message = _native_error(
        await served.predict("/v1/models/mlp:predict", body), 400, "bad_request"
    )
    assert message.startswith(says), message


async def test_a_v2_binary_request_without_its_header_length_names_the_header(
    served: Gateway,
) -> None:
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "x",
                    "shape": list(ROWS.shape),
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": ROWS.nbytes},
                }
            ]
        }
    ).encode()
    response = await served.client.post("/v2/models/mlp/infer", content=header + ROWS.tobytes())
    message = _v2_error(response, 400)
    assert NEEDS_LENGTH in message
    assert f"({len(header)} here)" in message
    assert "UTF-8" not in message
    # With the header the same bytes are served.
    length = {"Inference-Header-Content-Length": str(len(header))}
    ok = await served.client.post(
        "/v2/models/mlp/infer", content=header + ROWS.tobytes(), headers=length
    )
    assert ok.status_code == 200, ok.text


async def test_a_v2_body_that_is_not_json_says_so_and_names_the_header(served: Gateway) -> None:
    message = _v2_error(await served.client.post("/v2/models/mlp/infer", content=PNG), 400)
    assert message.startswith("the body is not JSON: it looks like a PNG image (image/png); ")
    assert NEEDS_LENGTH in message
    # A header length that covers no JSON says which bytes it meant.
    cut = await served.client.post(
        "/v2/models/mlp/infer", content=PNG, headers={"Inference-Header-Content-Length": "16"}
    )
    message = _v2_error(cut, 400)
    assert "the JSON header (the first 16 bytes" in message
    assert "is not JSON: it looks like a PNG image" in message


# 2. dtypes in the contract's words ---------------------------------------------------------


async def test_strings_in_a_float_input_are_named_string_not_numpy_words(
    served: Gateway,
) -> None:
    response = await served.predict("/v1/models/mlp:predict", {"instances": [["a", "b", "c", "d"]]})
    message = _native_error(response, 422, "invalid_input")
    assert "input 'x' takes float32; got string" in message
    assert "str32" not in message
    assert "<U" not in message
    mixed = await served.predict("/v1/models/mlp:predict", {"instances": [[1, 2, 3, "4"]]})
    assert "got string" in _native_error(mixed, 422, "invalid_input")
    null = await served.predict("/v1/models/mlp:predict", {"instances": [[1, 2, 3, None]]})
    assert "input 'x' takes float32; got null" in _native_error(null, 422, "invalid_input")
    v2 = await served.client.post(
        "/v2/models/mlp/infer",
        json={"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": ["a"] * 4}]},
    )
    assert "FP32 data must be numbers, got something other than numbers (strings" in _v2_error(
        v2, 400
    )


# 3. A load error carries the exception that caused it --------------------------------------


@dataclasses.dataclass
class _Output:
    """What a Hugging Face model returns without return_dict=False, in miniature."""

    logits: torch.Tensor


class _ReturnsADataclass(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(IN, 3)

    def forward(self, x: torch.Tensor) -> _Output:
        return _Output(self.fc(x))


@pytest.fixture
def dataclass_export() -> bytes:
    """A torch.export file whose output is a pytree type registered only while exporting, as
    transformers registers its ModelOutput classes on import: the server knows no such type."""
    from torch.utils import _pytree

    torch.export.register_dataclass(_Output, serialized_type_name="mymodels.Output")
    try:
        batch = torch.export.Dim("batch", min=1, max=4096)
        program = torch.export.export(
            _ReturnsADataclass().eval(), (torch.randn(2, IN),), dynamic_shapes={"x": {0: batch}}
        )
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "m.pt2"
            torch.export.save(program, str(path))
            artifact = path.read_bytes()
    finally:
        _pytree._deregister_pytree_node(_Output)
    return artifact


async def test_an_export_whose_output_is_an_unknown_type_says_so(
    gateway: Gateway, dataclass_export: bytes
) -> None:
    await gateway.create_model("mlp")
    refused = await _upload(gateway, dataclass_export, mlp_meta("torch_export"), "?wait=true")
    message = _native_error(refused, 422, "model_load_error")
    assert message.startswith("cannot load the torch_export artifact: NotImplementedError: ")
    assert "mymodels.Output in pytree is not registered" in message
    assert (
        "the model's output is mymodels.Output, a Python type torch cannot rebuild here, not a "
        "tensor or a tuple/list/dict of tensors: return a tensor (return_dict=False for Hugging "
        "Face models)"
    ) in message
    assert "warnings above" not in message  # torch's pointer at a log the client cannot see
    # Without wait the same cause is kept on the failed version.
    accepted = await _upload(gateway, dataclass_export, mlp_meta("torch_export"))
    settled = await gateway.wait_settled("mlp", accepted.json()["version"])
    assert settled["status"] == "failed"
    assert "NotImplementedError: " in settled["load_error"]
    assert "return_dict=False" in settled["load_error"]


# 4. An ONNX file ---------------------------------------------------------------------------

# The start of a ModelProto as torch.onnx.export writes it: ir_version 9, producer_name
# "pytorch", producer_version "2.6.0", then the graph (field 7).
ONNX_HEAD = bytes.fromhex("08 09 12 07") + b"pytorch" + bytes.fromhex("1a 05") + b"2.6.0"
ONNX_LIKE = ONNX_HEAD + bytes.fromhex("3a 20") + bytes(32)


def _real_onnx() -> bytes:
    """y = relu(x), x and y [batch, 4]."""
    import onnx
    from onnx import TensorProto, helper

    node = helper.make_node("Relu", ["x"], ["y"])
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, IN])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, IN])],
    )
    model = onnx.helper.make_model(graph, producer_name="pytorch")
    model.ir_version = 8  # what ONNX Runtime releases of the last years all read
    data: bytes = model.SerializeToString()
    return data


@pytest.mark.parametrize("make", [lambda: ONNX_LIKE, _real_onnx], ids=["header", "onnx"])
async def test_an_onnx_file_is_named_as_one(gateway: Gateway, make: Any) -> None:
    artifact = make()
    await gateway.create_model("mlp")
    for fmt in ("torchscript", "torch_export"):
        refused = await _upload(gateway, artifact, mlp_meta(fmt))
        message = _native_error(refused, 422, "invalid_artifact")
        assert message == (
            f'meta says "format": "{fmt}" but the file is an ONNX model (protobuf ModelProto); '
            'set "format": "onnx"'
        )
        assert "binary data" not in message


async def test_an_onnx_file_declared_onnx_is_checked_against_meta_and_served(
    gateway: Gateway,
) -> None:
    await gateway.create_model("mlp")
    # Only its first bytes look like ONNX: it does not parse.
    refused = await _upload(gateway, ONNX_LIKE, mlp_meta("onnx"))
    message = _native_error(refused, 422, "invalid_artifact")
    assert message.startswith("the file does not parse as an ONNX model (DecodeError: "), message
    # A real graph whose output is not what meta declares (relu keeps 4 values, meta says 3).
    refused = await _upload(gateway, _real_onnx(), mlp_meta("onnx"))
    assert _native_error(refused, 422, "invalid_artifact") == (
        "output 'y' has shape [?, 4] in the ONNX graph, meta declares [3] per instance: axis 1 "
        "is 4 in the graph, 3 in meta"
    )
    meta = mlp_meta("onnx")
    meta["outputs"][0]["shape"] = [IN]
    accepted = await _upload(gateway, _real_onnx(), meta)
    assert accepted.status_code == 201, accepted.text
    assert (await gateway.wait_settled("mlp", accepted.json()["version"]))["status"] == "ready"
    answered = await gateway.predict("/v1/models/mlp@1:predict", {"instances": [[1, -2, 3, -4]]})
    assert answered.status_code == 200, answered.text
    assert answered.json()["predictions"] == [[1.0, 0.0, 3.0, 0.0]]


# 5. An unknown verb after ':' --------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/v1/models/mlp:classify",
        "/v1/models/mlp@1:classify",
        "/v1/models/mlp/versions/1:classify",
        "/v1/models/mlp/labels/production:classify",
    ],
)
async def test_classify_on_a_version_without_postprocess_says_so(
    served: Gateway, path: str
) -> None:
    response = await served.client.post(path, json={"instances": [[1, 2, 3, 4]]})
    message = _native_error(response, 400, "no_postprocess")
    assert message.startswith("mlp@1 declares no postprocess, so it cannot answer :classify; ")


@pytest.mark.parametrize("verb", ["explain", "foo", "PREDICT"])
async def test_any_other_verb_is_a_404_that_names_the_served_verb(
    served: Gateway, verb: str
) -> None:
    response = await served.client.post(f"/v1/models/mlp:{verb}", json={"instances": [[1]]})
    message = _native_error(response, 404, "not_found")
    assert message.startswith(f"no verb ':{verb}' on the model routes; ")
    assert "the verbs served after ':' are :predict and :classify" in message
    asked = await served.client.get(f"/v1/models/mlp:{verb}")  # the status route's GET too
    assert _native_error(asked, 404, "not_found") == message
    metrics = (await served.client.get("/metrics")).text
    assert 'maas_requests_total{code="404",model="_unknown",protocol="v1",version="_"}' in metrics


async def test_predict_paths_keep_their_answers(served: Gateway) -> None:
    ok = await served.predict("/v1/models/mlp:predict", {"instances": [[1, 2, 3, 4]]})
    assert ok.status_code == 200
    wrong_method = await served.client.get("/v1/models/mlp:predict")
    assert wrong_method.status_code == 405
    no_verb = await served.client.post("/v1/models/mlp", json={})
    assert no_verb.status_code == 405  # the status route, asked with POST


# 6. Triton's statistics extension ----------------------------------------------------------


@pytest.mark.parametrize(
    "path", ["/v2/models/stats", "/v2/models/mlp/stats", "/v2/models/mlp/versions/1/stats"]
)
async def test_the_statistics_routes_say_they_are_not_served_and_where_to_look(
    served: Gateway, path: str
) -> None:
    message = _v2_error(await served.client.get(path), 404)
    assert "the statistics extension" in message
    assert "is not served by this release" in message
    assert "GET /metrics" in message
    for metric in ("maas_request_phase_seconds", "maas_queue_wait_seconds"):
        assert metric in message


async def test_server_metadata_does_not_claim_statistics(gateway: Gateway) -> None:
    extensions = (await gateway.client.get("/v2")).json()["extensions"]
    assert "statistics" not in extensions


async def test_a_model_named_stats_keeps_its_metadata(gateway: Gateway) -> None:
    await gateway.deploy("stats", torchscript_bytes(tiny_mlp()), mlp_meta())
    metadata = await gateway.client.get("/v2/models/stats")
    assert metadata.status_code == 200, metadata.text
    assert metadata.json()["name"] == "stats"


# 8. A version that cannot serve says why and what to do ------------------------------------


async def test_a_failed_version_says_it_failed_to_load_and_why(gateway: Gateway) -> None:
    await gateway.create_model("mlp")
    accepted = await _upload(gateway, torchscript_bytes(tiny_mlp()), failing_meta())
    settled = await gateway.wait_settled("mlp", accepted.json()["version"])
    response = await gateway.predict("/v1/models/mlp@1:predict", {"instances": [[1, 2, 3, 4]]})
    message = _native_error(response, 409, "version_not_ready")
    assert message == f"mlp@1 failed to load: {settled['load_error']}; upload a fixed version"
    v2 = await gateway.client.post(
        "/v2/models/mlp/versions/1/infer",
        json={"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1] * 4}]},
    )
    assert _v2_error(v2, 409) == message


async def test_registered_unloaded_and_archived_versions_say_what_to_do(
    gateway: Gateway,
) -> None:
    await gateway.deploy("mlp", torchscript_bytes(tiny_mlp()), mlp_meta())
    registered = await _upload(gateway, torchscript_bytes(tiny_mlp(2)), mlp_meta(load=False))
    assert registered.json()["version"] == 2
    response = await gateway.predict("/v1/models/mlp@2:predict", {"instances": [[1, 2, 3, 4]]})
    assert _native_error(response, 409, "version_not_ready") == (
        "mlp@2 is registered but not loaded: load it with `maas models load mlp@2`"
    )
    loaded = await gateway.client.post("/admin/models/mlp/versions/2/load", headers=ADMIN)
    assert loaded.status_code == 202
    assert (await gateway.wait_settled("mlp", 2))["status"] == "ready"
    unloaded = await gateway.client.post("/admin/models/mlp/versions/2/unload", headers=ADMIN)
    assert unloaded.status_code == 200, unloaded.text
    response = await gateway.predict("/v1/models/mlp@2:predict", {"instances": [[1, 2, 3, 4]]})
    assert _native_error(response, 409, "version_not_ready") == (
        "mlp@2 is unloaded: load it with `maas models load mlp@2`"
    )
    archived = await gateway.client.delete("/admin/models/mlp/versions/2", headers=ADMIN)
    assert archived.status_code == 200, archived.text
    response = await gateway.predict("/v1/models/mlp@2:predict", {"instances": [[1, 2, 3, 4]]})
    assert _native_error(response, 409, "version_not_ready") == (
        "mlp@2 is archived and serves no traffic: use a ready version"
    )


async def test_a_loading_version_says_so(gateway: Gateway) -> None:
    await gateway.create_model("slow")
    meta = mlp_meta(batching={"max_batch_size": 64})
    uploaded = await gateway.client.post(
        "/admin/models/slow/versions",
        files={
            "file": ("m.pt", torchscript_bytes(SlowMLP(rounds=400)), "application/octet-stream")
        },
        data={"meta": json.dumps(meta)},
        headers=ADMIN,
    )
    assert uploaded.json()["status"] == "loading"
    response = await gateway.predict("/v1/models/slow@1:predict", {"instances": [[1, 2, 3, 4]]})
    assert _native_error(response, 409, "version_not_ready") == (
        "slow@1 is still loading; try again shortly"
    )
    assert (await gateway.wait_settled("slow", 1))["status"] == "ready"


# 9. A batch axis in a shape ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("shapes", "says"),
    [
        (
            {"inputs": [1, IN], "outputs": [3]},
            "if the leading 1 of 'x' [1, 4] is the batch axis: shape is one instance's shape "
            "without the batch axis; did you mean [4]?",
        ),
        (
            {"inputs": [IN], "outputs": [1, 3]},
            "if the leading 1 of 'y' [1, 3] is the batch axis: shape is one instance's shape "
            "without the batch axis; did you mean [3]?",
        ),
    ],
    ids=["input", "output"],
)
async def test_a_leading_1_in_a_shape_that_fails_warm_up_gets_the_batch_axis_hint(
    gateway: Gateway, shapes: dict[str, list[int]], says: str
) -> None:
    meta = mlp_meta()
    meta["inputs"][0]["shape"] = shapes["inputs"]
    meta["outputs"][0]["shape"] = shapes["outputs"]
    await gateway.create_model("mlp")
    refused = await _upload(gateway, torchscript_bytes(tiny_mlp()), meta, "?wait=true")
    message = _native_error(refused, 422, "model_load_error")
    assert message.startswith("warm-up forward of a batch of 1"), message
    assert says in message


async def test_a_leading_1_that_is_a_real_axis_loads(gateway: Gateway) -> None:
    """[1, 4] is one channel of 4 for a model that takes it so: the hint never refuses it."""
    meta = mlp_meta()
    meta["inputs"][0]["shape"] = [1, IN]
    meta["outputs"][0]["shape"] = [1, 3]  # Linear keeps the channel axis
    await gateway.deploy("mlp", torchscript_bytes(tiny_mlp()), meta)
