"""Reading request bodies under a size cap, without trusting Content-Length alone.

A body sent with `Content-Encoding: gzip` or `deflate` (as Triton's clients can) is inflated
here, under the same cap, so a small compressed body cannot expand into a large one.
"""

from __future__ import annotations

import zlib
from typing import Any

import orjson
from starlette.types import Receive

from maas.errors import BadRequest, PayloadTooLarge
from maas.serving.sniff import not_json

# zlib's window bits: a gzip header and trailer, or a zlib one ("deflate" in HTTP).
_WBITS = {b"gzip": 16 + zlib.MAX_WBITS, b"x-gzip": 16 + zlib.MAX_WBITS, b"deflate": zlib.MAX_WBITS}


async def read_body(receive: Receive, limit: int, declared: int | None = None) -> bytes:
    """The whole body from ASGI `receive`; PayloadTooLarge past `limit` bytes."""
    if declared is not None and declared > limit:
        raise PayloadTooLarge(f"request body of {declared} bytes exceeds the {limit}-byte limit")
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise BadRequest("client disconnected before the body was complete")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"request body exceeds the {limit}-byte limit")
        if not message.get("more_body", False):
            if not chunks:
                return bytes(chunk)
            chunks.append(chunk)
            return b"".join(chunks)
        chunks.append(chunk)


def decode_content(body: bytes, encoding: bytes | None, limit: int) -> bytes:
    """`body` inflated as its Content-Encoding says (identity: as it is), at most `limit` bytes."""
    if encoding is None or encoding in (b"", b"identity"):
        return body
    wbits = _WBITS.get(encoding)
    if wbits is None:
        raise BadRequest(
            f"unsupported Content-Encoding '{encoding.decode('latin-1')}'; "
            "send gzip, deflate or identity"
        )
    inflater = zlib.decompressobj(wbits)
    try:
        out = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise BadRequest(f"body is not valid {encoding.decode()} data: {exc}") from None
    if len(out) > limit:
        raise PayloadTooLarge(f"inflated request body exceeds the {limit}-byte limit")
    if not inflater.eof:
        raise BadRequest(f"body is truncated {encoding.decode()} data")
    return out


def parse_json(body: bytes | memoryview, expected: str) -> Any:
    """The JSON value of `body`; a BadRequest that says what the body is and what the route
    takes (`expected`, see `maas.serving.sniff.not_json`) when it is not JSON."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise not_json(body, str(exc), expected) from None
