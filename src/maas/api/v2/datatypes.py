"""The Open Inference Protocol's datatypes, maas's dtypes, and tensors as JSON `data`.

Every numeric datatype maps to one maas dtype; a request's datatype must be the one its
input declares (as Triton insists), so nothing is cast behind the client's back. numpy has
no bfloat16: BF16 tensors live as float32 on the gateway, as the worker's runtime expects.
BYTES (strings) has no maas dtype: it carries only encoded images, for an input that declares
image pre-processing (`maas.api.v2.images`).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from maas.checks.arrays import numpy_dtype
from maas.errors import BadRequest

DTYPE_OF: dict[str, str] = {
    "BOOL": "bool",
    "UINT8": "uint8",
    "UINT16": "uint16",
    "UINT32": "uint32",
    "UINT64": "uint64",
    "INT8": "int8",
    "INT16": "int16",
    "INT32": "int32",
    "INT64": "int64",
    "FP16": "float16",
    "FP32": "float32",
    "FP64": "float64",
    "BF16": "bfloat16",
}
DATATYPE_OF: dict[str, str] = {dtype: datatype for datatype, dtype in DTYPE_OF.items()}

Array = np.ndarray[Any, Any]


def datatype_of(dtype: str) -> str:
    return DATATYPE_OF[dtype]


def check_datatype(datatype: Any, where: str) -> str:
    if not isinstance(datatype, str):
        raise BadRequest(f'{where}: datatype must be a string such as "FP32"')
    if datatype not in DTYPE_OF:
        raise BadRequest(f"{where}: unknown datatype '{datatype}'")
    return datatype


def element_count(shape: list[int]) -> int:
    return math.prod(shape)


def from_json(data: Any, datatype: str, shape: list[int], where: str) -> Array:
    """`data` (flat or nested, row-major) as an array of `shape`; numbers of the wrong kind
    (a float for an integer tensor, a number for BOOL) are refused, never cast."""
    want = numpy_dtype(DTYPE_OF[datatype])
    if type(data) is not list:
        raise BadRequest(f"{where}: data must be a list of values")
    try:
        array = np.asarray(data)
    except (ValueError, TypeError, OverflowError):
        raise BadRequest(f"{where}: data is not a flat or evenly nested list of numbers") from None
    kind = array.dtype.kind
    if want.kind == "u" and kind in "fO":
        # Integers past int64 among smaller ones come out of numpy as float64 (or objects):
        # look at the values themselves, so 2**64 - 1 is not rounded.
        array = _big_unsigned(data, want, where)
        kind = "u"
    if array.size and kind not in _ACCEPTS[want.kind]:
        raise BadRequest(f"{where}: {_expected(datatype, want)}, got {_found(kind)}")
    count = element_count(shape)
    if array.size != count:
        raise BadRequest(f"{where}: data holds {array.size} values, shape {shape} needs {count}")
    if array.size and want.kind in "iu" and array.dtype != want:
        info = np.iinfo(want)
        if int(array.min()) < info.min or int(array.max()) > info.max:
            raise BadRequest(f"{where}: values outside the range of {datatype}")
    return array.astype(want, copy=False).reshape(shape)


# The numpy kinds JSON values may parse to, for each kind of datatype: integers are numbers
# for a floating-point tensor, but floats are never integers and numbers never booleans.
_ACCEPTS = {"b": "b", "i": "iu", "u": "iu", "f": "fiu"}


def _expected(datatype: str, want: np.dtype[Any]) -> str:
    if want.kind == "b":
        return "BOOL data must be true or false"
    if want.kind in "iu":
        return f"{datatype} data must be integers"
    return f"{datatype} data must be numbers"


def _found(kind: str) -> str:
    return {
        "f": "non-integers",
        "b": "true/false",
        "i": "integers",
        "u": "integers",
    }.get(kind, "something other than numbers (strings, objects or ragged lists)")


def _big_unsigned(data: list[Any], want: np.dtype[Any], where: str) -> Array:
    try:
        objects = np.asarray(data, dtype=object)
    except (ValueError, TypeError):
        raise BadRequest(f"{where}: data is not a flat or evenly nested list of numbers") from None
    limit = 2 ** (8 * want.itemsize)
    if not all(type(v) is int and 0 <= v < limit for v in objects.reshape(-1).tolist()):
        raise BadRequest(f"{where}: data must hold only integers in the range of the datatype")
    return objects.astype(want)


def to_json(array: Array, datatype: str) -> Array:
    """The flat, row-major values of an output (orjson writes the numpy array as a list)."""
    return np.ascontiguousarray(array, dtype=numpy_dtype(DTYPE_OF[datatype])).reshape(-1)
