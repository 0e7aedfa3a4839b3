"""Native inference REST (TF-Serving style, with `@` refs). Kept lean: this is the hot path."""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from collections.abc import Awaitable
from typing import Any, TypeVar

import orjson
from fastapi import APIRouter, Request
from starlette.responses import Response
from starlette.routing import Route

from maas.api.body import parse_json, read_capped
from maas.api.errors import render
from maas.auth import Principal
from maas.dataplane import Prediction
from maas.errors import BadRequest, ClientDisconnected, MaasError, VersionNotReady
from maas.metrics import PROTOCOL_V1, UNKNOWN_MODEL, UNKNOWN_VERSION
from maas.services import Services
from maas.types import ModelRef, Scope

router = APIRouter(tags=["inference"])

_BODY_DOC: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["instances"],
                    "properties": {"instances": {"type": "array", "minItems": 1, "items": {}}},
                }
            }
        },
    }
}


async def _predict(request: Request, ref: ModelRef) -> Response:
    """auth → resolve the ref → read the body → batcher and worker → answer; every request
    that reaches here is counted under the version it resolved to."""
    started = time.perf_counter()
    services: Services = request.app.state.services
    request_id = request.headers.get("x-request-id") or _new_request_id()
    model, version = UNKNOWN_MODEL, UNKNOWN_VERSION
    try:
        try:
            if services.settings.require_infer_key:
                principal: Principal = await services.auth.require(
                    request.headers.get("authorization"), Scope.INFER
                )
                request.state.principal = principal
            record = await services.dataplane.resolve(
                ref, routing_key=request.headers.get("x-routing-key")
            )
            model, version = record.model, str(record.version)
            timeout_s = _timeout(request, services.settings.request_timeout_ms)
            payload = parse_json(await read_capped(request, services.settings.max_body_bytes))
            result = await _unless_disconnected(
                request,
                services.dataplane.predict(record, _instances(payload), timeout_s=timeout_s),
            )
        except VersionNotReady as exc:
            if exc.model is not None:
                model, version = exc.model, str(exc.version)
            response = render(exc, {"X-Request-Id": request_id})
        except MaasError as exc:
            response = render(exc, {"X-Request-Id": request_id})
        else:
            response = _answer(result, request_id)
    except Exception:
        services.metrics.observe(model, version, PROTOCOL_V1, 500, time.perf_counter() - started)
        raise
    services.metrics.observe(
        model, version, PROTOCOL_V1, response.status_code, time.perf_counter() - started
    )
    return response


def _answer(result: Prediction, request_id: str) -> Response:
    body = orjson.dumps(
        {"predictions": result.predictions, "model": result.model, "version": result.version},
        option=orjson.OPT_SERIALIZE_NUMPY,
    )
    return Response(
        body,
        media_type="application/json",
        headers={
            "X-Model-Name": result.model,
            "X-Model-Version": str(result.version),
            "X-Request-Id": request_id,
        },
    )


T = TypeVar("T")

# Request ids unique across processes and restarts without a uuid4 (an urandom call) each.
_ID_PREFIX = uuid.uuid4().hex[:12]
_id_counter = itertools.count(1)


def _new_request_id() -> str:
    return f"{_ID_PREFIX}{next(_id_counter):012x}"


# Listening for a disconnect costs a task per request (~60 us of gateway CPU, a third of the
# whole path); most requests are answered sooner than this, so only slower ones pay for it.
LISTEN_FOR_DISCONNECT_AFTER_S = 0.05


async def _unless_disconnected(request: Request, work: Awaitable[T]) -> T:
    """Run `work`, cancelling it if the client hangs up first (its result would go nowhere).

    Cancelling reaches the worker as a Cancel message, so a queued request is not computed.
    A request answered within LISTEN_FOR_DISCONNECT_AFTER_S is never watched.
    """
    this = asyncio.current_task()
    assert this is not None
    listener: asyncio.Future[None] | None = None

    def listen() -> None:
        nonlocal listener
        listener = asyncio.ensure_future(_disconnected(request))
        listener.add_done_callback(lambda t: t.cancelled() or this.cancel())

    timer = asyncio.get_running_loop().call_later(LISTEN_FOR_DISCONNECT_AFTER_S, listen)
    try:
        return await work
    except asyncio.CancelledError:
        if listener is not None and listener.done() and not listener.cancelled():
            raise ClientDisconnected(
                "the client disconnected before the result was ready"
            ) from None
        raise
    finally:
        timer.cancel()
        if listener is not None:
            listener.cancel()


async def _disconnected(request: Request) -> None:
    # The body has been read, so the next ASGI message can only be the disconnect.
    while (await request.receive())["type"] != "http.disconnect":
        pass


def _instances(payload: Any) -> list[Any]:
    if not isinstance(payload, dict) or "instances" not in payload:
        raise BadRequest('body must be a JSON object with "instances": [...]')
    instances = payload["instances"]
    if not isinstance(instances, list) or not instances:
        raise BadRequest('"instances" must be a non-empty list')
    return instances


def _timeout(request: Request, default_ms: int) -> float:
    raw = request.headers.get("x-request-timeout-ms")
    if raw is None:
        return default_ms / 1000
    try:
        value = float(raw)
    except ValueError:
        raise BadRequest("X-Request-Timeout-Ms must be a number of milliseconds") from None
    if not 0 < value <= 3_600_000:
        raise BadRequest("X-Request-Timeout-Ms must be between 0 and 3600000")
    return value / 1000


def _ref_from_path(name: str) -> ModelRef:
    ref = ModelRef.parse(name)
    if ref.alias is not None and "@" in ref.alias:
        raise BadRequest(f"malformed model ref '{name}'")
    return ref


async def predict(request: Request) -> Response:
    """`name` is `model`, `model@version` or `model@alias`; a bare name uses `production`."""
    name = request.path_params["name"]
    try:
        ref = _ref_from_path(name)
    except MaasError as exc:
        return render(exc)
    return await _predict(request, ref)


async def predict_version(request: Request) -> Response:
    name, version = request.path_params["name"], request.path_params["version"]
    if not version.isdigit():
        return render(BadRequest(f"version must be a positive integer, got '{version}'"))
    return await _predict(request, ModelRef(model=name, version=int(version)))


async def predict_label(request: Request) -> Response:
    params = request.path_params
    return await _predict(request, ModelRef(model=params["name"], alias=params["alias"]))


_PATHS = (
    ("/v1/models/{name}:predict", predict),
    ("/v1/models/{name}/versions/{version}:predict", predict_version),
    ("/v1/models/{name}/labels/{alias}:predict", predict_label),
)

# The hot path: plain Starlette routes, installed ahead of FastAPI's so no dependency
# resolution or parameter validation runs per request (it cost ~100 us of gateway CPU).
routes = [Route(path, endpoint, methods=["POST"]) for path, endpoint in _PATHS]

# The same paths as FastAPI routes document the native protocol in /openapi.json and /docs;
# requests never reach them, the routes above match first.
for _path, _endpoint in _PATHS:
    router.add_api_route(
        _path, _endpoint, methods=["POST"], openapi_extra=_BODY_DOC, response_class=Response
    )
