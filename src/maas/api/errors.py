"""One table from error class to HTTP status, and the two error shapes of CONTRACT.

The native and admin routes answer `{"error": {"code", "message"}}`; the Open Inference
Protocol's routes (everything under `/v2`) answer its own `{"error": "<message>"}`, which
Triton's and KServe's clients read. Both shapes come from the same table, so a class of
error has one status everywhere, except that v2 reports a tensor that does not fit the model
as 400, as Triton does, where the native routes say 422.
"""

from __future__ import annotations

import logging
import re

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.routing import compile_path

from maas import errors
from maas.serving.codec import Reply

log = logging.getLogger(__name__)

STATUS: dict[type[errors.MaasError], int] = {
    errors.BadRequest: 400,
    errors.Unauthenticated: 401,
    errors.Forbidden: 403,
    errors.NotFound: 404,
    errors.Conflict: 409,
    errors.PayloadTooLarge: 413,
    errors.InsufficientStorage: 507,
    errors.InvalidInput: 422,
    errors.InvalidArtifact: 422,
    errors.Overloaded: 429,
    errors.ClientDisconnected: 499,  # nginx's "client closed request": nobody reads it
    errors.Unavailable: 503,
    errors.DeadlineExceeded: 504,
    errors.ModelLoadError: 422,
}
V2_STATUS: dict[type[errors.MaasError], int] = {**STATUS, errors.InvalidInput: 400}

_HTTP_CODES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
}


def status_for(exc: errors.MaasError, table: dict[type[errors.MaasError], int] = STATUS) -> int:
    for cls in type(exc).__mro__:
        if cls in table:
            return table[cls]
    return 500


def error_headers(exc: errors.MaasError) -> list[tuple[bytes, bytes]]:
    if isinstance(exc, errors.Overloaded):
        return [(b"retry-after", str(max(1, round(exc.retry_after))).encode())]
    if isinstance(exc, errors.Unauthenticated):
        return [(b"www-authenticate", b"Bearer")]
    return []


def native_error(exc: errors.MaasError) -> Reply:
    body = orjson.dumps({"error": {"code": exc.code, "message": exc.message}})
    return Reply(status_for(exc), body, headers=error_headers(exc))


def v2_error(exc: errors.MaasError) -> Reply:
    body = orjson.dumps({"error": exc.message})
    return Reply(status_for(exc, V2_STATUS), body, headers=error_headers(exc))


def is_v2(path: str) -> bool:
    return path == "/v2" or path.startswith("/v2/")


def to_response(reply: Reply, headers: dict[str, str] | None = None) -> Response:
    merged = {name.decode("latin-1"): value.decode("latin-1") for name, value in reply.headers}
    merged.update(headers or {})
    return Response(
        reply.body,
        status_code=reply.status,
        media_type=reply.content_type.decode("latin-1"),
        headers=merged,
    )


def render(exc: errors.MaasError, path: str = "") -> Response:
    """The error answer of a FastAPI route, in the shape its path's protocol uses."""
    return to_response(v2_error(exc) if is_v2(path) else native_error(exc))


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None, path: str = ""
) -> Response:
    """An error that is not a MaasError (HTTP routing, request validation), same shapes."""
    payload = {"error": message} if is_v2(path) else {"error": {"code": code, "message": message}}
    return to_response(Reply(status, orjson.dumps(payload)), headers)


def _allowed_methods(app: FastAPI, path: str) -> list[str]:
    """Every method the API serves at `path`, as /openapi.json lists them. Of the templates
    that match, the most literal ones win: `/v1/models/x:predict` is the predict route's (POST),
    not the status route's `/v1/models/{name}` (whose GET answers 405 to a predict path)."""
    table: list[tuple[re.Pattern[str], int, set[str]]] | None = getattr(
        app.state, "allow_table", None
    )
    if table is None:
        table = [
            (
                compile_path(template)[0],
                len(re.sub(r"{[^}]*}", "", template)),
                {method.upper() for method in item},
            )
            for template, item in app.openapi().get("paths", {}).items()
        ]
        app.state.allow_table = table
    matches = [(literal, served) for pattern, literal, served in table if pattern.match(path)]
    best = max((literal for literal, _ in matches), default=0)
    return sorted(set().union(*(served for literal, served in matches if literal == best)))


def install(app: FastAPI) -> None:
    async def on_maas_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, errors.MaasError)
        return render(exc, request.url.path)

    async def on_validation(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        path = request.url.path
        problems = exc.errors()
        if any(p.get("type") == "json_invalid" for p in problems):
            return error_response(400, "bad_request", "request body is not valid JSON", path=path)
        parts = []
        for p in problems[:5]:
            where = ".".join(str(x) for x in p.get("loc", ()) if x != "body") or "body"
            parts.append(f"{where}: {p.get('msg')}")
        return error_response(422, "invalid_request", "; ".join(parts), path=path)

    async def on_http(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            # Starlette names the methods of the first route that matched the path; a path
            # served by several routes (GET and POST apart) allows all of theirs.
            headers["Allow"] = ", ".join(_allowed_methods(app, request.url.path)) or headers.get(
                "Allow", ""
            )
        return error_response(exc.status_code, code, str(exc.detail), headers, request.url.path)

    async def on_unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error", exc_info=exc)
        return error_response(
            500, "internal_error", "internal error; see the server log", path=request.url.path
        )

    app.add_exception_handler(errors.MaasError, on_maas_error)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(Exception, on_unexpected)
