"""`maas models promote|rollback|canary|history|alias-delete`: a model's aliases on a running
server, through the admin API. A change is answered in one sentence: where the alias points
now, where it pointed before, and which gateways confirmed the new generation.
"""

from __future__ import annotations

from typing import Any

import click

from maas.cli.client import Client, path
from maas.cli.output import (
    CliError,
    emit_json,
    json_option,
    routes_text,
    say,
    short_time,
    table,
    usage_error,
)
from maas.cli.refs import alias_name, alias_ref, model_name, parse_ref, version_ref

ALIAS_OPTION = click.option(
    "--alias", default="production", show_default=True, callback=lambda c, p, v: alias_name(v)
)
FORCE_OPTION = click.option(
    "--force",
    is_flag=True,
    help="Route to a derived (int8) version even when its agreement with its parent is below "
    "its bound (audited).",
)


def _current_routes(client: Client, name: str, alias: str) -> list[dict[str, Any]] | None:
    """The alias's routes, or None when it does not exist yet."""
    found = client.find(path("models", name, "aliases", alias))
    if found is None:
        return None
    routes: list[dict[str, Any]] = found.get("routes") or []
    return routes


def _pairs_of(routes: list[dict[str, Any]] | None) -> list[tuple[int, int]]:
    return [(int(r["version"]), int(r["weight"])) for r in routes or []]


def alias_sentence(answer: dict[str, Any], before: list[dict[str, Any]] | None) -> str:
    """`production of digits → 3 (was 1); generation 17, confirmed by 2/2 gateways`."""
    alias, model, routes = answer.get("alias"), answer.get("model"), answer.get("routes")
    if before is not None and _pairs_of(before) == _pairs_of(routes):
        head = f"{alias} of {model} already → {routes_text(routes)}; nothing changed"
    else:
        was = f"was {routes_text(before)}" if before is not None else "new alias"
        head = f"{alias} of {model} → {routes_text(routes)} ({was})"
    return f"{head}; {served_text(answer)}"


def served_text(answer: dict[str, Any]) -> str:
    """`generation 17, confirmed by 2/2 gateways` (and which did not confirm, if any)."""
    propagated = answer.get("propagated") or {}
    tail = f"generation {answer.get('generation')}"
    if "gateways" in propagated:
        tail += (
            f", confirmed by {propagated.get('confirmed')}/{propagated.get('gateways')} gateways"
        )
    missing = propagated.get("missing") or []
    if missing:
        tail += f"; not yet served by {', '.join(str(m) for m in missing)}"
    return tail


def _alias_change(
    client: Client,
    name: str,
    alias: str,
    method: str,
    url: str,
    body: dict[str, Any],
    as_json: bool,
) -> None:
    before = _current_routes(client, name, alias)
    _show_alias(client.call(method, url, json=body), before, as_json)


def _show_alias(answer: Any, before: Any, as_json: bool) -> None:
    if as_json:
        emit_json(answer)
    else:
        say(alias_sentence(answer, before))


@click.command("promote")
@click.argument("ref")
@ALIAS_OPTION
@FORCE_OPTION
@json_option
def models_promote(ref: str, alias: str, force: bool, as_json: bool) -> None:
    """Point ALIAS (default production) at NAME@V, or at the one version NAME@OTHER serves."""
    target = parse_ref(ref)
    if target.version is None and target.alias is None:
        raise usage_error(f"expected NAME@VERSION or NAME@ALIAS such as digits@3, got {ref!r}")
    with Client() as client:
        version = target.version
        if version is None:
            assert target.alias is not None
            routes = client.call("GET", path("models", target.name, "aliases", target.alias))
            pairs = _pairs_of(routes.get("routes"))
            if len(pairs) != 1:
                raise CliError(
                    f"{target.alias} points at {len(pairs)} versions "
                    f"({routes_text(routes.get('routes'))}); promote one "
                    f"{target.name}@V",
                    code="conflict",
                )
            version = pairs[0][0]
        _alias_change(
            client,
            target.name,
            alias,
            "POST",
            path("models", target.name, "promote"),
            {"version": version, "alias": alias, **({"force": True} if force else {})},
            as_json,
        )


@click.command("rollback")
@click.argument("name")
@ALIAS_OPTION
@click.option("--to", "to_version", type=click.IntRange(min=1), default=None, metavar="V")
@json_option
def models_rollback(name: str, alias: str, to_version: int | None, as_json: bool) -> None:
    """Undo ALIAS's newest change (again to go further back), or point it --to V."""
    model_name(name)
    body: dict[str, Any] = {"alias": alias}
    if to_version is not None:
        body["to_version"] = to_version
    with Client() as client:
        _alias_change(client, name, alias, "POST", path("models", name, "rollback"), body, as_json)


def split_weights(
    current: list[tuple[int, int]], version: int, weight: int
) -> list[dict[str, int]]:
    """Routes for a canary: `version` at `weight` percent, the other current targets scaled to
    share the remaining `100 - weight` in proportion to their weights (largest remainder, so the
    total is exactly 100; targets scaled to 0 are dropped)."""
    others = [(v, w) for v, w in current if v != version and w > 0]
    rest = 100 - weight
    total = sum(w for _, w in others)
    quotas = [w * rest / total for _, w in others] if total else []
    shares = [int(q) for q in quotas]
    by_remainder = sorted(range(len(quotas)), key=lambda i: shares[i] - quotas[i])
    for i in by_remainder[: rest - sum(shares)] if quotas else []:
        shares[i] += 1
    routes = [
        {"version": v, "weight": s} for (v, _), s in zip(others, shares, strict=True) if s > 0
    ]
    routes.append({"version": version, "weight": weight})
    return routes


@click.command("canary")
@click.argument("ref")
@click.option(
    "--weight",
    required=True,
    type=click.IntRange(1, 99),
    help="Percent of the traffic for NAME@V (1-99); the current target(s) share the rest.",
)
@ALIAS_OPTION
@FORCE_OPTION
@json_option
def models_canary(ref: str, weight: int, alias: str, force: bool, as_json: bool) -> None:
    """Send WEIGHT percent of ALIAS's traffic to NAME@V, the rest to its current target(s)."""
    target = version_ref(ref)
    assert target.version is not None
    with Client() as client:
        current = _current_routes(client, target.name, alias)
        if current is None:
            raise CliError(
                f"{target.name} has no alias {alias} to split; point it at a version first "
                f"(`maas models promote {target.name}@V --alias {alias}`)",
                code="alias_not_found",
            )
        pairs = _pairs_of(current)
        if all(v == target.version for v, _ in pairs):
            raise CliError(
                f"{alias} of {target.name} already sends all its traffic to {target.version}; "
                "nothing to split it with",
                code="conflict",
            )
        body: dict[str, Any] = {"routes": split_weights(pairs, target.version, weight)}
        if len(pairs) == 1:
            body["expected_current"] = pairs[0][0]  # 409 if it moved since we read it
        if force:
            body["force"] = True
        answer = client.call("PUT", path("models", target.name, "aliases", alias), json=body)
    _show_alias(answer, current, as_json)


@click.command("history")
@click.argument("name")
@ALIAS_OPTION
@click.option("--limit", type=click.IntRange(1, 10_000), default=None, help="At most N rows.")
@json_option
def models_history(name: str, alias: str, limit: int | None, as_json: bool) -> None:
    """The changes of ALIAS, newest first."""
    model_name(name)
    with Client() as client:
        answer = client.call(
            "GET", path("models", name, "aliases", alias, "history"), params={"limit": limit}
        )
    if as_json:
        emit_json(answer)
        return
    rows = answer.get("history") or []
    if not rows:
        say(f"{alias} of {name} has no history")
        return
    undoes = any("undoes" in r for r in rows)
    table(
        ["AT", "ACTION", "FROM", "TO", "KEY", *(["UNDOES"] if undoes else [])],
        (
            [
                short_time(r.get("at")),
                r.get("action"),
                routes_text(r.get("from")),
                routes_text(r.get("to")),
                r.get("key"),
                *([r.get("undoes")] if undoes else []),
            ]
            for r in rows
        ),
        title=f"{alias} of {name}",
    )


@click.command("alias-delete")
@click.argument("ref")
@json_option
def models_alias_delete(ref: str, as_json: bool) -> None:
    """Delete the alias NAME@ALIAS."""
    target = alias_ref(ref)
    assert target.alias is not None
    with Client() as client:
        answer = client.call("DELETE", path("models", target.name, "aliases", target.alias))
    if as_json:
        emit_json(answer if answer is not None else {})
    else:
        say(f"deleted alias {target.alias} of {target.name}")
