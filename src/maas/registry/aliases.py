"""Registry operations on aliases: pointing one at versions (set, promote), rolling it back
(to a version, or through its history), setting or removing its shadow, deleting it, and
reading it and its history. The rules
and writes these share with the version operations (an alias's name, moving an alias, the undo
stack, the audit row) are in `aliasing.py`."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from maas.errors import AliasInUse, NothingToUndo
from maas.registry import repository as repo
from maas.registry.aliasing import (
    UNSET,
    audit,
    check_alias_name,
    check_expected,
    check_shadow,
    move_alias,
    top_of_undo_stack,
    write_shadow,
)
from maas.registry.base import RegistryBase
from maas.registry.records import AliasRecord, HistoryRecord, Route, routes_json
from maas.registry.rollout_moves import refuse_if_rolling
from maas.registry.tables import AliasHistory
from maas.types import DEFAULT_ALIAS, AliasAction, Shadow, VersionStatus


class Aliases(RegistryBase):
    async def set_alias(
        self,
        *,
        model: str,
        alias: str,
        routes: list[Route],
        actor: str,
        action: AliasAction = AliasAction.SET,
        expected_current: Any = UNSET,
        force: bool = False,
        shadow: Any = UNSET,
    ) -> AliasRecord:
        """Point `alias` at ready versions, atomically, recording history unless nothing moves
        (then the record has no generation: there is nothing to propagate). BadRequest for a
        name an alias may not have; BelowAgreement when a derived version below its agreement
        bound would get more of the traffic, unless `force` (audited). With `shadow` (a
        `Shadow`, or None to remove it) the alias's shadow changes in the same transaction,
        after the routes, as `set_shadow` would; left out, it stays as it is."""
        check_alias_name(alias)
        if shadow is not UNSET:
            check_shadow(shadow)
        async with self._writes.begin() as session:
            model_row = await repo.get_model(session, name=model, lock=True)
            current = await repo.get_alias(session, model=model_row, name=alias)
            check_expected(current, expected_current)
            await refuse_if_rolling(session, model_row, alias)
            record = await move_alias(
                session, model_row, alias, current, routes, actor=actor, action=action, force=force
            )
            if shadow is not UNSET:
                row = await repo.require_alias(session, model=model_row, name=alias)
                if await write_shadow(session, model_row, row, shadow, actor=actor):
                    generation = record.generation
                    if generation is None:  # the routes stayed: the shadow is the change
                        generation = await repo.bump_generation(session)
                    record = replace(AliasRecord.from_row(row, model), generation=generation)
        if record.generation is not None:
            self._changed(record.generation)
        return record

    async def promote(
        self, *, model: str, alias: str, version: int, actor: str, force: bool = False
    ) -> AliasRecord:
        """Send all of the alias's traffic to `version`: one route, weight 100 (history action
        `promote`); the agreement bound as for `set_alias`."""
        return await self.set_alias(
            model=model,
            alias=alias,
            routes=[Route(version, 100)],
            actor=actor,
            action=AliasAction.PROMOTE,
            force=force,
        )

    async def rollback(
        self, *, model: str, alias: str, actor: str, to_version: int | None = None
    ) -> AliasRecord:
        """To `to_version` (one route, weight 100), or else undo the alias's newest change not
        undone yet (`undo_alias`: promote 2, promote 3, rollback → 2, rollback → 1). History
        action `rollback` either way; never refused for the agreement bound."""
        check_alias_name(alias)
        if to_version is None:
            return await self.undo_alias(model=model, alias=alias, actor=actor)
        return await self.set_alias(
            model=model,
            alias=alias,
            routes=[Route(to_version, 100)],
            actor=actor,
            action=AliasAction.ROLLBACK,
        )

    async def undo_alias(self, *, model: str, alias: str, actor: str) -> AliasRecord:
        """Rollback without a target: undo the alias's newest change that is not undone yet
        (back to that change's `from`), so successive rollbacks walk back through the history
        instead of toggling. NothingToUndo when no such change is left."""
        async with self._writes.begin() as session:
            model_row = await repo.get_model(session, name=model, lock=True)
            current = await repo.require_alias(session, model=model_row, name=alias)
            await refuse_if_rolling(session, model_row, alias)
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

    async def set_shadow(
        self, model: str, alias: str, shadow: Shadow | None, *, actor: str
    ) -> AliasRecord:
        """Mirror `shadow.percent` of the alias's requests to `shadow.version` (None: stop).
        A change writes the alias, bumps the generation (every gateway's routing table
        re-reads) and is audited as `alias.shadow` (before and after); it never enters the
        alias's history. Setting what is already there answers the alias with no generation.
        AliasNotFound for an alias that does not exist; VersionNotFound / VersionNotReady for
        a candidate that does not exist or is not ready; BadRequest for a percent outside
        1..100 or a name an alias may not have."""
        check_alias_name(alias)
        check_shadow(shadow)
        async with self._writes.begin() as session:
            model_row = await repo.get_model(session, name=model, lock=True)
            current = await repo.require_alias(session, model=model_row, name=alias)
            await refuse_if_rolling(session, model_row, alias)
            generation = None
            if await write_shadow(session, model_row, current, shadow, actor=actor):
                generation = await repo.bump_generation(session)
            record = replace(AliasRecord.from_row(current, model), generation=generation)
        if generation is not None:
            self._changed(generation)
        return record

    async def delete_alias(self, *, model: str, alias: str, actor: str) -> int:
        """Remove an alias, and its shadow with it (audited as `alias.shadow` too); returns the
        generation it committed with. `production` only while the model has no ready version
        that requests naming just the model would lose. BadRequest for a name an alias may
        not have."""
        check_alias_name(alias)
        async with self._writes.begin() as session:
            model_row = await repo.get_model(session, name=model, lock=True, children=True)
            current = await repo.require_alias(session, model=model_row, name=alias)
            await refuse_if_rolling(session, model_row, alias)
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
            if current.shadow is not None:
                audit(session, actor, "alias.shadow", f"{model}/{alias}", current.shadow, None)
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
