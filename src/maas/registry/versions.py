"""Registry operations on versions: adding one (and its model, for a first upload), reading
them, moving one through its statuses (loaded, unloaded, archived) and editing its settings.

`NewVersion` is what the registry keeps of an upload's meta; `draft_record` is the record such
an upload would get, before it has a number.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from maas.checks.json_depth import deeper_than, too_deep
from maas.config import DEFAULT_MAX_JSON_DEPTH
from maas.errors import AliasInUse, BadRequest, ModelNotFound
from maas.registry import repository as repo
from maas.registry.aliasing import aliases_shadowing, audit, first_target, shadowed_refusal
from maas.registry.base import RegistryBase
from maas.registry.records import VersionRecord
from maas.registry.tables import Model, ModelVersion
from maas.types import DEFAULT_ALIAS, VersionKey, VersionStatus


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
    preprocess: dict[str, Any] | None = None
    postprocess: dict[str, Any] | None = None
    derived_from: dict[str, Any] | None = None


class Versions(RegistryBase):
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

    async def all_versions(self) -> list[VersionRecord]:
        """Every version of every model, whatever its status."""
        async with self._sessions() as session:
            rows = await repo.versions_with_status(session, statuses=list(VersionStatus))
            return [VersionRecord.from_row(row, name) for row, name in rows]

    async def artifact_users(self, sha256: str) -> int:
        async with self._sessions() as session:
            return await repo.count_artifact_users(session, sha256=sha256)

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

    async def unload_version(self, key: VersionKey) -> VersionRecord:
        """Mark a version `unloaded`, for the leader to take it off the workers; an archived one
        comes back as it is. AliasInUse while an alias routes to it or shadows it, whatever its
        status: the alias's requests (or mirrors) would have nowhere to go. The model row is
        locked first, so no alias moves onto the version between the check and the change."""
        async with self._writes.begin() as session:
            model = await repo.get_model(session, name=key.model, lock=True)
            row = await repo.get_version(session, model=model, version=key.version)
            aliases = await repo.aliases_pointing_at(session, version=row)
            if aliases:
                raise AliasInUse(f"{key} serves alias(es) {', '.join(aliases)}; move them first")
            shadowing = await aliases_shadowing(session, version=row)
            if shadowing:
                raise shadowed_refusal(key, shadowing, "unload")
            if row.status == VersionStatus.ARCHIVED.value:
                return VersionRecord.from_row(row, key.model)
            row.status = VersionStatus.UNLOADED.value
            row.load_error = None
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
            shadowing = await aliases_shadowing(session, version=row)
            if shadowing:
                raise shadowed_refusal(key, shadowing, "archive")
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

    async def update_version(
        self,
        key: VersionKey,
        *,
        actor: str,
        batching: dict[str, Any] | None = None,
        description: str | None = None,
        tags: dict[str, Any] | None = None,
        max_depth: int = DEFAULT_MAX_JSON_DEPTH,
    ) -> VersionRecord:
        """Change a version's batching (merged into what it has), description or tags (replaced
        whole). Tags that nest deeper than `max_depth` (MAAS_MAX_JSON_DEPTH) are BadRequest
        before anything is read: they are counted as the change's body holds them, one level
        down, so the limit and the message are the body's."""
        if tags is not None and deeper_than(tags, max_depth - 1):
            raise BadRequest(too_deep("the body", max_depth))
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
        preprocess=meta.preprocess,
        postprocess=meta.postprocess,
        derived_from=meta.derived_from,
    )
