"""Registry operations: each one transaction, with its audit event and alias history row.

Every change that a gateway's routing table or key cache depends on raises the registry
**generation** in its own transaction, so a gateway that has read generation G and the tables
after it serves everything committed up to G. Listeners registered with `on_change` hear the new
generation once the change has committed (the control plane tells the other gateways).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from maas.errors import (
    AliasInUse,
    AlreadyExists,
    KeyNotFound,
    LastAdminKey,
    ModelNotFound,
    NothingToUndo,
)
from maas.registry import repository as repo
from maas.registry.aliasing import (
    UNSET,
    audit,
    check_expected,
    first_target,
    move_alias,
    top_of_undo_stack,
)
from maas.registry.db import SessionFactory
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
from maas.registry.tables import AliasHistory, ApiKey, Model, ModelVersion
from maas.types import DEFAULT_ALIAS, AliasAction, Scope, VersionKey, VersionStatus

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class NewVersion:
    """The parts of an upload's meta that the registry keeps."""

    format: str
    inputs: list[dict[str, Any]]
    outputs: list[dict[str, Any]]
    batching: dict[str, Any]
    device: str = "auto"
    replicas: int | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    tags: dict[str, Any] = field(default_factory=dict)
    golden: list[dict[str, Any]] = field(default_factory=list)
    description: str = ""


class Registry:
    """`writes` may be a separate session factory whose transactions take the write lock first
    (SQLite); reads never wait for it."""

    def __init__(self, sessions: SessionFactory, *, writes: SessionFactory | None = None) -> None:
        self._sessions = sessions
        self._writes = writes or sessions
        self._listeners: list[Callable[[int], None]] = []

    def on_change(self, listener: Callable[[int], None]) -> None:
        self._listeners.append(listener)

    def _changed(self, generation: int) -> None:
        for listener in self._listeners:
            listener(generation)

    async def generation(self) -> int:
        """The registry's generation now: one row, the cheapest read there is."""
        async with self._sessions() as session:
            return await repo.generation(session)

    # models ---------------------------------------------------------------------------------

    async def create_model(self, *, name: str, description: str, actor: str) -> ModelRecord:
        try:
            async with self._writes.begin() as session:
                model = Model(name=name, description=description, last_version=0)
                session.add(model)
                await session.flush()
                audit(session, actor, "model.create", name, None, {"description": description})
                record = ModelRecord(model.name, model.description, model.created_at)
                generation = await repo.bump_generation(session)
        except IntegrityError:
            raise AlreadyExists(f"model '{name}' already exists") from None
        self._changed(generation)
        return record

    async def list_models(self) -> list[ModelRecord]:
        async with self._sessions() as session:
            return [ModelRecord.from_row(m) for m in await repo.list_models(session)]

    async def get_model(self, name: str) -> ModelRecord:
        async with self._sessions() as session:
            return ModelRecord.from_row(await repo.get_model(session, name=name, children=True))

    # versions -------------------------------------------------------------------------------

    async def add_version(
        self,
        *,
        model: str,
        sha256: str,
        size: int,
        meta: NewVersion,
        status: VersionStatus,
        actor: str,
        create_model: bool = False,
    ) -> VersionRecord:
        """A new version row; with `create_model`, a model of that name is created in the same
        transaction if there is none (so a refused upload never leaves an empty model)."""
        async with self._writes.begin() as session:
            try:
                row = await repo.get_model(session, name=model)
            except ModelNotFound:
                if not create_model:
                    raise
                row = Model(name=model, description="", last_version=0)
                session.add(row)
                await session.flush()
                audit(session, actor, "model.create", model, None, {"description": ""})
            number = await repo.next_version_number(session, model_id=row.id)
            version = _version_row(meta, model_id=row.id, number=number, status=status)
            version.sha256, version.size = sha256, size
            session.add(version)
            await session.flush()
            audit(
                session,
                actor,
                "version.create",
                f"{model}@{number}",
                None,
                {"sha256": sha256, "size": size, "format": meta.format},
            )
            record = VersionRecord.from_row(version, model)
            generation = await repo.bump_generation(session)
        self._changed(generation)
        return record

    async def get_version(self, key: VersionKey) -> VersionRecord:
        async with self._sessions() as session:
            model = await repo.get_model(session, name=key.model)
            return VersionRecord.from_row(
                await repo.get_version(session, model=model, version=key.version), key.model
            )

    async def set_status(
        self,
        key: VersionKey,
        status: VersionStatus,
        *,
        load_error: str | None = None,
        only_from: frozenset[VersionStatus] | None = None,
    ) -> VersionRecord | None:
        """Move a version to `status`; with `only_from`, only if it is in one of those now.

        A version that turns `ready` while its model has no `production` alias becomes that
        alias's target in the same transaction (history action `set`, audited as `system`), so
        requests naming just the model reach it. A model that has the alias is never moved.
        The model row is locked first: of two versions turning ready at once, one is first."""
        ready = status is VersionStatus.READY
        async with self._writes.begin() as session:
            model = await repo.get_model(session, name=key.model, lock=ready)
            row = await repo.get_version(session, model=model, version=key.version)
            if only_from is not None and VersionStatus(row.status) not in only_from:
                return None
            row.status = status.value
            row.load_error = load_error
            if ready:
                row.loaded_at = datetime.now(UTC)
            await session.flush()
            record = VersionRecord.from_row(row, key.model)
            if ready and await repo.get_alias(session, model=model, name=DEFAULT_ALIAS) is None:
                generation = await first_target(session, model, key.version)
            else:
                generation = await repo.bump_generation(session)
        self._changed(generation)
        return record

    async def update_version(
        self,
        key: VersionKey,
        *,
        actor: str,
        batching: dict[str, Any] | None = None,
        description: str | None = None,
        tags: dict[str, Any] | None = None,
    ) -> VersionRecord:
        async with self._writes.begin() as session:
            model = await repo.get_model(session, name=key.model)
            row = await repo.get_version(session, model=model, version=key.version)
            before = {"batching": row.batching, "description": row.description, "tags": row.tags}
            if batching is not None:
                row.batching = {**row.batching, **batching}
            if description is not None:
                row.description = description
            if tags is not None:
                row.tags = tags
            after = {"batching": row.batching, "description": row.description, "tags": row.tags}
            if after != before:
                audit(session, actor, "version.update", str(key), before, after)
            await session.flush()
            record = VersionRecord.from_row(row, key.model)
            generation = await repo.bump_generation(session)
        self._changed(generation)
        return record

    async def archive_version(self, key: VersionKey, *, actor: str) -> VersionRecord:
        async with self._writes.begin() as session:
            model = await repo.get_model(session, name=key.model, lock=True)
            row = await repo.get_version(session, model=model, version=key.version)
            aliases = await repo.aliases_pointing_at(session, version=row)
            if aliases:
                raise AliasInUse(
                    f"{key} is the target of alias(es) {', '.join(aliases)}; move them first"
                )
            before = row.status
            row.status = VersionStatus.ARCHIVED.value
            audit(
                session,
                actor,
                "version.archive",
                str(key),
                {"status": before},
                {"status": row.status},
            )
            await session.flush()
            record = VersionRecord.from_row(row, key.model)
            generation = await repo.bump_generation(session)
        self._changed(generation)
        return record

    async def versions_to_restore(self) -> list[VersionRecord]:
        """Versions that should be serving: what a fresh start must load again."""
        async with self._sessions() as session:
            rows = await repo.versions_with_status(
                session, statuses=[VersionStatus.READY, VersionStatus.LOADING]
            )
            return [VersionRecord.from_row(row, name) for row, name in rows]

    async def all_versions(self) -> list[VersionRecord]:
        """Every version of every model, whatever its status."""
        async with self._sessions() as session:
            rows = await repo.versions_with_status(session, statuses=list(VersionStatus))
            return [VersionRecord.from_row(row, name) for row, name in rows]

    async def artifact_users(self, sha256: str) -> int:
        async with self._sessions() as session:
            return await repo.count_artifact_users(session, sha256=sha256)

    # aliases --------------------------------------------------------------------------------

    async def set_alias(
        self,
        *,
        model: str,
        alias: str,
        routes: list[Route],
        actor: str,
        action: AliasAction = AliasAction.SET,
        expected_current: Any = UNSET,
    ) -> AliasRecord:
        """Point `alias` at ready versions, atomically, recording history unless nothing moves
        (then the record has no generation: there is nothing to propagate)."""
        async with self._writes.begin() as session:
            model_row = await repo.get_model(session, name=model, lock=True)
            current = await repo.get_alias(session, model=model_row, name=alias)
            check_expected(current, expected_current)
            record = await move_alias(
                session, model_row, alias, current, routes, actor=actor, action=action
            )
        if record.generation is not None:
            self._changed(record.generation)
        return record

    async def undo_alias(self, *, model: str, alias: str, actor: str) -> AliasRecord:
        """Rollback without a target: undo the alias's newest change that is not undone yet
        (back to that change's `from`), so successive rollbacks walk back through the history
        instead of toggling. NothingToUndo when no such change is left."""
        async with self._writes.begin() as session:
            model_row = await repo.get_model(session, name=model, lock=True)
            current = await repo.require_alias(session, model=model_row, name=alias)
            rows = await repo.all_alias_history(session, model=model_row, alias=alias)
            change = top_of_undo_stack(rows)
            if change is None or change.from_routes is None:
                what = "no change left to undo" if change is None else "no earlier target"
                raise NothingToUndo(
                    f"alias '{alias}' of '{model}' has {what} (its history: "
                    f"GET /admin/models/{model}/aliases/{alias}/history)"
                )
            routes = [Route(r["version"], r["weight"]) for r in change.from_routes]
            record = await move_alias(
                session,
                model_row,
                alias,
                current,
                routes,
                actor=actor,
                action=AliasAction.ROLLBACK,
                undoes=change.id,
            )
        if record.generation is not None:
            self._changed(record.generation)
        return record

    async def delete_alias(self, *, model: str, alias: str, actor: str) -> int:
        """Remove an alias; returns the generation it committed with. `production` only while
        the model has no ready version that requests naming just the model would lose."""
        async with self._writes.begin() as session:
            model_row = await repo.get_model(session, name=model, lock=True, children=True)
            current = await repo.require_alias(session, model=model_row, name=alias)
            if alias == DEFAULT_ALIAS:
                ready = [
                    v.version for v in model_row.versions if v.status == VersionStatus.READY.value
                ]
                if ready:
                    raise AliasInUse(
                        f"requests naming only '{model}' use its production alias and "
                        f"version(s) {', '.join(map(str, ready))} are ready to serve them; "
                        "point production elsewhere, or unload or archive them first"
                    )
            old = routes_json([Route(r.version, r.weight) for r in current.routes])
            now = datetime.now(UTC)
            session.add(
                AliasHistory(
                    model_id=model_row.id,
                    alias=alias,
                    action=AliasAction.DELETE.value,
                    from_routes=old,
                    to_routes=[],
                    key_name=actor,
                    at=now,
                )
            )
            audit(session, actor, "alias.delete", f"{model}/{alias}", old, None)
            await repo.delete_alias(session, alias=current)
            generation = await repo.bump_generation(session)
        self._changed(generation)
        return generation

    async def get_alias(self, *, model: str, alias: str) -> AliasRecord:
        async with self._sessions() as session:
            model_row = await repo.get_model(session, name=model)
            row = await repo.require_alias(session, model=model_row, name=alias)
            return AliasRecord.from_row(row, model)

    async def alias_history(self, *, model: str, alias: str, limit: int) -> list[HistoryRecord]:
        async with self._sessions() as session:
            model_row = await repo.get_model(session, name=model)
            rows = await repo.alias_history(session, model=model_row, alias=alias, limit=limit)
            return [HistoryRecord.from_row(r) for r in rows]

    async def events(
        self,
        *,
        limit: int,
        model: str | None = None,
        action: str | None = None,
        key: str | None = None,
        since: datetime | None = None,
    ) -> list[EventRecord]:
        if since is not None:
            since = (since if since.tzinfo else since.replace(tzinfo=UTC)).astimezone(UTC)
        async with self._sessions() as session:
            rows = await repo.audit_events(
                session, limit=limit, model=model, action=action, key=key, since=since
            )
            return [EventRecord.from_row(r) for r in rows]

    # keys -----------------------------------------------------------------------------------

    async def create_key(
        self,
        *,
        name: str,
        scopes: list[str],
        secret_hash: str,
        actor: str,
        models: list[str] | None = None,
        expires_at: datetime | None = None,
        rate_limit_per_s: float | None = None,
    ) -> KeyRecord:
        """A new key; `models` limits it to those models (None: every model), `expires_at`
        ends it (None: never)."""
        async with self._writes.begin() as session:
            row = ApiKey(
                name=name,
                scopes=sorted(set(scopes)),
                secret_hash=secret_hash,
                models=sorted(set(models)) if models is not None else None,
                expires_at=expires_at,
                rate_limit_per_s=rate_limit_per_s,
            )
            session.add(row)
            await session.flush()
            audit(
                session,
                actor,
                "key.create",
                f"key/{row.id}",
                None,
                {
                    "name": name,
                    "scopes": row.scopes,
                    "models": row.models,
                    "expires_at": expires_at.isoformat() if expires_at else None,
                    "rate_limit_per_s": rate_limit_per_s,
                },
            )
            record = KeyRecord.from_row(row)
        return record

    async def list_keys(self) -> list[KeyRecord]:
        async with self._sessions() as session:
            return [KeyRecord.from_row(r) for r in await repo.list_keys(session)]

    async def find_key(self, secret_hash: str) -> KeyRecord | None:
        async with self._sessions() as session:
            row = await repo.key_by_hash(session, secret_hash=secret_hash)
            return KeyRecord.from_row(row) if row else None

    async def revoke_key(self, key_id: int, *, actor: str) -> tuple[KeyRecord, int]:
        """Revoke a key; returns it and the generation it committed with. The last active
        admin key cannot be revoked: nobody could administer the registry after it."""
        async with self._writes.begin() as session:
            active = await repo.active_keys(session, lock=True)
            row = next((k for k in active if k.id == key_id), None)
            if row is None:
                raise KeyNotFound(f"no active key with id {key_id}")
            # Keys that can administer everything, now and later (no model list, no expiry):
            # the last of them stays, or nobody could administer the registry after it.
            admins = [
                k
                for k in active
                if Scope.ADMIN.value in k.scopes and k.models is None and k.expires_at is None
            ]
            if admins == [row]:
                raise LastAdminKey(
                    f"key {key_id} ('{row.name}') is the last admin key; create another admin "
                    "key first (maas keys create NAME --scope admin)"
                )
            row.revoked_at = datetime.now(UTC)
            audit(session, actor, "key.revoke", f"key/{key_id}", {"name": row.name}, None)
            await session.flush()
            record = KeyRecord.from_row(row)
            generation = await repo.bump_generation(session)
        self._changed(generation)
        return record, generation

    async def record_refusal(self, *, actor: str, request: str, target: str, reason: str) -> None:
        """An admin request refused to a known key, in the audit log (action `refused`)."""
        async with self._writes.begin() as session:
            audit(session, actor, "refused", target, None, {"request": request, "reason": reason})

    async def ping(self) -> None:
        async with self._sessions() as session:
            await session.execute(select(Model.id).limit(1))


def draft_record(model: str, *, sha256: str, size: int, meta: NewVersion) -> VersionRecord:
    """What a version of `meta` would be, before it has a number (an upload's trial load)."""
    row = _version_row(meta, model_id=0, number=0, status=VersionStatus.REGISTERED)
    now = datetime.now(UTC)
    row.sha256, row.size, row.created_at, row.updated_at = sha256, size, now, now
    return VersionRecord.from_row(row, model)


def _version_row(
    meta: NewVersion, *, model_id: int, number: int, status: VersionStatus
) -> ModelVersion:
    return ModelVersion(
        model_id=model_id,
        version=number,
        status=status.value,
        format=meta.format,
        inputs=meta.inputs,
        outputs=meta.outputs,
        batching=meta.batching,
        device=meta.device,
        replicas=meta.replicas,
        metrics=meta.metrics,
        tags=meta.tags,
        golden=meta.golden,
        description=meta.description,
    )
