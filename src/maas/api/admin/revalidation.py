"""Admin GET answers that a poller can revalidate: each carries an `ETag` (a hash of its body)
and `Cache-Control: no-cache`, and a request whose `If-None-Match` names the current tag gets
304 with no body. The console polls while its tab is visible; while nothing changed it gets a
few bytes back, and knows it need not redraw (nor move the reader's focus).

Every admin router is made with `admin_router()`; the inference routes never pass here."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import APIRouter
from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response

Handler = Callable[[Request], Coroutine[Any, Any, Response]]


class Revalidated(APIRoute):
    def get_route_handler(self) -> Handler:
        handler: Handler = super().get_route_handler()
        if "GET" not in (self.methods or ()):
            return handler

        async def revalidated(request: Request) -> Response:
            response = await handler(request)
            body = getattr(response, "body", None)
            if response.status_code != 200 or not isinstance(body, bytes):
                return response  # a refusal, or a file streamed: as it is
            tag = f'"{hashlib.blake2b(body, digest_size=16).hexdigest()}"'
            if matches(request.headers.get("if-none-match"), tag):
                return Response(status_code=304, headers={"ETag": tag, "Cache-Control": "no-cache"})
            response.headers["ETag"] = tag
            response.headers["Cache-Control"] = "no-cache"
            return response

        return revalidated


def matches(if_none_match: str | None, tag: str) -> bool:
    """Whether an If-None-Match header names `tag` (weakly compared, as RFC 9110 says for
    GET), or is `*`."""
    if not if_none_match:
        return False
    for candidate in if_none_match.split(","):
        candidate = candidate.strip()
        if candidate == "*" or candidate.removeprefix("W/") == tag:
            return True
    return False


def admin_router() -> APIRouter:
    """A router of admin routes: under /admin, its GET answers revalidated."""
    return APIRouter(prefix="/admin", route_class=Revalidated)
