"""The Open Inference Protocol's classification extension, as Triton answers it.

An output requested with `"parameters": {"classification": k}` answers, instead of its
values, a BYTES tensor of shape [N, min(k, C)] (C: the output's elements per instance): each
instance's best classes, best first, as `"score:index:label"` strings, or `"score:index"` when
the version's meta `postprocess` does not name that output. When it does and declares
`softmax`, the scores are softmaxed first (Triton has no such step: there the model does it).
As JSON `data` the strings are a flat row-major list; as binary, each element is its length
(4 bytes, little-endian) and its UTF-8 bytes, as Triton's clients read BYTES tensors.
"""

from __future__ import annotations

import struct
from typing import Any

import numpy as np

from maas.errors import BadRequest
from maas.registry.records import VersionRecord
from maas.serving.postprocess import triton_strings
from maas.types import TensorSpec

BYTES = "BYTES"
_LENGTH = struct.Struct("<I")


def class_count(value: Any, spec: TensorSpec) -> int:
    """A requested output's `parameters.classification`: how many classes to answer per
    instance (0: none asked). BadRequest unless a positive integer, or for a BOOL output,
    whose values are no scores (Triton refuses it too)."""
    if value is None:
        return 0
    where = f"output '{spec.name}'"
    if type(value) is not int or value < 1:
        raise BadRequest(
            f"{where}: parameters.classification must be a positive integer (how many classes "
            "to answer per instance)"
        )
    if spec.dtype == "bool":
        raise BadRequest(f"{where}: class results are not available for a BOOL output")
    return value


def classified(array: np.ndarray[Any, Any], k: int, name: str, version: VersionRecord) -> Any:
    """The strings of output `name` ([N, ...]) as Triton's classification answers them: a
    list of N lists of min(k, C) strings."""
    post = version.postprocess
    if post is not None and post.output == name:
        return triton_strings(array, k, post.labels, softmax_first=post.softmax)
    return triton_strings(array, k)


def shape_of(strings: list[list[str]]) -> list[int]:
    return [len(strings), len(strings[0]) if strings else 0]


def to_json(strings: list[list[str]]) -> list[str]:
    """The flat, row-major strings (JSON `data` of a BYTES tensor)."""
    return [s for row in strings for s in row]


def to_buffer(strings: list[list[str]]) -> bytes:
    """The binary form of a BYTES tensor: each element's length, then its bytes."""
    parts: list[bytes] = []
    for row in strings:
        for text in row:
            data = text.encode()
            parts += (_LENGTH.pack(len(data)), data)
    return b"".join(parts)
