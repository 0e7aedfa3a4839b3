"""The binary tensor extension: raw tensor bytes after the JSON header, both ways.

A request or answer whose `Inference-Header-Content-Length` is N holds N bytes of JSON, then
the raw buffers of the tensors that carry `parameters.binary_data_size`, in the order the
JSON lists them. Buffers are little-endian and row-major, as Triton's clients write them:
BOOL one byte per element, BF16 the upper half of a float32, BYTES each element's 4-byte
little-endian length then its bytes. Tensors are read as views on the request's bytes (no
copy), except BOOL and BF16, which need converting.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import orjson

from maas.api.v2.datatypes import DTYPE_OF, element_count
from maas.errors import BadRequest
from maas.serving.sniff import describe, looks_like, not_json, starts_like_json

Array = np.ndarray[Any, Any]

# How each datatype's elements are laid out in a buffer.
WIRE_DTYPE: dict[str, np.dtype[Any]] = {
    datatype: np.dtype(dtype).newbyteorder("<")
    for datatype, dtype in DTYPE_OF.items()
    if datatype not in ("BOOL", "BF16")
}
WIRE_DTYPE["BOOL"] = np.dtype(np.uint8)
WIRE_DTYPE["BF16"] = np.dtype("<u2")

_NEEDS_LENGTH = (
    "a binary tensor request needs the Inference-Header-Content-Length header giving the JSON "
    "header's length"
)
_TAKES = '/infer takes a JSON inference request ({"inputs": [...]}); ' + _NEEDS_LENGTH


def split_body(body: bytes, header_length: int | None) -> tuple[memoryview, memoryview]:
    """The JSON header and the binary part of a body (all JSON without a header length)."""
    view = memoryview(body)
    if header_length is None:
        return view, view[:0]
    if header_length > len(body):
        raise BadRequest(
            f"Inference-Header-Content-Length is {header_length} but the body has only "
            f"{len(body)} bytes"
        )
    return view[:header_length], view[header_length:]


def parse_header(header: memoryview, header_length: int | None) -> Any:
    """The JSON of a request: its header (the whole body without a header length). A body
    that is not JSON is refused with what it looks like; one that is JSON followed by other
    bytes, as a binary request sent without Inference-Header-Content-Length is, names the
    header and the length it should have given."""
    try:
        return orjson.loads(header)
    except orjson.JSONDecodeError as exc:
        raise _not_a_request(header, str(exc), header_length) from None


def _not_a_request(header: memoryview, reason: str, header_length: int | None) -> BadRequest:
    if header_length is not None:
        where = (
            f"the JSON header (the first {header_length} bytes, as "
            "Inference-Header-Content-Length says)"
        )
        if looks_like(header) is None and starts_like_json(header):
            return BadRequest(f"malformed JSON in {where}: {reason}")
        return BadRequest(f"{where} is not JSON: it looks like {describe(header)}")
    end = _json_prefix(header)
    if end is not None:
        return BadRequest(
            f"the body is {end} bytes of JSON followed by {len(header) - end} bytes that are "
            f"not: {_NEEDS_LENGTH} ({end} here)"
        )
    return not_json(header, reason, _TAKES)


def _json_prefix(body: memoryview) -> int | None:
    """Where a JSON object at the start of `body` ends, when other bytes follow it."""
    text = bytes(body).decode("latin-1")  # one character per byte: offsets are byte offsets
    start = len(text) - len(text.lstrip())
    if not text.startswith("{", start):
        return None
    try:
        _, end = json.JSONDecoder().raw_decode(text, start)
    except ValueError:
        return None
    return end if text[end:].strip() else None


class BufferReader:
    """Hands out the binary part's buffers in order; `finish` refuses bytes left over."""

    def __init__(self, binary: memoryview) -> None:
        self._binary = binary
        self._offset = 0

    def take(self, size: int, where: str) -> memoryview:
        end = self._offset + size
        if end > len(self._binary):
            raise BadRequest(
                f"{where}: binary_data_size {size} runs past the end of the body "
                f"({len(self._binary) - self._offset} binary bytes left)"
            )
        buffer = self._binary[self._offset : end]
        self._offset = end
        return buffer

    def finish(self) -> None:
        left = len(self._binary) - self._offset
        if left:
            raise BadRequest(
                f"{left} bytes after the last tensor's binary data: every byte after the JSON "
                "header must belong to an input's binary_data_size"
            )


def from_buffer(buffer: memoryview | bytes, datatype: str, shape: list[int], where: str) -> Array:
    """The tensor a buffer holds; BadRequest when its size does not fit the shape."""
    wire = WIRE_DTYPE[datatype]
    count = element_count(shape)
    if len(buffer) != count * wire.itemsize:
        raise BadRequest(
            f"{where}: {len(buffer)} bytes of binary data, but shape {shape} of {datatype} "
            f"takes {count * wire.itemsize}"
        )
    raw = np.frombuffer(buffer, dtype=wire).reshape(shape)
    if datatype == "BOOL":
        return raw.astype(np.bool_)
    if datatype == "BF16":
        return (raw.astype("<u4") << 16).view("<f4")
    return raw


def byte_elements(buffer: memoryview | bytes, where: str) -> list[memoryview]:
    """The elements of a BYTES tensor's buffer: each a 4-byte little-endian length, then
    that many bytes (as Triton's clients serialise them); views, no copy."""
    view = memoryview(buffer)
    elements: list[memoryview] = []
    offset = 0
    while offset < len(view):
        if offset + 4 > len(view):
            raise BadRequest(
                f"{where}: a BYTES element's 4-byte length is cut short at byte {offset} of "
                f"{len(view)}"
            )
        size = int.from_bytes(view[offset : offset + 4], "little")
        offset += 4
        if offset + size > len(view):
            raise BadRequest(
                f"{where}: BYTES element {len(elements)} says {size} bytes, but only "
                f"{len(view) - offset} are left in its binary data"
            )
        elements.append(view[offset : offset + size])
        offset += size
    return elements


def to_buffer(array: Array, datatype: str) -> bytes:
    """An output's bytes as the extension lays them out."""
    if datatype == "BOOL":
        return np.ascontiguousarray(array, dtype=np.bool_).tobytes()
    if datatype == "BF16":
        return _bfloat16_bits(np.asarray(array, dtype="<f4")).tobytes()
    return np.ascontiguousarray(array, dtype=WIRE_DTYPE[datatype]).tobytes()


def _bfloat16_bits(values: Array) -> Array:
    """float32 → bfloat16 bits, rounding to nearest even; NaN stays a (quiet) NaN."""
    bits = values.view("<u4").astype(np.uint64)
    rounded = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype("<u2")
    return np.where(np.isnan(values), np.uint16(0x7FC0), rounded).astype("<u2")
