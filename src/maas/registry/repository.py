"""Queries on the registry tables. Keyword-only functions over one AsyncSession; no commits."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from maas.errors import AliasNotFound, ModelNotFound, VersionNotFound
from maas.registry.tables import (
    Alias,
    AliasHistory,
    ApiKey,
    AuditEvent,
    Model,
    ModelVersion,
    RegistryState,
)
from maas.types import VersionStatus

GENERATION_CHANNEL = "maas_generation"  # maas.registry.notifications listens on it


async def get_model(
    session: AsyncSession, *, name: str, children: bool = False, lock: bool = False
) -> Model:
    query = select(Model).where(Model.name == name)
    if children:
        query = query.options(
            selectinload(Model.versions), selectinload(Model.aliases).selectinload(Alias.routes)
        )
    if lock:
        query = query.with_for_update()
    model = (await session.execute(query)).scalar_one_or_none()
    if model is None:
        raise ModelNotFound(f"model '{name}' does not exist")
    return model


async def list_models(session: AsyncSession) -> Sequence[Model]:
    query = (
        select(Model)
        .options(
            selectinload(Model.versions), selectinload(Model.aliases).selectinload(Alias.routes)
        )
        .order_by(Model.name)
    )
    return (await session.execute(query)).scalars().all()


async def next_version_number(session: AsyncSession, *, model_id: int) -> int:
    """Atomically hand out the next number; numbers are never reused."""
    result = await session.execute(
        update(Model)
        .where(Model.id == model_id)
        .values(last_version=Model.last_version + 1)
        .returning(Model.last_version)
    )
    return int(result.scalar_one())


async def get_version(session: AsyncSession, *, model: Model, version: int) -> ModelVersion:
    row = (
        await session.execute(
            select(ModelVersion).where(
                ModelVersion.model_id == model.id, ModelVersion.version == version
            )
        )
    ).scalar_one_or_none()
    if row is None:
        raise VersionNotFound(f"model '{model.name}' has no version {version}")
    return row


async def versions_with_status(
    session: AsyncSession, *, statuses: Sequence[VersionStatus]
) -> Sequence[tuple[ModelVersion, str]]:
    query = (
        select(ModelVersion, Model.name)
        .join(Model, Model.id == ModelVersion.model_id)
        .where(ModelVersion.status.in_([s.value for s in statuses]))
        .order_by(Model.name, ModelVersion.version)
    )
    return [(row[0], row[1]) for row in (await session.execute(query)).all()]


async def get_alias(session: AsyncSession, *, model: Model, name: str) -> Alias | None:
    query = (
        select(Alias)
        .where(Alias.model_id == model.id, Alias.name == name)
        .options(selectinload(Alias.routes))
    )
    return (await session.execute(query)).scalar_one_or_none()


async def require_alias(session: AsyncSession, *, model: Model, name: str) -> Alias:
    alias = await get_alias(session, model=model, name=name)
    if alias is None:
        raise AliasNotFound(f"model '{model.name}' has no alias '{name}'")
    return alias


async def aliases_pointing_at(session: AsyncSession, *, version: ModelVersion) -> list[str]:
    """The names of the version's model's aliases that route to it, in order."""
    query = (
        select(Alias)
        .where(Alias.model_id == version.model_id)
        .options(selectinload(Alias.routes))
        .order_by(Alias.name)
    )
    return [
        alias.name
        for alias in (await session.execute(query)).scalars()
        if any(route.version_id == version.id for route in alias.routes)
    ]


async def alias_history(
    session: AsyncSession, *, model: Model, alias: str, limit: int
) -> Sequence[AliasHistory]:
    query = (
        select(AliasHistory)
        .where(AliasHistory.model_id == model.id, AliasHistory.alias == alias)
        .order_by(AliasHistory.id.desc())
        .limit(limit)
    )
    return (await session.execute(query)).scalars().all()


async def all_alias_history(
    session: AsyncSession, *, model: Model, alias: str
) -> Sequence[AliasHistory]:
    """Every row of one alias, newest first (a rollback replays them as an undo stack)."""
    query = (
        select(AliasHistory)
        .where(AliasHistory.model_id == model.id, AliasHistory.alias == alias)
        .order_by(AliasHistory.id.desc())
    )
    return (await session.execute(query)).scalars().all()


async def delete_alias(session: AsyncSession, *, alias: Alias) -> None:
    await session.delete(alias)  # its routes go with it (cascade)


async def audit_events(
    session: AsyncSession,
    *,
    limit: int,
    model: str | None = None,
    action: str | None = None,
    key: str | None = None,
    since: datetime | None = None,
) -> Sequence[AuditEvent]:
    """Newest first. `model` matches the model and its versions and aliases (`digits`,
    `digits@4`, `digits/production`); `action` a whole action or its family (`alias` matches
    `alias.promote`)."""
    query = select(AuditEvent)
    if model is not None:
        query = query.where(
            or_(
                AuditEvent.target == model,
                AuditEvent.target.startswith(f"{model}@", autoescape=True),
                AuditEvent.target.startswith(f"{model}/", autoescape=True),
            )
        )
    if action is not None:
        query = query.where(
            or_(
                AuditEvent.action == action,
                AuditEvent.action.startswith(f"{action}.", autoescape=True),
            )
        )
    if key is not None:
        query = query.where(AuditEvent.key_name == key)
    if since is not None:
        query = query.where(AuditEvent.at >= since)
    query = query.order_by(AuditEvent.id.desc()).limit(limit)
    return (await session.execute(query)).scalars().all()


async def key_by_hash(session: AsyncSession, *, secret_hash: str) -> ApiKey | None:
    query = select(ApiKey).where(ApiKey.secret_hash == secret_hash, ApiKey.revoked_at.is_(None))
    return (await session.execute(query)).scalar_one_or_none()


async def list_keys(session: AsyncSession) -> Sequence[ApiKey]:
    return (await session.execute(select(ApiKey).order_by(ApiKey.id))).scalars().all()


async def active_keys(session: AsyncSession, *, lock: bool = False) -> Sequence[ApiKey]:
    query = select(ApiKey).where(ApiKey.revoked_at.is_(None)).order_by(ApiKey.id)
    if lock:
        query = query.with_for_update()
    return (await session.execute(query)).scalars().all()


async def count_artifact_users(session: AsyncSession, *, sha256: str) -> int:
    query = select(func.count()).select_from(ModelVersion).where(ModelVersion.sha256 == sha256)
    return int((await session.execute(query)).scalar_one())


async def bump_generation(session: AsyncSession) -> int:
    """Raise the registry's generation in this transaction; returns the new one. On PostgreSQL
    the listening gateways are notified when (and only if) the transaction commits."""
    result = await session.execute(
        update(RegistryState)
        .where(RegistryState.id == 1)
        .values(generation=RegistryState.generation + 1)
        .returning(RegistryState.generation)
    )
    generation = int(result.scalar_one())
    if session.bind is not None and session.bind.dialect.name == "postgresql":
        await session.execute(
            select(func.pg_notify(GENERATION_CHANNEL, str(generation)))  # delivered at commit
        )
    return generation


async def generation(session: AsyncSession) -> int:
    query = select(RegistryState.generation).where(RegistryState.id == 1)
    return int((await session.execute(query)).scalar_one())
