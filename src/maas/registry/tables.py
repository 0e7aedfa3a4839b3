"""ORM tables of the registry. One schema for SQLite and PostgreSQL; Alembic owns its evolution."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


class Model(Base):
    __tablename__ = "models"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    # Highest version number ever handed out: numbers are never reused, even after archiving.
    last_version: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, onupdate=utcnow
    )

    versions: Mapped[list[ModelVersion]] = relationship(
        back_populates="model", order_by="ModelVersion.version", lazy="raise"
    )
    aliases: Mapped[list[Alias]] = relationship(
        back_populates="model", order_by="Alias.name", lazy="raise"
    )


class ModelVersion(Base):
    __tablename__ = "model_versions"
    __table_args__ = (UniqueConstraint("model_id", "version", name="uq_model_versions_number"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16), index=True)
    format: Mapped[str] = mapped_column(String(32))
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    size: Mapped[int] = mapped_column(BigInteger)
    inputs: Mapped[list[Any]] = mapped_column(JSON)
    outputs: Mapped[list[Any]] = mapped_column(JSON)
    batching: Mapped[dict[str, Any]] = mapped_column(JSON)
    device: Mapped[str] = mapped_column(String(32), default="auto")
    replicas: Mapped[int | None] = mapped_column(Integer, nullable=True)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON)
    tags: Mapped[dict[str, Any]] = mapped_column(JSON)
    golden: Mapped[list[Any]] = mapped_column(JSON)
    # Declared pre- and post-processing (meta `preprocess`, `postprocess`), and the parent of a
    # derived version (`maas.types.Derivation`); null when absent.
    preprocess: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    postprocess: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    derived_from: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    description: Mapped[str] = mapped_column(Text, default="")
    load_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, onupdate=utcnow
    )
    loaded_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)

    model: Mapped[Model] = relationship(back_populates="versions", lazy="raise")


class Alias(Base):
    __tablename__ = "aliases"
    __table_args__ = (UniqueConstraint("model_id", "name", name="uq_aliases_model_name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # The alias's mirror, `maas.types.Shadow` as JSON ({"version", "percent"}); null: none.
    shadow: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)

    model: Mapped[Model] = relationship(back_populates="aliases", lazy="raise")
    routes: Mapped[list[AliasRoute]] = relationship(
        back_populates="alias",
        order_by="AliasRoute.version",
        cascade="all, delete-orphan",
        lazy="selectin",
    )


class AliasRoute(Base):
    """One weighted target of an alias; a plain alias has a single route of weight 100."""

    __tablename__ = "alias_routes"

    alias_id: Mapped[int] = mapped_column(
        ForeignKey("aliases.id", ondelete="CASCADE"), primary_key=True
    )
    version_id: Mapped[int] = mapped_column(
        ForeignKey("model_versions.id", ondelete="RESTRICT"), primary_key=True, index=True
    )
    version: Mapped[int] = mapped_column(Integer)
    weight: Mapped[int] = mapped_column(Integer)

    alias: Mapped[Alias] = relationship(back_populates="routes", lazy="raise")


class AliasHistory(Base):
    __tablename__ = "alias_history"
    __table_args__ = (Index("ix_alias_history_model_alias", "model_id", "alias", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"))
    alias: Mapped[str] = mapped_column(String(32))
    action: Mapped[str] = mapped_column(String(16))
    from_routes: Mapped[list[Any] | None] = mapped_column(JSON, nullable=True)
    to_routes: Mapped[list[Any]] = mapped_column(JSON)
    key_name: Mapped[str | None] = mapped_column(String(128), nullable=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # A rollback without a target undoes one earlier row: its id (the undo stack's pop).
    undoes: Mapped[int | None] = mapped_column(Integer, nullable=True)


class AuditEvent(Base):
    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)
    key_name: Mapped[str | None] = mapped_column(String(128), nullable=True)
    action: Mapped[str] = mapped_column(String(64))
    target: Mapped[str] = mapped_column(String(200))
    before: Mapped[Any | None] = mapped_column(JSON, nullable=True)
    after: Mapped[Any | None] = mapped_column(JSON, nullable=True)


class ApiKey(Base):
    """An API key. Only the sha256 of the secret is kept; the secret is shown once."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    secret_hash: Mapped[str] = mapped_column(String(64), unique=True)
    scopes: Mapped[list[Any]] = mapped_column(JSON)
    # The models it may act on (null: every model), and when it stops working (null: never).
    models: Mapped[list[Any] | None] = mapped_column(JSON, nullable=True)
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    # Requests per second it may make (null: MAAS_KEY_RATE_LIMIT_PER_S, or no limit).
    rate_limit_per_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class RegistryState(Base):
    """One row: the generation, bumped in the same transaction as every change a gateway's
    routing table (or key cache) depends on, so a gateway knows it is current by reading it."""

    __tablename__ = "registry_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    generation: Mapped[int] = mapped_column(BigInteger)


class Gateway(Base):
    """A gateway process that serves from this registry: what it serves, and when it last said
    so. Times are Unix seconds from the gateway's clock."""

    __tablename__ = "gateways"

    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    host: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    generation: Mapped[int] = mapped_column(BigInteger)
    started_at: Mapped[float] = mapped_column(Float)
    last_seen: Mapped[float] = mapped_column(Float, index=True)


class Lease(Base):
    """A named lease (placement of the workers one set of gateways shares): one holder at a
    time, until `expires_at` (Unix seconds) unless renewed; `term` rises with every new holder."""

    __tablename__ = "leases"

    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    holder: Mapped[str] = mapped_column(String(128))
    term: Mapped[int] = mapped_column(BigInteger)
    expires_at: Mapped[float] = mapped_column(Float)


class RegisteredWorker(Base):
    """A worker that announces itself (`maas worker` with MAAS_DATABASE_URL): where gateways
    reach it, its device and capacity, and when it last said it is there. Times are Unix
    seconds from the worker's clock."""

    __tablename__ = "workers"

    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    endpoint: Mapped[str] = mapped_column(String(512))
    host: Mapped[str] = mapped_column(String(255))
    device: Mapped[str] = mapped_column(String(32))
    memory_total: Mapped[int] = mapped_column(BigInteger)
    threads: Mapped[int] = mapped_column(Integer)
    protocol: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[float] = mapped_column(Float)
    last_seen: Mapped[float] = mapped_column(Float, index=True)


class Rollout(Base):
    """A rollout of a candidate version on an alias (`maas.rollout`): its plan, where it
    stands, and every interval's verdict with its figures. The leader moves it on; `epoch`
    rises with every new measuring window (a step, a resume), and gateways count their figures
    per epoch (`RolloutTally`). `interval_started_at` and times are Unix seconds."""

    __tablename__ = "rollouts"
    __table_args__ = (Index("ix_rollouts_model_alias", "model_id", "alias", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"))
    alias: Mapped[str] = mapped_column(String(32))
    stable: Mapped[int] = mapped_column(Integer)
    candidate: Mapped[int] = mapped_column(Integer)
    plan: Mapped[dict[str, Any]] = mapped_column(JSON)
    state: Mapped[str] = mapped_column(String(16), index=True)
    # -1: the shadow phase; else the index of the weight step.
    step: Mapped[int] = mapped_column(Integer)
    weight: Mapped[int] = mapped_column(Integer)
    epoch: Mapped[int] = mapped_column(Integer)
    interval_started_at: Mapped[float] = mapped_column(Float)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    # The stable version's last measured forward p99, for the relative guard once the stable
    # version gets no traffic.
    stable_forward_p99_ms: Mapped[float | None] = mapped_column(Float, nullable=True)
    intervals: Mapped[list[Any]] = mapped_column(JSON)
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    key_name: Mapped[str | None] = mapped_column(String(128), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class RolloutTally(Base):
    """What one gateway process counted for one rollout's epoch (`maas.rollout.WindowFigures`
    as JSON), rewritten as it counts; the leader adds up every gateway's rows of an epoch."""

    __tablename__ = "rollout_tallies"

    rollout_id: Mapped[int] = mapped_column(
        ForeignKey("rollouts.id", ondelete="CASCADE"), primary_key=True
    )
    epoch: Mapped[int] = mapped_column(Integer, primary_key=True)
    reporter: Mapped[str] = mapped_column(String(128), primary_key=True)
    figures: Mapped[dict[str, Any]] = mapped_column(JSON)
    updated_at: Mapped[float] = mapped_column(Float)


class TrafficSample(Base):
    """What one gateway process answered for one model in one report period starting at `at`
    (seconds since the epoch, a multiple of the period), and what it saw of the workers then;
    kept for minutes (`maas.observability.traffic`), read as charts by the console."""

    __tablename__ = "traffic_samples"
    __table_args__ = (Index("ix_traffic_samples_model_at", "model", "at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    reporter: Mapped[str] = mapped_column(String(128))
    model: Mapped[str] = mapped_column(String(64))
    at: Mapped[float] = mapped_column(Float, index=True)
    figures: Mapped[dict[str, Any]] = mapped_column(JSON)
