"""One inference call, whatever its protocol: the request's whole life on a gateway.

`serve` is a plain ASGI handler (the app calls it before FastAPI's middleware and routing:
see `maas.api.fastpath`), and reads top to bottom as a request is served:

    auth → resolve the ref → deadline → body (capped, inflated) → codec.decode
         → data plane (batcher and worker), raced against the client hanging up
         → the alias's shadow, if it has one (handed over, never awaited: `maas.serving.shadow`)
         → codec.encode → answer

A protocol contributes only its `Codec`; auth (`MAAS_REQUIRE_INFER_KEY`), resolution at
admission, the deadline, the body cap, the disconnect race and the metrics are the same for
all. Every call is counted once in `maas_requests_total` with the codec's protocol, under
the version its ref resolved to (`_unknown`/`_` when it resolved to nothing).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable
from typing import Any, Protocol, TypeVar

from starlette.types import Receive, Scope, Send

from maas.auth.keys import Authenticator
from maas.config import Settings
from maas.errors import ClientDisconnected, InternalError, MaasError, VersionNotReady
from maas.observability.metrics import UNKNOWN_MODEL, UNKNOWN_VERSION, RequestMetrics
from maas.serving.body import decode_content, read_body
from maas.serving.codec import Codec, Decoded, Reply
from maas.serving.dataplane import DataPlane
from maas.serving.head import RequestHead
from maas.serving.images import ImageLimits, may_carry_image
from maas.serving.shadow import Mirror
from maas.types import ModelRef, Timing
from maas.types import Scope as KeyScope

log = logging.getLogger(__name__)

# Bodies and answers this large are decoded and encoded on a thread: parsing megabytes of
# JSON on the event loop would stall every other request of this gateway meanwhile. Binary
# tensors are only viewed: a v2 binary body counts by its JSON header. A body that may carry
# an image for a version that declares pre-processing is decoded on a thread whatever its size.
OFFLOAD_BYTES = 256 * 1024


class CallServices(Protocol):
    """What a call reaches of its gateway (the app's `Services` is one)."""

    settings: Settings
    auth: Authenticator
    dataplane: DataPlane
    metrics: RequestMetrics
    shadow: Mirror


async def serve(
    services: CallServices,
    codec: Codec[Any],
    ref: ModelRef | MaasError,
    scope: Scope,
    receive: Receive,
    send: Send,
) -> None:
    started = time.monotonic()
    timing = Timing()  # the worker's part of the request's phases
    head = RequestHead(scope["headers"])
    settings = services.settings
    model, version = UNKNOWN_MODEL, UNKNOWN_VERSION
    status = 0  # nothing sent yet
    inferring = 0.0  # when the request was handed to the data plane
    try:
        try:
            if isinstance(ref, MaasError):
                raise ref
            if settings.require_infer_key:
                # The model asked for, before it is looked up: a key limited to other models
                # learns nothing of which models exist.
                await services.auth.require(head.authorization, KeyScope.INFER, ref.model)
            record = await services.dataplane.resolve(ref, routing_key=head.routing_key)
            model, version = record.model, str(record.version)
            timeout_s = head.timeout_s(settings.request_timeout_ms)
            body = await read_body(receive, settings.max_body_bytes, head.length)
            body = decode_content(body, head.content_encoding, settings.max_body_bytes)
            if record.preprocess:  # images may come: their caps, and decoding off the loop
                head.image_limits = ImageLimits(settings.max_image_bytes, settings.max_image_pixels)
                offload = may_carry_image(body, head.content_type())
            else:
                offload = False
            if not offload and head.json_bytes(len(body)) < OFFLOAD_BYTES:
                request: Decoded[Any] = codec.decode(body, head, record)
            else:
                request = await asyncio.to_thread(codec.decode, body, head, record)
            if request.timeout_s is not None:
                timeout_s = min(timeout_s, request.timeout_s)
            inferring = time.monotonic()
            outputs = await _unless_disconnected(
                receive,
                services.dataplane.infer(
                    record, request.groups, timeout_s=timeout_s, timing=timing
                ),
            )
            services.shadow.mirror(ref, record, request.groups, outputs, since=inferring)
            if sum(a.nbytes for group in outputs for a in group) < OFFLOAD_BYTES:
                reply = codec.encode(request, outputs, record)
            else:
                reply = await asyncio.to_thread(codec.encode, request, outputs, record)
            reply.headers += (
                (b"x-model-name", record.model.encode()),
                (b"x-model-version", version.encode()),
            )
        except VersionNotReady as exc:
            if exc.model is not None:  # it resolved to a version that cannot serve now
                model, version = exc.model, str(exc.version)
            reply = _named(codec.error(exc), model, version)
        except MaasError as exc:
            reply = _named(codec.error(exc), model, version)
        status = reply.status
        await _answer(send, reply, head.request_id)
    except asyncio.CancelledError:
        status = 499  # the server is stopping, or the client is gone: nobody reads an answer
        raise
    except Exception:
        log.exception("unhandled error on %s", scope["path"])
        if status:
            raise  # the answer had begun: the server closes the connection
        status = 500
        await _answer(send, codec.error(InternalError("internal error; see the server log")), "")
    finally:
        ended = time.monotonic()
        services.metrics.observe(
            model,
            version,
            codec.protocol,
            status,
            ended - started,
            timing.phases(started, ended),
            inferring > 0.0,
        )


def _named(reply: Reply, model: str, version: str) -> Reply:
    """A refusal names the version the request resolved to, as an answer does: on an alias
    split between versions, the client can tell which one failed."""
    if version != UNKNOWN_VERSION:
        reply.headers += ((b"x-model-name", model.encode()), (b"x-model-version", version.encode()))
    return reply


async def _answer(send: Send, reply: Reply, request_id: str) -> None:
    headers = [
        (b"content-type", reply.content_type),
        (b"content-length", str(len(reply.body)).encode()),
        (b"x-request-id", request_id.encode("latin-1")),
        *reply.headers,
    ]
    await send({"type": "http.response.start", "status": reply.status, "headers": headers})
    await send({"type": "http.response.body", "body": reply.body})


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
