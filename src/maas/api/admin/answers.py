"""What the admin API answers: a model, a version (with its live figures), an alias and its
changes, an audit event, a key, a worker, a gateway, and the lists of each, most built from
the record they show (`from_record`). The routes return these models (`response_model=`), so
/openapi.json describes the very answers they send.

The error and health answers are `maas.api.answers`'s; they are named here too, so that one
module names every answer model /openapi.json documents.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field

from maas.api.admin.propagation import Generation, Propagation, answered
from maas.api.admin.rollout_bodies import IntervalOut as IntervalOut
from maas.api.admin.rollout_bodies import RolloutList as RolloutList
from maas.api.admin.rollout_bodies import RolloutOut as RolloutOut
from maas.api.admin.traffic_answers import TrafficOut as TrafficOut
from maas.api.admin.traffic_answers import TrafficPoint as TrafficPoint
from maas.api.admin.traffic_answers import VersionTraffic as VersionTraffic
from maas.api.admin.version_answers import BatchingOut as BatchingOut
from maas.api.admin.version_answers import VersionDetail as VersionDetail
from maas.api.admin.version_answers import VersionOut as VersionOut
from maas.api.admin.version_answers import VersionStatsOut as VersionStatsOut
from maas.api.answers import Alive as Alive
from maas.api.answers import ErrorBody as ErrorBody
from maas.api.answers import ErrorDetail as ErrorDetail
from maas.api.answers import Healthy as Healthy
from maas.api.answers import NotReady as NotReady
from maas.api.answers import Number, Timestamp
from maas.api.answers import Ready as Ready
from maas.api.answers import V2ErrorBody as V2ErrorBody
from maas.types import AliasAction, Scope

if TYPE_CHECKING:
    from maas.control import plane
    from maas.registry.coordination import GatewayRecord
    from maas.registry.records import (
        AliasRecord,
        HistoryRecord,
        KeyRecord,
        ModelRecord,
    )


class RouteOut(BaseModel):
    version: int
    weight: int = Field(description="share of the alias's traffic, relative to the others")


class ShadowOut(BaseModel):
    """An alias's mirror: `percent` of its requests also run on `version`, whose answers never
    reach the client and are compared with the primary's (`maas_shadow_*` in /metrics)."""

    version: int
    percent: int = Field(description="share of the alias's requests mirrored, 1..100")


class AliasOut(BaseModel):
    """An alias: the version(s) it sends traffic to, with their weights, and its shadow."""

    model: str
    alias: str
    routes: list[RouteOut]
    shadow: ShadowOut | None = Field(description="the alias's mirror; null when it has none")
    updated_at: Timestamp

    @classmethod
    def from_record(cls, a: AliasRecord, **more: Any) -> Self:
        return cls(
            model=a.model,
            alias=a.alias,
            routes=[r.to_json() for r in a.routes],
            shadow=None if a.shadow is None else ShadowOut(**a.shadow.to_json()),
            updated_at=a.updated_at,
            **more,
        )


class AliasChange(AliasOut):
    """The alias after the change (a change that moves nothing answers it as it is)."""

    generation: Generation
    propagated: Propagation

    @classmethod
    def served(cls, a: AliasRecord, p: plane.Propagation) -> Self:
        return cls.from_record(a, **answered(p))


class AliasDeleted(BaseModel):
    model: str
    alias: str
    deleted: Literal[True]
    generation: Generation
    propagated: Propagation

    @classmethod
    def served(cls, model: str, alias: str, p: plane.Propagation) -> Self:
        return cls(model=model, alias=alias, deleted=True, **answered(p))


class ModelOut(BaseModel):
    """A model, every version it has and its aliases."""

    name: str
    description: str
    created_at: Timestamp
    versions: list[VersionOut]
    aliases: list[AliasOut]

    @classmethod
    def from_record(cls, m: ModelRecord) -> Self:
        return cls(
            name=m.name,
            description=m.description,
            created_at=m.created_at,
            versions=[VersionOut.from_record(v) for v in m.versions],
            aliases=[AliasOut.from_record(a) for a in m.aliases],
        )


class ModelList(BaseModel):
    models: list[ModelOut]


class HistoryEntry(BaseModel):
    """One change of an alias."""

    model_config = ConfigDict(validate_by_name=True)  # from_ in Python, "from" on the wire

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

    @classmethod
    def from_record(cls, h: HistoryRecord) -> Self:
        before = h.from_routes
        return cls(
            alias=h.alias,
            from_=None if before is None else [r.to_json() for r in before],
            to=[r.to_json() for r in h.to_routes],
            action=h.action,
            key=h.key,
            at=h.at,
            id=h.id,
            undoes=h.undoes,
        )


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
    created_at: Timestamp
    revoked_at: Timestamp | None
    rate_limit_per_s: Number | None = Field(
        None, description="requests per second (on each host); only on a key that has its own"
    )

    @classmethod
    def from_record(cls, k: KeyRecord, **more: Any) -> Self:
        if k.rate_limit_per_s is not None:  # only then: a key without one has no such key
            more = {"rate_limit_per_s": k.rate_limit_per_s, **more}
        return cls(
            id=k.id,
            name=k.name,
            scopes=list(k.scopes),
            models=list(k.models) if k.models is not None else None,
            expires_at=k.expires_at,
            created_at=k.created_at,
            revoked_at=k.revoked_at,
            **more,
        )


class KeyCreated(KeyOut):
    """The new key, with its secret: the only time the secret is shown."""

    secret: str = Field(description="send it as 'Authorization: Bearer <secret>'")

    @classmethod
    def with_secret(cls, k: KeyRecord, secret: str) -> Self:
        return cls.from_record(k, secret=secret)


class KeyRevoked(KeyOut):
    revoked: Literal[True]
    generation: Generation
    propagated: Propagation

    @classmethod
    def served(cls, k: KeyRecord, p: plane.Propagation) -> Self:
        return cls.from_record(k, revoked=True, **answered(p))


class KeyList(BaseModel):
    keys: list[KeyOut] = Field(description="every key, revoked ones too")


class WorkerVersionStatsOut(BaseModel):
    """The figures of one version on one worker."""

    model_config = ConfigDict(extra="allow")

    key: str = Field(description="the version, e.g. digits@1")
    mean_batch_ms: Number
    queue_depth: int
    batches: int
    instances: int
    mean_batch_size: Number
    mean_inference_ms: Number
    mean_queue_wait_ms: Number
    padding_waste: Number


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
    loading: list[str] | None = Field(
        None, description="the versions it is loading (worker processes only)"
    )
    restarts: int
    endpoint: str | None = Field(None, description="its address (worker processes only)")
    gateways: int | None = Field(
        None, description="gateways connected to it (worker processes only)"
    )
    reason: str | None = Field(
        None,
        description="why it is unhealthy: not answering, or refused (it speaks another "
        "protocol version: a mixed release)",
    )
    stats: list[WorkerVersionStatsOut] | None = Field(
        None, description="per version (worker processes only)"
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
    rollouts: bool = Field(False, description="whether it judges and moves the rollouts")

    @classmethod
    def from_record(cls, g: GatewayRecord, *, leader: bool, rollouts: bool = False) -> Self:
        return cls(
            id=g.id,
            host=g.host,
            pid=g.pid,
            generation=g.generation,
            last_seen=datetime.fromtimestamp(g.last_seen, UTC),
            leader=leader,
            rollouts=rollouts,
        )


class GatewayList(BaseModel):
    generation: int = Field(description="the registry's own generation")
    gateways: list[GatewayOut] = Field(description="every live gateway of this registry")
