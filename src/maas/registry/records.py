"""Frozen views of registry rows: what the registry hands to the rest of maas."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from maas.registry.tables import (
    Alias,
    AliasHistory,
    ApiKey,
    AuditEvent,
    Model,
    ModelVersion,
    Rollout,
)
from maas.rollout import RolloutPlan, RolloutState
from maas.types import (
    ArtifactFormat,
    Batching,
    Derivation,
    GoldenExample,
    ImagePrep,
    LoadSpec,
    PostProcess,
    Shadow,
    TensorSpec,
    VersionKey,
    VersionStatus,
    pad_values_of,
)


@dataclass(frozen=True, slots=True)
class Route:
    version: int
    weight: int

    def to_json(self) -> dict[str, int]:
        return {"version": self.version, "weight": self.weight}


def _aware(value: datetime | None) -> datetime | None:
    """A stored time as UTC-aware (SQLite hands back naive UTC datetimes)."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


def routes_json(routes: tuple[Route, ...] | list[Route] | None) -> list[dict[str, int]] | None:
    return None if routes is None else [r.to_json() for r in routes]


@dataclass(frozen=True, slots=True)
class VersionRecord:
    model: str
    version: int
    status: VersionStatus
    format: ArtifactFormat
    sha256: str
    size: int
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    batching: dict[str, Any]
    device: str
    replicas: int | None
    metrics: dict[str, Any]
    tags: dict[str, Any]
    golden: tuple[GoldenExample, ...]
    description: str
    load_error: str | None
    created_at: datetime
    updated_at: datetime
    loaded_at: datetime | None
    # Declared pre-processing by input name, post-processing, and the parent of a derived
    # version (meta `preprocess`, `postprocess`; `maas.types.Derivation`).
    preprocess: dict[str, ImagePrep] = field(default_factory=dict)
    postprocess: PostProcess | None = None
    derived_from: Derivation | None = None
    # `batching` as stored (what answers show), read once into its typed value with every
    # default filled in (what serving and loading use).
    batch: Batching = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "batch", Batching.from_json(self.batching))

    @property
    def key(self) -> VersionKey:
        return VersionKey(self.model, self.version)

    @classmethod
    def from_row(cls, row: ModelVersion, model_name: str) -> VersionRecord:
        return cls(
            model=model_name,
            version=row.version,
            status=VersionStatus(row.status),
            format=ArtifactFormat(row.format),
            sha256=row.sha256,
            size=row.size,
            inputs=tuple(TensorSpec.from_json(s) for s in row.inputs),
            outputs=tuple(TensorSpec.from_json(s) for s in row.outputs),
            batching=dict(row.batching),
            device=row.device,
            replicas=row.replicas,
            metrics=dict(row.metrics),
            tags=dict(row.tags),
            golden=tuple(
                GoldenExample(g["inputs"], g["outputs"], float(g.get("atol", 1e-4)))
                for g in row.golden
            ),
            description=row.description,
            load_error=row.load_error,
            created_at=row.created_at,
            updated_at=row.updated_at,
            loaded_at=row.loaded_at,
            preprocess={
                name: ImagePrep.from_json(step) for name, step in (row.preprocess or {}).items()
            },
            postprocess=None if row.postprocess is None else PostProcess.from_json(row.postprocess),
            derived_from=None
            if row.derived_from is None
            else Derivation.from_json(row.derived_from),
        )

    def load_spec(self, path: str) -> LoadSpec:
        batch = self.batch
        pad = batch.pad_value
        return LoadSpec(
            key=self.key,
            path=path,
            sha256=self.sha256,
            format=self.format,
            inputs=self.inputs,
            outputs=self.outputs,
            device=self.device,
            max_batch_size=batch.max_batch_size,
            golden=self.golden,
            max_delay_ms=batch.max_delay_ms,
            max_queue=batch.max_queue,
            pad_value=None if isinstance(pad, dict) else pad,
            buckets=batch.buckets,
            replicas=self.replicas,
            pad_values=pad_values_of(pad, self.inputs),
        )


@dataclass(frozen=True, slots=True)
class AliasRecord:
    model: str
    alias: str
    routes: tuple[Route, ...]
    updated_at: datetime
    # The registry generation this change committed with (None when read, not written).
    generation: int | None = None
    shadow: Shadow | None = None  # the alias's mirror, if it has one

    @classmethod
    def from_row(cls, row: Alias, model_name: str) -> AliasRecord:
        return cls(
            model=model_name,
            alias=row.name,
            routes=tuple(Route(r.version, r.weight) for r in row.routes),
            updated_at=row.updated_at,
            shadow=None if row.shadow is None else Shadow.from_json(row.shadow),
        )


@dataclass(frozen=True, slots=True)
class ModelRecord:
    name: str
    description: str
    created_at: datetime
    versions: tuple[VersionRecord, ...] = field(default_factory=tuple)
    aliases: tuple[AliasRecord, ...] = field(default_factory=tuple)

    @classmethod
    def from_row(cls, row: Model, *, with_children: bool = True) -> ModelRecord:
        return cls(
            name=row.name,
            description=row.description,
            created_at=row.created_at,
            versions=tuple(VersionRecord.from_row(v, row.name) for v in row.versions)
            if with_children
            else (),
            aliases=tuple(AliasRecord.from_row(a, row.name) for a in row.aliases)
            if with_children
            else (),
        )


@dataclass(frozen=True, slots=True)
class HistoryRecord:
    alias: str
    from_routes: tuple[Route, ...] | None
    to_routes: tuple[Route, ...]
    action: str
    key: str | None
    at: datetime
    id: int = 0
    undoes: int | None = None  # the row a rollback undid

    @classmethod
    def from_row(cls, row: AliasHistory) -> HistoryRecord:
        return cls(
            id=row.id,
            undoes=row.undoes,
            alias=row.alias,
            from_routes=None
            if row.from_routes is None
            else tuple(Route(r["version"], r["weight"]) for r in row.from_routes),
            to_routes=tuple(Route(r["version"], r["weight"]) for r in row.to_routes),
            action=row.action,
            key=row.key_name,
            at=row.at,
        )


@dataclass(frozen=True, slots=True)
class EventRecord:
    id: int
    at: datetime
    key: str | None
    action: str
    target: str
    before: Any
    after: Any

    @classmethod
    def from_row(cls, row: AuditEvent) -> EventRecord:
        return cls(row.id, row.at, row.key_name, row.action, row.target, row.before, row.after)


@dataclass(frozen=True, slots=True)
class KeyRecord:
    id: int
    name: str
    scopes: tuple[str, ...]
    created_at: datetime
    revoked_at: datetime | None = None
    models: tuple[str, ...] | None = None  # None: every model
    expires_at: datetime | None = None  # None: never (timezone-aware, UTC)
    rate_limit_per_s: float | None = None  # None: the deployment's default, if any

    @classmethod
    def from_row(cls, row: ApiKey) -> KeyRecord:
        return cls(
            row.id,
            row.name,
            tuple(row.scopes),
            row.created_at,
            row.revoked_at,
            tuple(row.models) if row.models is not None else None,
            _aware(row.expires_at),
            row.rate_limit_per_s,
        )


@dataclass(frozen=True, slots=True)
class RolloutRecord:
    """A rollout as the registry holds it (`tables.Rollout`); `generation` when the change that
    produced it moved the alias or the rollout (gateways must read it), else None."""

    id: int
    model: str
    alias: str
    stable: int
    candidate: int
    plan: RolloutPlan
    state: RolloutState
    step: int
    weight: int
    epoch: int
    interval_started_at: float
    failures: int
    stable_forward_p99_ms: float | None
    intervals: tuple[dict[str, Any], ...]
    reason: str | None
    key_name: str | None
    created_at: datetime
    updated_at: datetime
    ended_at: datetime | None
    generation: int | None = None

    @property
    def phase(self) -> str:
        """`shadow` or `steps` while running, else the state (`PHASE_CODES`)."""
        if self.state is RolloutState.RUNNING:
            return "shadow" if self.step < 0 else "steps"
        return self.state.value

    @classmethod
    def from_row(
        cls, row: Rollout, model_name: str, generation: int | None = None
    ) -> RolloutRecord:
        return cls(
            id=row.id,
            model=model_name,
            alias=row.alias,
            stable=row.stable,
            candidate=row.candidate,
            plan=RolloutPlan.from_json(row.plan),
            state=RolloutState(row.state),
            step=row.step,
            weight=row.weight,
            epoch=row.epoch,
            interval_started_at=row.interval_started_at,
            failures=row.failures,
            stable_forward_p99_ms=row.stable_forward_p99_ms,
            intervals=tuple(row.intervals or ()),
            reason=row.reason,
            key_name=row.key_name,
            created_at=_aware(row.created_at) or row.created_at,
            updated_at=_aware(row.updated_at) or row.updated_at,
            ended_at=_aware(row.ended_at),
            generation=generation,
        )
