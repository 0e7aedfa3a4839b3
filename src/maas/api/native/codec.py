"""Native inference REST (TF-Serving style, with `@` refs): the hot path, kept lean.

`predict` is a plain ASGI handler the app calls before any of its middleware or routing (see
`maas.app.MaasApp`): Starlette's layers, Request and Response objects cost about a third of a
gateway's CPU per small request. It reads top to bottom as the request is served:

    match the path → auth → resolve the ref → read the body → batcher and worker → answer

Every request that reaches it is counted once in `maas_requests_total`, under the version its
ref resolved to. The same paths are declared as FastAPI routes for /openapi.json and /docs;
POSTs never reach those, and other methods get FastAPI's 405.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
import uuid
from collections.abc import Awaitable
from typing import Any, TypeVar

import orjson
from fastapi import APIRouter
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from maas.api.body import parse_json, read_body
from maas.api.errors import error_response, render
from maas.dataplane import Prediction
from maas.errors import BadRequest, ClientDisconnected, MaasError, VersionNotReady
from maas.metrics import PROTOCOL_V1, UNKNOWN_MODEL, UNKNOWN_VERSION
from maas.services import Services
from maas.types import ModelRef
from maas.types import Scope as KeyScope

log = logging.getLogger(__name__)

_PREFIX, _SUFFIX = "/v1/models/", ":predict"


def match(path: str) -> ModelRef | MaasError | None:
    """The ref a predict path names, the client's mistake in it, or None: not ours.

    `/v1/models/{name}:predict` (name: `model`, `model@version` or `model@alias`),
    `/v1/models/{name}/versions/{version}:predict`, `/v1/models/{name}/labels/{alias}:predict`.
    """
    if not (path.startswith(_PREFIX) and path.endswith(_SUFFIX)):
        return None
    parts = path[len(_PREFIX) : -len(_SUFFIX)].split("/")
    if not all(parts):
        return None
    if len(parts) == 1:
        ref = ModelRef.parse(parts[0])
        if ref.alias is not None and "@" in ref.alias:
            return BadRequest(f"malformed model ref '{parts[0]}'")
        return ref
    if len(parts) == 3 and parts[1] == "versions":
        if not parts[2].isdigit():
            return BadRequest(f"version must be a positive integer, got '{parts[2]}'")
        return ModelRef(model=parts[0], version=int(parts[2]))
    if len(parts) == 3 and parts[1] == "labels":
        return ModelRef(model=parts[0], alias=parts[2])
    return None


async def predict(
    services: Services, scope: Scope, receive: Receive, send: Send, ref: ModelRef | MaasError
) -> None:
    started = time.perf_counter()
    head = _Head(scope["headers"])
    model, version = UNKNOWN_MODEL, UNKNOWN_VERSION
    status = 500
    try:
        try:
            if isinstance(ref, MaasError):
                raise ref
            if services.settings.require_infer_key:
                await services.auth.require(head.authorization, KeyScope.INFER)
            record = await services.dataplane.resolve(ref, routing_key=head.routing_key)
            model, version = record.model, str(record.version)
            timeout_s = head.timeout_s(services.settings.request_timeout_ms)
            body = await read_body(receive, services.settings.max_body_bytes, head.length)
            instances = _instances(parse_json(body))
            result = await _unless_disconnected(
                receive, services.dataplane.predict(record, instances, timeout_s=timeout_s)
            )
        except VersionNotReady as exc:
            if exc.model is not None:  # it resolved to a version that cannot serve now
                model, version = exc.model, str(exc.version)
            status = await _reply(render(exc, {"X-Request-Id": head.request_id}), scope, send)
        except MaasError as exc:
            status = await _reply(render(exc, {"X-Request-Id": head.request_id}), scope, send)
        else:
            status = 200
            await _answer(send, result, head.request_id)
    except asyncio.CancelledError:
        status = 499  # the server is stopping, or the client is gone: nobody reads an answer
        raise
    except Exception:
        log.exception("unhandled error on %s", scope["path"])
        if status != 500:
            raise  # the answer had begun: the server closes the connection
        response = error_response(500, "internal_error", "internal error; see the server log")
        await response(scope, receive, send)
    finally:
        services.metrics.observe(model, version, PROTOCOL_V1, status, time.perf_counter() - started)


class _Head:
    """What the request's headers say, read in one pass over them."""

    __slots__ = ("_timeout", "authorization", "length", "request_id", "routing_key")

    def __init__(self, headers: list[tuple[bytes, bytes]]) -> None:
        self.authorization: str | None = None
        self.length: int | None = None
        self.request_id = ""
        self.routing_key: str | None = None
        self._timeout: bytes | None = None
        for name, value in headers:
            if name == b"content-length":
                self.length = int(value) if value.isdigit() else None
            elif name == b"x-request-id":
                self.request_id = value.decode("latin-1")
            elif name == b"authorization":
                self.authorization = value.decode("latin-1")
            elif name == b"x-request-timeout-ms":
                self._timeout = value
            elif name == b"x-routing-key":
                self.routing_key = value.decode("latin-1")
        if not self.request_id:
            self.request_id = _new_request_id()

    def timeout_s(self, default_ms: int) -> float:
        if self._timeout is None:
            return default_ms / 1000
        try:
            value = float(self._timeout)
        except ValueError:
            raise BadRequest("X-Request-Timeout-Ms must be a number of milliseconds") from None
        if not 0 < value <= 3_600_000:
            raise BadRequest("X-Request-Timeout-Ms must be between 0 and 3600000")
        return value / 1000


def _instances(payload: Any) -> list[Any]:
    if not isinstance(payload, dict) or "instances" not in payload:
        raise BadRequest('body must be a JSON object with "instances": [...]')
    instances = payload["instances"]
    if not isinstance(instances, list) or not instances:
        raise BadRequest('"instances" must be a non-empty list')
    return instances


async def _answer(send: Send, result: Prediction, request_id: str) -> None:
    body = orjson.dumps(
        {"predictions": result.predictions, "model": result.model, "version": result.version},
        option=orjson.OPT_SERIALIZE_NUMPY,
    )
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"x-model-name", result.model.encode()),
        (b"x-model-version", str(result.version).encode()),
        (b"x-request-id", request_id.encode("latin-1")),
    ]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _reply(response: Response, scope: Scope, send: Send) -> int:
    async def nothing() -> dict[str, Any]:  # a Response never reads the request
        return {"type": "http.disconnect"}

    await response(scope, nothing, send)
    return response.status_code


# Request ids unique across processes and restarts without a uuid4 (an urandom call) each.
_ID_PREFIX = uuid.uuid4().hex[:12]
_id_counter = itertools.count(1)


def _new_request_id() -> str:
    return f"{_ID_PREFIX}{next(_id_counter):012x}"


T = TypeVar("T")

# Listening for a disconnect costs a task per request (~60 us of gateway CPU, a third of the
# whole path); most requests are answered sooner than this, so only slower ones pay for it.
LISTEN_FOR_DISCONNECT_AFTER_S = 0.05


async def _unless_disconnected(receive: Receive, work: Awaitable[T]) -> T:
    """Run `work`, cancelling it if the client hangs up first (its result would go nowhere).

    Cancelling reaches the worker as a Cancel message, so a queued request is not computed.
    A request answered within LISTEN_FOR_DISCONNECT_AFTER_S is never watched.
    """
    this = asyncio.current_task()
    assert this is not None
    listener: asyncio.Future[None] | None = None

    def listen() -> None:
        nonlocal listener
        listener = asyncio.ensure_future(_disconnected(receive))
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


async def _disconnected(receive: Receive) -> None:
    # The body has been read, so the next ASGI message can only be the disconnect.
    while (await receive())["type"] != "http.disconnect":
        pass


# For /openapi.json and /docs only (see the module's docstring).
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


async def _documented() -> Response:  # pragma: no cover - never routed to
    raise AssertionError("POST predict requests are served by maas.api.routes.inference.predict")


for _path in (
    "/v1/models/{name}:predict",
    "/v1/models/{name}/versions/{version}:predict",
    "/v1/models/{name}/labels/{alias}:predict",
):
    router.add_api_route(
        _path,
        _documented,
        methods=["POST"],
        openapi_extra=_BODY_DOC,
        response_class=Response,
        summary="Predict",
    )
