"""Wire shapes of the admin API: request bodies (pydantic) and response renderers."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from maas.checks.fields import Int, IsoTime, Number, VersionNumber
from maas.registry.records import (
    AliasRecord,
    EventRecord,
    HistoryRecord,
    KeyRecord,
    ModelRecord,
    Route,
    VersionRecord,
    routes_json,
)
from maas.types import (
    DTYPES,
    MODEL_NAME_RE,
    AliasAction,
    ArtifactFormat,
    Scope,
    VersionStatus,
)


class CreateModel(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=MODEL_NAME_RE.pattern)
    description: str = Field("", max_length=10_000)


class RouteIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: VersionNumber
    weight: Int = Field(ge=1, le=1_000_000)


class SetAlias(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: VersionNumber | None = None
    routes: list[RouteIn] | None = Field(None, min_length=1, max_length=32)
    expected_current: VersionNumber | None = None

    @model_validator(mode="after")
    def _one_target(self) -> SetAlias:
        if (self.version is None) == (self.routes is None):
            raise ValueError('give either "version" or "routes"')
        if self.routes is not None:
            versions = [r.version for r in self.routes]
            if len(versions) != len(set(versions)):
                raise ValueError("each version may appear once in routes")
        return self

    def target_routes(self) -> list[Route]:
        if self.routes is not None:
            return [Route(r.version, r.weight) for r in self.routes]
        assert self.version is not None
        return [Route(self.version, 100)]


class Promote(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: VersionNumber
    alias: str = Field("production", pattern=r"^[a-z][a-z0-9_-]{0,31}$")


class Rollback(BaseModel):
    model_config = ConfigDict(extra="forbid")

    alias: str = Field("production", pattern=r"^[a-z][a-z0-9_-]{0,31}$")
    to_version: VersionNumber | None = None


class PatchBatching(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_batch_size: Int | None = Field(None, ge=1, le=4096)
    max_delay_ms: Number | None = Field(None, ge=0, le=10_000)
    max_queue: Int | None = Field(None, ge=1, le=1_000_000)


class PatchVersion(BaseModel):
    model_config = ConfigDict(extra="forbid")

    batching: PatchBatching | None = None
    description: str | None = Field(None, max_length=10_000)
    tags: dict[str, Any] | None = None


class CreateKey(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=128)
    scopes: list[Scope] = Field(min_length=1)
    models: list[Annotated[str, Field(pattern=MODEL_NAME_RE.pattern)]] | None = Field(
        None, min_length=1, max_length=256, description="the models it may act on; unset: all"
    )
    expires_at: IsoTime | None = Field(None, description="ISO 8601; unset: never")
    rate_limit_per_s: Number | None = Field(
        None,
        gt=0,
        le=1_000_000,
        description="requests per second it may make (on each host); unset: "
        "MAAS_KEY_RATE_LIMIT_PER_S, or no limit",
    )

    @field_validator("expires_at")
    @classmethod
    def _in_the_future(cls, value: datetime | None) -> datetime | None:
        if value is not None and value <= datetime.now(UTC):
            raise ValueError("must be in the future")
        return value


def _ts(value: datetime | None) -> str | None:
    """ISO 8601 with the timezone (SQLite hands back naive UTC datetimes)."""
    if value is None:
        return None
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).isoformat()


def version_json(v: VersionRecord) -> dict[str, Any]:
    return {
        "model": v.model,
        "version": v.version,
        "status": v.status.value,
        "sha256": v.sha256,
        "size": v.size,
        "format": v.format.value,
        "inputs": [s.to_json() for s in v.inputs],
        "outputs": [s.to_json() for s in v.outputs],
        "batching": v.batching,
        "device": v.device,
        "replicas": v.replicas,
        "metrics": v.metrics,
        "tags": v.tags,
        "description": v.description,
        "load_error": v.load_error,
        "created_at": _ts(v.created_at),
        "updated_at": _ts(v.updated_at),
        "loaded_at": _ts(v.loaded_at),
    }


def alias_json(a: AliasRecord) -> dict[str, Any]:
    return {
        "model": a.model,
        "alias": a.alias,
        "routes": routes_json(a.routes),
        "updated_at": _ts(a.updated_at),
    }


def model_json(m: ModelRecord) -> dict[str, Any]:
    return {
        "name": m.name,
        "description": m.description,
        "created_at": _ts(m.created_at),
        "versions": [version_json(v) for v in m.versions],
        "aliases": [alias_json(a) for a in m.aliases],
    }


def history_json(h: HistoryRecord) -> dict[str, Any]:
    return {
        "alias": h.alias,
        "from": routes_json(h.from_routes),
        "to": routes_json(h.to_routes),
        "action": h.action,
        "key": h.key,
        "at": _ts(h.at),
        "id": h.id,
        "undoes": h.undoes,
    }


def event_json(e: EventRecord) -> dict[str, Any]:
    return {
        "id": e.id,
        "at": _ts(e.at),
        "key": e.key,
        "action": e.action,
        "target": e.target,
        "before": e.before,
        "after": e.after,
    }


def key_json(k: KeyRecord, secret: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": k.id,
        "name": k.name,
        "scopes": list(k.scopes),
        "models": list(k.models) if k.models is not None else None,
        "expires_at": _ts(k.expires_at),
        "created_at": _ts(k.created_at),
        "revoked_at": _ts(k.revoked_at),
    }
    if k.rate_limit_per_s is not None:  # only then: the contract's shape stays as it is
        out["rate_limit_per_s"] = k.rate_limit_per_s
    if secret is not None:
        out["secret"] = secret
    return out


# Answers ----------------------------------------------------------------------------------------
# What the admin, health and error answers look like, for /openapi.json and /docs. The routes
# still return the dicts the renderers above build (FastAPI does not pass them through these
# models), so each model must describe those dicts key for key: tests/api/test_openapi.py
# checks real answers against them.

Timestamp = Annotated[
    str,
    Field(
        json_schema_extra={"format": "date-time"},
        description="ISO 8601, with the timezone",
        examples=["2025-01-31T12:00:00.123456+00:00"],
    ),
]
Generation = Annotated[
    int,
    Field(
        description="the registry generation this change committed with (it rises with every "
        "change); once the call returns, every gateway that confirmed serves it"
    ),
]


class ErrorDetail(BaseModel):
    code: str = Field(description="what went wrong, in snake_case (e.g. model_not_found)")
    message: str = Field(description="the same, for a human")


class ErrorBody(BaseModel):
    """Every error of the native and admin routes."""

    error: ErrorDetail


class V2ErrorBody(BaseModel):
    """Every error of the Open Inference Protocol (/v2) routes, in that protocol's shape."""

    error: str = Field(description="what went wrong, for a human")


class TensorSpecOut(BaseModel):
    """One named input or output of a version, as its meta declared it."""

    name: str
    dtype: Literal[DTYPES]  # type: ignore[valid-type]
    shape: list[int] = Field(
        description="one instance's shape, without the batch axis; -1 marks an axis of any length"
    )
    min: float | None = Field(None, description="lowest allowed value (only when declared)")
    max: float | None = Field(None, description="highest allowed value (only when declared)")
    max_shape: list[int] | None = Field(
        None, description="the longest each axis may be (only when declared)"
    )


class RouteOut(BaseModel):
    version: int
    weight: int = Field(description="share of the alias's traffic, relative to the others")


class BatchingOut(BaseModel):
    """How requests to the version are batched together."""

    model_config = ConfigDict(extra="allow")

    max_batch_size: int = Field(description="most instances in one batch")
    max_delay_ms: float = Field(description="longest a batch waits to fill up")
    max_queue: int = Field(description="most instances waiting; more answer 429")
    pad_value: int | float | dict[str, int | float] | None = Field(
        None,
        description="value that pads -1 axes to one length in a batch, as given: one number for "
        "every input, or one per input name (only when set)",
    )
    buckets: list[int] | None = Field(
        None, description="lengths that -1 axes are padded up to (only when set)"
    )


class VersionOut(BaseModel):
    """A version of a model."""

    model: str
    version: int
    status: VersionStatus = Field(
        description="registered -> loading -> ready, or failed (see load_error); unloaded; "
        "archived. Only ready versions serve traffic."
    )
    sha256: str = Field(description="the artifact's content hash")
    size: int = Field(description="the artifact's size in bytes")
    format: ArtifactFormat
    inputs: list[TensorSpecOut]
    outputs: list[TensorSpecOut]
    batching: BatchingOut
    device: str = Field(description="auto, cpu, cuda or cuda:N")
    replicas: int | None = Field(
        description="on how many workers it is loaded; null: on every worker"
    )
    metrics: dict[str, Any] = Field(description="offline evaluation figures, as uploaded")
    tags: dict[str, Any]
    description: str
    load_error: str | None = Field(description="why the last load failed (status failed)")
    created_at: Timestamp
    updated_at: Timestamp
    loaded_at: Timestamp | None = Field(description="when it last became ready")


class VersionStatsOut(BaseModel):
    """Live figures of the version on the workers serving it (only `loaded` until one does)."""

    model_config = ConfigDict(extra="allow")

    loaded: bool = Field(description="whether a worker holds it now")
    queue_depth: int | None = Field(None, description="instances waiting now")
    batches: int | None = Field(None, description="batches run")
    instances: int | None = Field(None, description="instances run")
    mean_batch_size: float | None = None
    mean_inference_ms: float | None = None
    mean_queue_wait_ms: float | None = None
    padding_waste: float | None = Field(
        None, description="share of a batch's elements that were padding"
    )


class VersionDetail(VersionOut):
    """A version of a model, with its live figures."""

    stats: VersionStatsOut


class AliasOut(BaseModel):
    """An alias: the version(s) it sends traffic to, with their weights."""

    model: str
    alias: str
    routes: list[RouteOut]
    updated_at: Timestamp


class Propagation(BaseModel):
    """Which live gateways serve the change (within MAAS_PROPAGATION_TIMEOUT_MS)."""

    gateways: int = Field(description="live gateways of this registry")
    confirmed: int = Field(description="those that serve the generation")
    missing: list[str] = Field(description='those that did not confirm in time ("host:pid")')


class AliasChange(AliasOut):
    """The alias after the change (a change that moves nothing answers it as it is)."""

    generation: Generation
    propagated: Propagation


class AliasDeleted(BaseModel):
    model: str
    alias: str
    deleted: Literal[True]
    generation: Generation
    propagated: Propagation


class ModelOut(BaseModel):
    """A model, every version it has and its aliases."""

    name: str
    description: str
    created_at: Timestamp
    versions: list[VersionOut]
    aliases: list[AliasOut]


class ModelList(BaseModel):
    models: list[ModelOut]


class HistoryEntry(BaseModel):
    """One change of an alias."""

    alias: str
    from_: list[RouteOut] | None = Field(
        alias="from", description="the routes before (null for a new alias)"
    )
    to: list[RouteOut] = Field(description="the routes after (empty when it was deleted)")
    action: AliasAction
    key: str | None = Field(description="name of the key that made the change")
    at: Timestamp
    id: int
    undoes: int | None = Field(description="the id of the change a rollback undid")


class HistoryList(BaseModel):
    history: list[HistoryEntry] = Field(description="newest first")


class EventOut(BaseModel):
    """One entry of the audit log."""

    id: int
    at: Timestamp
    key: str | None = Field(description="name of the key that acted (system: maas itself)")
    action: str = Field(description="e.g. model.create, version.create, alias.promote")
    target: str = Field(description="e.g. digits, digits@4, digits/production, key/3")
    before: Any = Field(description="the state before (JSON), or null")
    after: Any = Field(description="the state after (JSON), or null")


class EventList(BaseModel):
    events: list[EventOut] = Field(description="newest first")


class KeyOut(BaseModel):
    """An API key, without its secret."""

    id: int
    name: str
    scopes: list[Scope]
    models: list[str] | None = Field(description="the models it may act on; null: all")
    expires_at: Timestamp | None = Field(description="null: never")
    rate_limit_per_s: float | None = Field(
        None, description="requests per second (on each host); only on a key that has its own"
    )
    created_at: Timestamp
    revoked_at: Timestamp | None


class KeyCreated(KeyOut):
    """The new key, with its secret: the only time the secret is shown."""

    secret: str = Field(description="send it as 'Authorization: Bearer <secret>'")


class KeyRevoked(KeyOut):
    revoked: Literal[True]
    generation: Generation
    propagated: Propagation


class KeyList(BaseModel):
    keys: list[KeyOut] = Field(description="every key, revoked ones too")


class WorkerVersionStatsOut(BaseModel):
    """The figures of one version on one worker."""

    model_config = ConfigDict(extra="allow")

    key: str = Field(description="the version, e.g. digits@1")
    mean_batch_ms: float
    queue_depth: int
    batches: int
    instances: int
    mean_batch_size: float
    mean_inference_ms: float
    mean_queue_wait_ms: float
    padding_waste: float


class WorkerOut(BaseModel):
    """A worker: its process, device, health and the versions it holds."""

    id: str
    pid: int | None = Field(description="null until it has reported")
    host: str | None
    device: str | None
    memory_total_bytes: int | None = Field(
        None, description="its device's memory (the host's for a CPU worker); null if unknown"
    )
    memory_free_bytes: int | None = Field(
        None, description="free memory on its device, as placement sees it; null if unknown"
    )
    threads: int | None = Field(None, description="its torch threads (CPU capacity)")
    healthy: bool
    queue_depth: int
    versions: list[str] = Field(description='the versions it holds, e.g. ["digits@1"]')
    restarts: int
    loading: list[str] | None = Field(
        None, description="the versions it is loading (worker processes only)"
    )
    endpoint: str | None = Field(None, description="its address (worker processes only)")
    gateways: int | None = Field(
        None, description="gateways connected to it (worker processes only)"
    )
    stats: list[WorkerVersionStatsOut] | None = Field(
        None, description="per version (worker processes only)"
    )
    reason: str | None = Field(
        None,
        description="why it is unhealthy: not answering, or refused (it speaks another "
        "protocol version: a mixed release)",
    )


class WorkerList(BaseModel):
    workers: list[WorkerOut]


class GatewayOut(BaseModel):
    id: str = Field(description='"host:pid"')
    host: str
    pid: int
    generation: int = Field(description="the registry generation it serves")
    last_seen: Timestamp
    leader: bool = Field(description="whether it places versions on the workers")


class GatewayList(BaseModel):
    generation: int = Field(description="the registry's own generation")
    gateways: list[GatewayOut] = Field(description="every live gateway of this registry")


class Alive(BaseModel):
    status: Literal["alive"]


class Healthy(BaseModel):
    status: Literal["ok"]


class Ready(BaseModel):
    ready: Literal[True]
    degraded: list[str] | None = Field(
        None,
        description="what is wrong but does not stop serving (e.g. the registry is down and "
        "the gateway serves its last routing table); absent when nothing is",
    )


class NotReady(BaseModel):
    ready: Literal[False]
    reasons: list[str] = Field(description="why not, e.g. 'migrations have not run'")
    degraded: list[str]
