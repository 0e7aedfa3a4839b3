"""Properties of the two request decoders, over inputs hypothesis makes up: what a client
encodes comes back bit for bit, and no body, however malformed, raises anything but the
MaasError that becomes its 4xx (never an exception that would be a 500)."""

from __future__ import annotations

import contextlib
import json
from typing import Any

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from maas.api.native.codec import NativeCodec
from maas.api.v2.binary import WIRE_DTYPE
from maas.api.v2.codec import V2Codec
from maas.api.v2.datatypes import DTYPE_OF
from maas.errors import MaasError
from maas.serving.head import RequestHead
from maas.types import TensorSpec
from support.sample_records import version_record

SETTINGS = settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
V2, NATIVE = V2Codec(), NativeCodec()
# Datatypes whose wire bytes are a numpy dtype's own (BOOL and BF16 are converted on the way).
PLAIN = sorted(d for d in DTYPE_OF if d not in ("BOOL", "BF16"))

shapes = hnp.array_shapes(min_dims=1, max_dims=4, min_side=1, max_side=5)


def _binary_request(name: str, datatype: str, array: np.ndarray[Any, Any]) -> tuple[bytes, Any]:
    data = array.astype(WIRE_DTYPE[datatype]).tobytes()
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": name,
                    "shape": list(array.shape),
                    "datatype": datatype,
                    "parameters": {"binary_data_size": len(data)},
                }
            ]
        }
    ).encode()
    head = RequestHead([(b"inference-header-content-length", str(len(header)).encode())])
    return header + data, head


@SETTINGS
@given(st.sampled_from(PLAIN), shapes, st.data())
def test_v2_binary_tensors_come_back_bit_for_bit(
    datatype: str, shape: tuple[int, ...], data: st.DataObject
) -> None:
    dtype = np.dtype(DTYPE_OF[datatype])
    array = data.draw(hnp.arrays(dtype, shape))
    version = version_record(TensorSpec("x", DTYPE_OF[datatype], tuple(shape[1:])))
    body, head = _binary_request("x", datatype, array)
    (group,) = V2.decode(body, head, version).groups
    assert group[0].shape == array.shape
    assert group[0].tobytes() == array.astype(WIRE_DTYPE[datatype]).tobytes()


@SETTINGS
@given(st.binary(max_size=600), st.one_of(st.none(), st.integers(-5, 700)))
def test_v2_any_bytes_are_a_4xx_or_a_request(body: bytes, header_length: int | None) -> None:
    headers = []
    if header_length is not None:
        headers.append((b"inference-header-content-length", str(header_length).encode()))
    version = version_record(TensorSpec("x", "float32", (4,)))
    with contextlib.suppress(MaasError):
        V2.decode(body, RequestHead(headers), version)


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=4), inner, max_size=4)
    ),
    max_leaves=30,
)

tensor_entries = st.fixed_dictionaries(
    {
        "name": st.sampled_from(["x", "y", ""]),
        "shape": st.lists(st.integers(-2, 2**64), max_size=4) | json_values,
        "datatype": st.sampled_from([*DTYPE_OF, "FP8", ""]) | json_values,
    },
    optional={"data": json_values, "parameters": json_values},
)


@SETTINGS
@given(
    st.one_of(json_values, st.fixed_dictionaries({"inputs": st.lists(tensor_entries, max_size=3)}))
)
def test_v2_any_json_is_a_4xx_or_a_request(payload: Any) -> None:
    version = version_record(TensorSpec("x", "float32", (4,)))
    with contextlib.suppress(MaasError):
        V2.decode(json.dumps(payload).encode(), RequestHead([]), version)


@SETTINGS
@given(hnp.arrays(np.float32, st.tuples(st.integers(1, 8), st.just(4))))
def test_native_instances_come_back_as_written(array: np.ndarray[Any, Any]) -> None:
    version = version_record(TensorSpec("x", "float32", (4,)))
    body = json.dumps({"instances": array.tolist()}, allow_nan=True).encode()
    try:
        decoded = NATIVE.decode(body, RequestHead([]), version)
    except MaasError:
        assert not np.isfinite(array).all()  # NaN and Infinity are not JSON: refused
        return
    (group,) = decoded.groups
    np.testing.assert_array_equal(group[0], array)


@SETTINGS
@given(st.one_of(json_values, st.fixed_dictionaries({"instances": json_values})))
def test_native_any_json_is_a_4xx_or_arrays_of_the_signature(payload: Any) -> None:
    version = version_record(TensorSpec("x", "float32", (4,)), TensorSpec("n", "int64", (2,)))
    try:
        decoded = NATIVE.decode(json.dumps(payload).encode(), RequestHead([]), version)
    except MaasError:
        return
    for group in decoded.groups:
        x, n = group
        assert x.shape[1:] == (4,)
        assert x.dtype == np.float32
        assert n.shape[1:] == (2,)
        assert n.dtype == np.int64


@SETTINGS
@given(st.binary(max_size=300))
def test_native_any_bytes_are_a_4xx_or_a_request(body: bytes) -> None:
    with contextlib.suppress(MaasError):
        NATIVE.decode(body, RequestHead([]), version_record(TensorSpec("x", "float32", (4,))))
