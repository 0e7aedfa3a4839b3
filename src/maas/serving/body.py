"""Reading request bodies under a size cap, without trusting Content-Length alone."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.types import Receive

from maas.errors import BadRequest, PayloadTooLarge


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


def parse_json(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"malformed JSON: {exc}") from None
