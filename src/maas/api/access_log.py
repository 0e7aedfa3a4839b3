"""The access log: one line per admin change always, and per request with `MAAS_ACCESS_LOG`.

A line is `<client> "<METHOD> <path>" <status> <ms> ms key=<name>` under the `maas.access`
logger, so it carries the timestamp and shape of every other maas log line. Requests that are
not logged pass straight through: the hot path pays one test.
"""

from __future__ import annotations

import logging
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("maas.access")

_READS = frozenset({"GET", "HEAD", "OPTIONS"})


def wanted(scope: Scope, every_request: bool) -> bool:
    if scope["type"] != "http":
        return False
    if every_request:
        return True
    return scope["method"] not in _READS and scope["path"].startswith("/admin/")


async def logged(app: ASGIApp, scope: Scope, receive: Receive, send: Send) -> None:
    started = time.perf_counter()
    status = 0

    async def send_noting_status(message: Message) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        await send(message)

    try:
        await app(scope, receive, send_noting_status)
    finally:
        client = scope.get("client")
        principal = scope.get("state", {}).get("principal")
        log.info(
            '%s "%s %s" %s %.1f ms key=%s',
            client[0] if client else "-",
            scope["method"],
            scope["path"],
            status or "-",
            (time.perf_counter() - started) * 1000,
            principal.name if principal is not None else "-",
        )
