"""The alias rules that more than one operation shares: which names an alias may have, and the
writes inside a registry transaction: moving an alias (its routes, history row and audit event,
and the generation bump), the undo stack a rollback reads, and the audit row itself. Callers
own the transaction and lock the model row first.

The agreement bound: a derived version (an int8 twin, `derived_from`) whose measured top-1
agreement with its parent (`metrics.agreement`) is below its `min_agreement` gets no more of an
alias's traffic than it has (BelowAgreement, 409) unless the change is forced; a forced change
is audited as `alias.force` with the figures. Rollbacks move back to earlier targets and are
never refused, and the first-ready rule never makes such a version production."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select

from maas.errors import AliasInUse, BadRequest, BelowAgreement, ConcurrentChange, VersionNotReady
from maas.registry import repository as repo
from maas.registry.records import AliasRecord, Route, routes_json
from maas.registry.tables import Alias, AliasHistory, AliasRoute, AuditEvent, Model, ModelVersion
from maas.types import (
    ALIAS_NAME_RE,
    DEFAULT_ALIAS,
    AliasAction,
    Derivation,
    Shadow,
    VersionStatus,
)

UNSET: Any = object()  # `expected_current` not given: no condition on the alias's target
# Who the audit log and alias history name for the changes the registry makes on its own.
SYSTEM_ACTOR = "system"


def check_alias_name(alias: str) -> str:
    """`alias`, if it is a name an alias may have; BadRequest otherwise (before any read, so
    a bad name is refused whatever the model)."""
    if not ALIAS_NAME_RE.fullmatch(alias):
        raise BadRequest(f"'{alias}' is not a valid alias name ([a-z][a-z0-9_-]{{0,31}})")
    return alias


def audit(session: Any, actor: str, action: str, target: str, before: Any, after: Any) -> None:
    session.add(
        AuditEvent(key_name=actor, action=action, target=target, before=before, after=after)
    )


def check_expected(current: Alias | None, expected: Any) -> None:
    if expected is UNSET:
        return
    if expected is None:
        if current is not None:
            raise ConcurrentChange(f"alias '{current.name}' already exists")
        return
    targets = [r.version for r in current.routes] if current else []
    if targets != [expected]:
        raise ConcurrentChange(
            f"alias moved: expected it at version {expected}, it points at {targets or 'nothing'}"
        )


async def move_alias(
    session: Any,
    model_row: Model,
    alias: str,
    current: Alias | None,
    routes: list[Route],
    *,
    actor: str,
    action: AliasAction,
    undoes: int | None = None,
    force: bool = False,
) -> AliasRecord:
    """Point `current` (or a new alias) at `routes` in this transaction, with its history row
    and audit event; a move that changes nothing returns the alias as it is (no generation).
    BelowAgreement when it gives a derived version below its bound more of the traffic,
    unless `force` (audited) or a rollback."""
    targets = await _ready_targets(session, model_row, routes)
    new_routes = tuple(sorted(routes, key=lambda r: r.version))
    old_routes = tuple(Route(r.version, r.weight) for r in current.routes) if current else None
    if current is not None and old_routes == new_routes:
        return AliasRecord.from_row(current, model_row.name)
    if action is not AliasAction.ROLLBACK:
        for route in _growing(old_routes or (), new_routes):
            below = below_bound(targets[route.version])
            if below is None:
                continue
            derivation, agreement = below
            if not force:
                raise BelowAgreement(_refusal(model_row.name, route.version, *below))
            figures = {"agreement": agreement, "min_agreement": derivation.min_agreement}
            audit(
                session,
                actor,
                "alias.force",
                f"{model_row.name}/{alias}",
                None,
                {"version": route.version, "parent": derivation.version, **figures},
            )
    now = datetime.now(UTC)
    if current is None:
        current = Alias(model_id=model_row.id, name=alias, created_at=now, routes=[])
        session.add(current)
    current.updated_at = now
    current.routes = [
        AliasRoute(version_id=targets[r.version].id, version=r.version, weight=r.weight)
        for r in new_routes
    ]
    session.add(
        AliasHistory(
            model_id=model_row.id,
            alias=alias,
            action=action.value,
            from_routes=routes_json(old_routes),
            to_routes=routes_json(new_routes),
            key_name=actor,
            at=now,
            undoes=undoes,
        )
    )
    audit(
        session,
        actor,
        f"alias.{action.value}",
        f"{model_row.name}/{alias}",
        routes_json(old_routes),
        routes_json(new_routes),
    )
    await session.flush()
    generation = await repo.bump_generation(session)
    shadow = None if current.shadow is None else Shadow.from_json(current.shadow)
    return AliasRecord(model_row.name, alias, new_routes, now, generation, shadow)


def check_shadow(shadow: Shadow | None) -> Shadow | None:
    """`shadow`, if its percent is one an alias may mirror (1..100); BadRequest otherwise
    (before any read)."""
    if shadow is not None and not 1 <= shadow.percent <= 100:
        raise BadRequest(
            f"a shadow mirrors 1 to 100 percent of the alias's requests, not {shadow.percent}"
        )
    return shadow


async def write_shadow(
    session: Any, model_row: Model, current: Alias, shadow: Shadow | None, *, actor: str
) -> bool:
    """Set (or, with None, remove) the shadow of alias row `current` in this transaction, with
    its audit event; whether anything changed (the caller bumps the generation then).
    VersionNotFound / VersionNotReady for a candidate that does not exist or is not ready."""
    check_shadow(shadow)
    after = None if shadow is None else shadow.to_json()
    if current.shadow == after:
        return False
    if shadow is not None:
        row = await repo.get_version(session, model=model_row, version=shadow.version)
        if row.status != VersionStatus.READY.value:
            raise VersionNotReady(
                f"{model_row.name}@{shadow.version} is {row.status}; an alias may only shadow "
                "ready versions (load it first: maas models load "
                f"{model_row.name}@{shadow.version})"
            )
    audit(session, actor, "alias.shadow", f"{model_row.name}/{current.name}", current.shadow, after)
    current.shadow = after
    current.updated_at = datetime.now(UTC)
    await session.flush()
    return True


async def aliases_shadowing(session: Any, *, version: ModelVersion) -> list[str]:
    """The names of the version's model's aliases that shadow it, in order."""
    query = select(Alias).where(Alias.model_id == version.model_id).order_by(Alias.name)
    return [  # filtered here: a removed shadow may be stored as JSON null, not SQL NULL
        alias.name
        for alias in (await session.execute(query)).scalars()
        if alias.shadow is not None and Shadow.from_json(alias.shadow).version == version.version
    ]


def shadowed_refusal(key: object, aliases: list[str], verb: str) -> AliasInUse:
    """The refusal to unload or archive a version that aliases shadow."""
    model = str(key).split("@", 1)[0]
    removes = "; ".join(f"maas models shadow {model} --off --alias {a}" for a in aliases)
    return AliasInUse(
        f"{key} is the shadow of alias(es) {', '.join(aliases)}; remove the shadow before you "
        f'{verb} it (PUT the alias with "shadow": null, or: {removes})'
    )


async def first_target(session: Any, model_row: Model, version: int) -> int:
    """Point the model's missing `production` alias at `version`, which has just turned ready,
    unless it is a derived version below its agreement bound (it is left without production
    then); the generation it committed with."""
    row = await repo.get_version(session, model=model_row, version=version)
    if below_bound(row) is not None:
        return await repo.bump_generation(session)
    record = await move_alias(
        session,
        model_row,
        DEFAULT_ALIAS,
        None,
        [Route(version, 100)],
        actor=SYSTEM_ACTOR,
        action=AliasAction.SET,
    )
    assert record.generation is not None  # a new alias always moves
    return record.generation


def below_bound(row: ModelVersion) -> tuple[Derivation, float | None] | None:
    """A derived version's derivation and measured agreement when the agreement is below its
    bound (None when never measured); None when it is not derived or meets its bound."""
    if row.derived_from is None:
        return None
    derivation = Derivation.from_json(row.derived_from)
    agreement = (row.metrics or {}).get("agreement")
    if not isinstance(agreement, int | float):
        return derivation, None
    if agreement >= derivation.min_agreement:
        return None
    return derivation, float(agreement)


def _refusal(model: str, version: int, derivation: Derivation, agreement: float | None) -> str:
    measured = (
        f"has no measured agreement with its parent (version {derivation.version})"
        if agreement is None
        else f"agrees with its parent (version {derivation.version}) on {agreement:.2%} of "
        "top-1 answers"
    )
    return (
        f"{model}@{version} ({derivation.method}) {measured}, below its min_agreement of "
        f'{derivation.min_agreement:.2%}; to route to it anyway, send "force": true (maas '
        "models promote|canary ... --force)"
    )


def _growing(old: tuple[Route, ...], new: tuple[Route, ...]) -> list[Route]:
    """The routes of `new` whose version gets a larger share of the traffic than in `old`."""
    old_total = sum(r.weight for r in old)
    new_total = sum(r.weight for r in new)
    before = {r.version: r.weight for r in old}
    return [
        r
        for r in new
        if r.weight > 0
        and (r.version not in before or r.weight * old_total > before[r.version] * new_total)
    ]


def top_of_undo_stack(rows: Any) -> AliasHistory | None:
    """The newest change not undone yet, from history rows newest first: undo rows pop the
    change they name and are never undone themselves; a deletion ends the stack."""
    undone: set[int] = set()
    for row in rows:
        if row.action == AliasAction.DELETE.value:
            return None
        if row.undoes is not None:
            undone.add(row.undoes)
            continue
        if row.id not in undone:
            return row  # type: ignore[no-any-return]
    return None


async def _ready_targets(
    session: Any, model: Model, routes: list[Route]
) -> dict[int, ModelVersion]:
    targets: dict[int, ModelVersion] = {}
    for route in routes:
        row = await repo.get_version(session, model=model, version=route.version)
        if row.status != VersionStatus.READY.value:
            raise VersionNotReady(
                f"{model.name}@{route.version} is {row.status}; an alias may only point at "
                "ready versions"
            )
        targets[route.version] = row
    return targets
