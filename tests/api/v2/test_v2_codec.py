"""The v2 codec on its own: binary buffers and JSON tensors of every datatype, and every way a
request body can be wrong (each a 400 in the protocol's error shape)."""

from __future__ import annotations

import json
import struct
from typing import Any

import ml_dtypes
import numpy as np
import pytest

from maas.api.v2.binary import WIRE_DTYPE, from_buffer, to_buffer
from maas.api.v2.codec import V2Codec, match
from maas.api.v2.datatypes import DTYPE_OF, from_json
from maas.errors import BadRequest, InvalidInput, MaasError
from maas.registry.records import VersionRecord
from maas.serving.head import RequestHead
from maas.types import ModelRef, TensorSpec
from support.sample_records import version_record

# Values at the edges of each datatype (BF16 and FP16: values they hold exactly).
SAMPLES: dict[str, list[Any]] = {
    "BOOL": [True, False, True, True, False, False],
    "UINT8": [0, 1, 127, 128, 254, 255],
    "UINT16": [0, 1, 2**15, 2**16 - 1, 7, 9],
    "UINT32": [0, 1, 2**31, 2**32 - 1, 7, 9],
    "UINT64": [0, 1, 2**63, 2**64 - 1, 7, 9],
    "INT8": [-128, -1, 0, 1, 126, 127],
    "INT16": [-(2**15), -1, 0, 1, 2, 2**15 - 1],
    "INT32": [-(2**31), -1, 0, 1, 2, 2**31 - 1],
    "INT64": [-(2**63), -1, 0, 1, 2, 2**63 - 1],
    "FP16": [-65504.0, -1.5, 0.0, 0.25, 1024.0, 65504.0],
    "FP32": [-3.4e38, -1.5, 0.0, 1e-30, 0.1, 3.4e38],
    "FP64": [-1.7e308, -1.5, 0.0, 5e-324, 0.1, 1.7e308],
    "BF16": [-3.0e38, -1.5, 0.0, 0.15625, 256.0, 3.0e38],
}


def _array(datatype: str) -> np.ndarray[Any, Any]:
    dtype = "float32" if datatype == "BF16" else DTYPE_OF[datatype]
    values = np.array(SAMPLES[datatype], dtype=dtype).reshape(2, 3)
    if datatype == "BF16":  # as a bfloat16 model's output arrives: float32 holding bf16 values
        values = values.astype(ml_dtypes.bfloat16).astype(np.float32)
    return values


@pytest.mark.parametrize("datatype", sorted(DTYPE_OF))
def test_binary_buffers_of_every_datatype_round_trip(datatype: str) -> None:
    array = _array(datatype)
    buffer = to_buffer(array, datatype)
    assert len(buffer) == array.size * WIRE_DTYPE[datatype].itemsize
    back = from_buffer(memoryview(buffer), datatype, [2, 3], "input 'x'")
    assert back.shape == (2, 3)
    np.testing.assert_array_equal(back, array)


@pytest.mark.parametrize("datatype", sorted(DTYPE_OF))
def test_buffers_are_laid_out_as_the_stock_client_lays_them_out(datatype: str) -> None:
    from tritonclient.utils import triton_to_np_dtype

    array = _array(datatype)
    theirs = array.astype(triton_to_np_dtype(datatype)).tobytes()  # InferInput's own bytes
    assert to_buffer(array, datatype) == theirs
    decoded = from_buffer(theirs, datatype, [2, 3], "input 'x'")
    np.testing.assert_array_equal(decoded, array)


def test_bf16_rounds_to_nearest_even_and_keeps_nan() -> None:
    values = np.array([1.00390625, 1.01171875, np.nan, -np.inf], dtype=np.float32)
    bits = np.frombuffer(to_buffer(values, "BF16"), dtype="<u2")
    want = values.astype(ml_dtypes.bfloat16).view("<u2")
    assert list(bits[:2]) == list(want[:2])  # halfway cases go to the even neighbour
    assert np.isnan(from_buffer(to_buffer(values, "BF16"), "BF16", [4], "x")[2])
    assert from_buffer(to_buffer(values, "BF16"), "BF16", [4], "x")[3] == -np.inf


@pytest.mark.parametrize("datatype", sorted(DTYPE_OF))
def test_json_data_of_every_datatype_flat_or_nested(datatype: str) -> None:
    array = _array(datatype)
    flat = from_json(array.reshape(-1).tolist(), datatype, [2, 3], "x")
    nested = from_json(array.tolist(), datatype, [2, 3], "x")
    np.testing.assert_array_equal(flat, array)
    np.testing.assert_array_equal(nested, array)


@pytest.mark.parametrize(
    ("data", "datatype", "message"),
    [
        ([1.5, 2.0], "INT32", "integers"),
        ([1, 0], "BOOL", "true or false"),
        ([True, False], "FP32", "must be numbers, got true/false"),
        (["a", "b"], "FP32", "other than numbers"),
        ([[1, 2], [3]], "FP32", "evenly nested"),
        ([1, 2, 3], "FP32", "needs 2"),
        ([300, 1], "UINT8", "range"),
        ([-1, 1], "UINT32", "range"),
        ({"a": 1}, "FP32", "list"),
    ],
)
def test_json_data_of_the_wrong_kind_is_refused(data: Any, datatype: str, message: str) -> None:
    with pytest.raises(BadRequest, match=message):
        from_json(data, datatype, [2], "input 'x'")


_version = version_record


X4 = TensorSpec("x", "float32", (4,))
VERSION = _version(X4)
CODEC = V2Codec()


def _body(
    header: dict[str, Any], *buffers: bytes, header_length: int | None = None
) -> tuple[bytes, RequestHead]:
    text = json.dumps(header).encode()
    headers: list[tuple[bytes, bytes]] = []
    if buffers or header_length is not None:
        length = len(text) if header_length is None else header_length
        headers.append((b"inference-header-content-length", str(length).encode()))
    return text + b"".join(buffers), RequestHead(headers)


def _binary_input(array: np.ndarray[Any, Any], name: str = "x") -> dict[str, Any]:
    return {
        "name": name,
        "shape": list(array.shape),
        "datatype": "FP32",
        "parameters": {"binary_data_size": array.nbytes},
    }


ROWS = np.arange(8, dtype=np.float32).reshape(2, 4)


def test_a_binary_request_decodes_to_one_group_without_copying() -> None:
    body, head = _body({"id": "r1", "inputs": [_binary_input(ROWS)]}, ROWS.tobytes())
    decoded = CODEC.decode(body, head, VERSION)
    (group,) = decoded.groups
    np.testing.assert_array_equal(group[0], ROWS)
    assert group[0].base is not None  # a view on the request's bytes
    assert decoded.state.request_id == "r1"


def test_json_and_binary_inputs_mix_and_follow_the_models_input_order() -> None:
    version = _version(X4, TensorSpec("n", "int64", (2,)))
    ids = np.array([[1, 2], [3, 4]], dtype=np.int64)
    header = {
        "inputs": [
            {"name": "n", "shape": [2, 2], "datatype": "INT64", "data": ids.tolist()},
            _binary_input(ROWS),
        ]
    }
    body, head = _body(header, ROWS.tobytes())
    (group,) = CODEC.decode(body, head, version).groups
    np.testing.assert_array_equal(group[0], ROWS)
    np.testing.assert_array_equal(group[1], ids)


def test_the_answer_holds_requested_outputs_binary_or_json_with_the_request_id() -> None:
    header = {
        "id": "abc",
        "inputs": [{"name": "x", "shape": [2, 4], "datatype": "FP32", "data": ROWS.tolist()}],
        "outputs": [{"name": "z", "parameters": {"binary_data": True}}, {"name": "y"}],
    }
    body, head = _body(header)
    decoded = CODEC.decode(body, head, VERSION)
    y = np.arange(6, dtype=np.float32).reshape(2, 3)
    z = np.array([[7], [8]], dtype=np.int64)
    reply = CODEC.encode(decoded, [[y, z]], VERSION)
    assert reply.status == 200
    length = dict(reply.headers)[b"inference-header-content-length"]
    answer = json.loads(reply.body[: int(length)])
    assert answer["id"] == "abc"
    assert (answer["model_name"], answer["model_version"]) == ("m", "3")
    first, second = answer["outputs"]
    assert first == {
        "name": "z",
        "datatype": "INT64",
        "shape": [2, 1],
        "parameters": {"binary_data_size": 16},
    }
    assert np.frombuffer(reply.body[int(length) :], dtype="<i8").tolist() == [7, 8]
    assert second == {"name": "y", "datatype": "FP32", "shape": [2, 3], "data": y.ravel().tolist()}


def test_binary_data_output_makes_every_output_binary_unless_one_says_otherwise() -> None:
    header = {
        "parameters": {"binary_data_output": True},
        "inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [0, 0, 0, 0]}],
    }
    body, head = _body(header)
    reply = CODEC.encode(
        CODEC.decode(body, head, VERSION), [[ROWS[:1, :3], ROWS[:1, :1].astype(np.int64)]], VERSION
    )
    assert reply.content_type == b"application/octet-stream"
    length = int(dict(reply.headers)[b"inference-header-content-length"])
    outputs = json.loads(reply.body[:length])["outputs"]
    assert [o["parameters"]["binary_data_size"] for o in outputs] == [12, 8]
    assert len(reply.body) == length + 20


def _refused(
    body: bytes, head: RequestHead, message: str, version: VersionRecord = VERSION
) -> None:
    with pytest.raises(MaasError, match=message) as refused:
        CODEC.decode(body, head, version)
    reply = CODEC.error(refused.value)
    assert reply.status == 400, refused.value
    assert set(json.loads(reply.body)) == {"error"}
    assert isinstance(refused.value, BadRequest | InvalidInput)


def test_a_header_length_past_the_body_is_400() -> None:
    body, head = _body({"inputs": [_binary_input(ROWS)]}, ROWS.tobytes(), header_length=10_000)
    _refused(body, head, "Inference-Header-Content-Length is 10000")


def test_a_header_length_that_is_not_a_number_is_400() -> None:
    head = RequestHead([(b"inference-header-content-length", b"-5")])
    _refused(b"{}", head, "non-negative integer")


def test_a_buffer_that_does_not_match_the_shape_is_400() -> None:
    tensor = {**_binary_input(ROWS), "shape": [3, 4]}  # 48 bytes needed, 32 sent
    body, head = _body({"inputs": [tensor]}, ROWS.tobytes())
    _refused(body, head, "runs past the end|takes 48")
    short = {**_binary_input(ROWS), "parameters": {"binary_data_size": 16}}
    body, head = _body({"inputs": [short]}, ROWS.tobytes()[:16])
    _refused(body, head, "16 bytes of binary data, but shape \\[2, 4\\] of FP32 takes 32")


def test_trailing_bytes_after_the_last_buffer_are_400() -> None:
    body, head = _body({"inputs": [_binary_input(ROWS)]}, ROWS.tobytes(), b"\x00" * 4)
    _refused(body, head, "4 bytes after the last tensor")


def test_a_header_length_that_cuts_the_json_is_400() -> None:
    body, _ = _body({"inputs": [_binary_input(ROWS)]}, ROWS.tobytes())
    short = RequestHead([(b"inference-header-content-length", b"12")])
    _refused(body, short, "malformed JSON")


@pytest.mark.parametrize(
    ("header", "message"),
    [
        ([1, 2], "JSON object"),
        ({"inputs": []}, "non-empty list"),
        ({"inputs": [{"shape": [1, 4]}]}, 'string "name"'),
        ({"id": 7, "inputs": []}, '"id" must be a string'),
        (
            {"inputs": [{"name": "q", "shape": [1, 4], "datatype": "FP32", "data": [0] * 4}]},
            "unknown input 'q'",
        ),
        (
            {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP64", "data": [0] * 4}]},
            "datatype FP64, but the model expects FP32",
        ),
        (
            {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "BYTES", "data": ["a"] * 4}]},
            "BYTES",
        ),
        (
            {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP8", "data": [0] * 4}]},
            "unknown datatype",
        ),
        (
            {"inputs": [{"name": "x", "shape": [1, 5], "datatype": "FP32", "data": [0] * 5}]},
            "shape \\[1, 5\\], but the model takes \\[-1, 4\\]",
        ),
        (
            {"inputs": [{"name": "x", "shape": [4], "datatype": "FP32", "data": [0] * 4}]},
            "shape \\[4\\]",
        ),
        (
            {"inputs": [{"name": "x", "shape": [0, 4], "datatype": "FP32", "data": []}]},
            "at least one instance",
        ),
        (
            {"inputs": [{"name": "x", "shape": [1, -4], "datatype": "FP32", "data": [0] * 4}]},
            "non-negative integers",
        ),
        ({"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32"}]}, "no data"),
        (
            {
                "inputs": [
                    {
                        "name": "x",
                        "shape": [1, 4],
                        "datatype": "FP32",
                        "data": [0] * 4,
                        "parameters": {"binary_data_size": 16},
                    }
                ]
            },
            "not both",
        ),
        (
            {
                "inputs": [
                    {
                        "name": "x",
                        "shape": [1, 4],
                        "datatype": "FP32",
                        "parameters": {"shared_memory_region": "r"},
                    }
                ]
            },
            "shared-memory",
        ),
        (
            {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [0] * 4}] * 2},
            "given twice",
        ),
        (
            {
                "inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [0] * 4}],
                "outputs": [{"name": "nope"}],
            },
            "unknown output 'nope'",
        ),
        (
            {
                "inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [0] * 4}],
                "outputs": [{"name": "y", "parameters": {"classification": 0}}],
            },
            "classification must be a positive integer",
        ),
        (
            {
                "inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [0] * 4}],
                "parameters": {"binary_data_output": "yes"},
            },
            "true or false",
        ),
        (
            {
                "inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [0] * 4}],
                "parameters": {"timeout": -1},
            },
            "microseconds",
        ),
    ],
)
def test_malformed_requests_are_400(header: Any, message: str) -> None:
    body, head = _body(header)
    _refused(body, head, message)


def test_inputs_that_disagree_on_the_batch_are_400() -> None:
    version = _version(X4, TensorSpec("n", "int64", (2,)))
    header = {
        "inputs": [
            {"name": "x", "shape": [2, 4], "datatype": "FP32", "data": [0] * 8},
            {"name": "n", "shape": [1, 2], "datatype": "INT64", "data": [1, 2]},
        ]
    }
    body, head = _body(header)
    _refused(body, head, "disagree on the batch size", version)
    missing = {"inputs": header["inputs"][:1]}
    body, head = _body(missing)
    _refused(body, head, "missing inputs \\['n'\\]", version)


def test_a_deadline_in_the_body_is_triton_s_timeout_in_microseconds() -> None:
    header = {
        "parameters": {"timeout": 250_000},
        "inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [0] * 4}],
    }
    body, head = _body(header)
    assert CODEC.decode(body, head, VERSION).timeout_s == 0.25


def test_the_infer_paths_and_what_they_name() -> None:
    assert match("/v2/models/digits/infer") == ModelRef("digits")
    assert match("/v2/models/digits/versions/3/infer") == ModelRef("digits", version=3)
    assert match("/v2/models/digits/versions/production/infer") == ModelRef(
        "digits", alias="production"
    )
    assert match("/v2/models/digits/ready") is None
    assert match("/v2/models//infer") is None
    assert match("/v2/models/digits/labels/x/infer") is None


def test_struct_packed_bodies_like_the_clients_parse() -> None:
    # tritonclient joins the JSON and the buffers with no separator; so does struct.pack.
    header = json.dumps({"inputs": [_binary_input(ROWS)]}).encode()
    body = struct.pack(f"{len(header)}s{ROWS.nbytes}s", header, ROWS.tobytes())
    head = RequestHead([(b"inference-header-content-length", str(len(header)).encode())])
    np.testing.assert_array_equal(CODEC.decode(body, head, VERSION).groups[0][0], ROWS)
