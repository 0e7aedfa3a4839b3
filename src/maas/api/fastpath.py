"""Which POSTs the inference pipeline answers before FastAPI sees them: one row per protocol.

Starlette's middleware, routing, Request and Response objects cost about a third of a
gateway's CPU on a small request, so `maas.app.MaasApp` looks a POST's path up here first;
every other request is ordinary FastAPI. A row is a matcher (path → the ref it names, the
client's mistake in it as a MaasError, or None: not this row's) and the codec it speaks.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter
from starlette.responses import Response

from maas.api.native.classify import ClassifyCodec
from maas.api.native.classify import match as classify_match
from maas.api.native.codec import NativeCodec
from maas.api.native.codec import match as native_match
from maas.api.v2.codec import V2Codec
from maas.api.v2.codec import match as v2_match
from maas.errors import MaasError
from maas.serving.codec import Codec
from maas.types import ModelRef

Matcher = Callable[[str], ModelRef | MaasError | None]

ROUTES: tuple[tuple[Matcher, Codec[Any]], ...] = (
    (native_match, NativeCodec()),  # POST /v1/models/...:predict
    (classify_match, ClassifyCodec()),  # POST /v1/models/...:classify
    (v2_match, V2Codec()),  # POST /v2/models/.../infer
)


def find(path: str) -> tuple[Codec[Any], ModelRef | MaasError] | None:
    for matcher, codec in ROUTES:
        ref = matcher(path)
        if ref is not None:
            return codec, ref
    return None


def document(
    router: APIRouter,
    path: str,
    request_body: dict[str, Any],
    summary: str,
    responses: dict[int | str, dict[str, Any]],
) -> None:
    """Declare a POST the pipeline answers on `router`, for /openapi.json and /docs only: its
    path parameters (all strings), its body and its answers. FastAPI never routes a request
    to it."""
    names = re.findall(r"{(\w+)}", path)
    parameters = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in names
    ]
    router.add_api_route(
        path,
        _never_routed,
        methods=["POST"],
        openapi_extra={"parameters": parameters, "requestBody": request_body},
        response_class=Response,
        responses=responses,
        summary=summary,
    )


async def _never_routed() -> Response:  # pragma: no cover - see `document`
    raise AssertionError("inference POSTs are served by maas.serving.call before routing")
