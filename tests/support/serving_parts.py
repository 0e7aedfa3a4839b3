"""The serving layer put together by hand, without HTTP or a database: a registry that hands
the router fixed records, a `DataPlane` over a `FakeBackend`, metrics and auth that record what
they were asked, and `call` to drive `maas.serving.call.serve` as an ASGI server would."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from maas.config import Settings
from maas.control.routing import Router
from maas.dispatch.fake import WORKER, FakeBackend, Handler
from maas.errors import Forbidden, MaasError, RegistryUnavailable, Unauthenticated
from maas.observability.metrics import RequestMetrics
from maas.registry.records import Route, VersionRecord
from maas.serving.call import serve
from maas.serving.codec import Codec
from maas.serving.dataplane import DataPlane
from maas.serving.shadow import Mirror
from maas.types import ModelRef, Shadow, TensorSpec, VersionStatus
from support.sample_records import version_record

X4 = (TensorSpec("x", "float32", (4,)),)
Y3 = (TensorSpec("y", "float32", (3,)),)


def version(
    model: str = "m",
    number: int = 1,
    status: VersionStatus = VersionStatus.READY,
    *,
    max_batch_size: int = 8,
    max_queue: int = 64,
    inputs: tuple[TensorSpec, ...] = X4,
    outputs: tuple[TensorSpec, ...] = Y3,
) -> VersionRecord:
    """A version record as the registry would hand it over (4 numbers in, 3 out)."""
    return dataclasses.replace(
        version_record(*inputs, outputs=outputs),
        model=model,
        version=number,
        status=status,
        sha256=f"{number:064x}",
        batching={"max_batch_size": max_batch_size, "max_delay_ms": 2, "max_queue": max_queue},
    )


@dataclass
class _Alias:
    alias: str
    routes: tuple[Route, ...]
    shadow: Shadow | None = None


@dataclass
class _Model:
    name: str
    versions: list[VersionRecord]
    aliases: list[_Alias]


class StaticRegistry:
    """What `Router` reads of a registry: models (`put`, `alias`), read by `list_models`;
    `reads` counts the reads, and `down` makes them fail as an unreachable database does."""

    def __init__(self) -> None:
        self.models: dict[str, _Model] = {}
        self.reads = 0
        self.down = False
        self.listeners: list[Callable[[int], None]] = []

    def on_change(self, callback: Callable[[int], None]) -> None:
        self.listeners.append(callback)

    def put(self, record: VersionRecord) -> None:
        model = self.models.setdefault(record.model, _Model(record.model, [], []))
        model.versions = [v for v in model.versions if v.version != record.version] + [record]

    def alias(self, model: str, alias: str, *routes: tuple[int, int]) -> None:
        entry = self.models[model]
        entry.aliases = [a for a in entry.aliases if a.alias != alias]
        entry.aliases.append(_Alias(alias, tuple(Route(v, w) for v, w in routes)))

    def shadow(self, model: str, alias: str, shadow: Shadow | None) -> None:
        """Set (None: remove) an existing alias's shadow."""
        entry = self.models[model]
        entry.aliases = [
            dataclasses.replace(a, shadow=shadow) if a.alias == alias else a for a in entry.aliases
        ]

    def changed(self) -> None:
        """What the registry does after a change this process made: tell its listeners."""
        for listener in self.listeners:
            listener(0)

    async def list_models(self) -> list[_Model]:
        self.reads += 1
        if self.down:
            raise RegistryUnavailable("the registry database cannot be reached")
        return list(self.models.values())

    async def newest_rollouts(self) -> list[Any]:
        return []


def router(registry: StaticRegistry) -> Router:
    # Router reads only `on_change`, `list_models` and `newest_rollouts` of its registry.
    return Router(registry)  # type: ignore[arg-type]


async def loaded(backend: FakeBackend, *records: VersionRecord) -> FakeBackend:
    """`backend` with each of `records` loaded on its one worker, as placement would."""
    for record in records:
        await backend.load_on(WORKER, record.load_spec("/nowhere"))
    return backend


@dataclass
class Observed:
    model: str
    version: str
    protocol: str
    code: int


class RecordingMetrics:
    """`RequestMetrics.observe`, kept: every request the pipeline counted."""

    def __init__(self) -> None:
        self.observed: list[Observed] = []
        self.reached_model: list[bool] = []  # per request: handed to the data plane

    def observe(
        self,
        model: str,
        version: str,
        protocol: str,
        code: int,
        seconds: float,
        phases: tuple[float, ...] | None = None,
        reached_model: bool = False,
    ) -> None:
        assert seconds >= 0
        self.observed.append(Observed(model, version, protocol, code))
        self.reached_model.append(reached_model)


class KeyAuth:
    """An `Authenticator` that knows one key, good for `models` (every model if None)."""

    def __init__(self, key: str = "good-key", models: set[str] | None = None) -> None:
        self.key = key
        self.models = models
        self.asked: list[tuple[str | None, str | None]] = []

    async def require(self, authorization: str | None, scope: Any, model: str | None = None) -> Any:
        self.asked.append((authorization, model))
        if authorization != f"Bearer {self.key}":
            raise Unauthenticated("missing or unknown API key")
        if self.models is not None and model not in self.models:
            raise Forbidden(f"this key may not use model '{model}'")
        return object()


@dataclass
class Services:
    """A `CallServices`: what `serve` reaches of its gateway."""

    settings: Settings
    dataplane: DataPlane
    metrics: RecordingMetrics = field(default_factory=RecordingMetrics)
    auth: Any = field(default_factory=KeyAuth)
    # The mirror to aliases' shadows, counting into `exposition`'s maas_shadow_* families.
    max_mirrors: int = 64
    mirror_timeout_s: float = 30.0
    mirror_batches: int = 4  # batches of mirrors one candidate may have running
    exposition: RequestMetrics = field(default_factory=RequestMetrics)
    shadow: Mirror = field(init=False)

    def __post_init__(self) -> None:
        self.shadow = Mirror(
            self.dataplane,
            self.exposition.shadow,
            max_in_flight=self.max_mirrors,
            timeout_s=self.mirror_timeout_s,
            max_batches=self.mirror_batches,
        )


async def stack(
    handler: Handler, *records: VersionRecord, aliases: Sequence[tuple[str, str, int]] = ()
) -> tuple[StaticRegistry, FakeBackend, DataPlane]:
    """A registry holding `records` (and `aliases`: (model, alias, version)), a fake backend
    with them loaded, and the data plane over both."""
    registry = StaticRegistry()
    for record in records:
        registry.put(record)
    for model, alias, number in aliases:
        registry.alias(model, alias, (number, 100))
    backend = await loaded(FakeBackend(handler), *records)
    return registry, backend, DataPlane(router(registry), backend)


@dataclass
class Answer:
    status: int
    headers: dict[bytes, bytes]
    body: bytes

    def json(self) -> Any:
        return orjson.loads(self.body)


async def call(
    services: Services,
    codec: Codec[Any],
    ref: ModelRef | MaasError,
    body: bytes | Any,
    *,
    headers: Sequence[tuple[bytes, bytes]] = (),
    hang_up: asyncio.Event | None = None,
) -> Answer | None:
    """One request through `serve`: `body` (JSON-encoded unless bytes) in one message, then
    a disconnect once `hang_up` is set (never, if None). The answer, or None if none was sent."""
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    messages: list[dict[str, Any]] = []
    received = 0

    async def receive() -> dict[str, Any]:
        nonlocal received
        received += 1
        if received == 1:
            return {"type": "http.request", "body": raw, "more_body": False}
        await (hang_up or asyncio.Event()).wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        messages.append(message)

    scope = {"type": "http", "method": "POST", "path": "/test", "headers": list(headers)}
    await serve(services, codec, ref, scope, receive, send)  # type: ignore[arg-type]
    if not messages:
        return None
    start, content = messages
    assert start["type"] == "http.response.start"
    assert content["type"] == "http.response.body"
    return Answer(start["status"], dict(start["headers"]), content["body"])
