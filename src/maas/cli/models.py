"""`maas models ...`: versions and aliases on a running server, through the admin API."""

from __future__ import annotations

from typing import Any

import click

from maas.cli.client import Client, path
from maas.cli.output import (
    CliError,
    emit_json,
    human_size,
    json_option,
    plain,
    routes_text,
    say,
    short_time,
    status_text,
    table,
    usage_error,
)
from maas.cli.refs import alias_name, alias_ref, model_name, parse_ref, version_ref
from maas.cli.register import models_register

ALIAS_OPTION = click.option(
    "--alias", default="production", show_default=True, callback=lambda c, p, v: alias_name(v)
)


@click.group()
def models() -> None:
    """Models, versions and aliases on a running server (MAAS_URL, MAAS_API_KEY)."""


models.add_command(models_register)


# --- reading ---------------------------------------------------------------------------------


@models.command("list")
@json_option
def models_list(as_json: bool) -> None:
    """Every model, its versions and their status, and its aliases."""
    with Client() as client:
        answer = client.call("GET", path("models"))
    if as_json:
        emit_json(answer)
        return
    rows = answer.get("models") or []
    if not rows:
        say("no models yet; add one with `maas models register NAME FILE --meta M`")
        return
    table(
        ["MODEL", "VERSIONS", "ALIASES"],
        (
            [
                m.get("name"),
                ", ".join(f"{v.get('version')} {v.get('status')}" for v in m.get("versions", []))
                or "—",
                "; ".join(
                    f"{a.get('alias')} → {routes_text(a.get('routes'))}"
                    for a in m.get("aliases", [])
                )
                or "—",
            ]
            for m in rows
        ),
    )


@models.command("show")
@click.argument("ref")
@json_option
def models_show(ref: str, as_json: bool) -> None:
    """A model (NAME), one version (NAME@V) or one alias (NAME@ALIAS)."""
    target = parse_ref(ref)
    with Client() as client:
        if target.version is not None:
            answer = client.call("GET", path("models", target.name, "versions", target.version))
        elif target.alias is not None:
            answer = client.call("GET", path("models", target.name, "aliases", target.alias))
        else:
            answer = client.call("GET", path("models", target.name))
    if as_json:
        emit_json(answer)
    elif target.version is not None:
        _show_version(answer)
    elif target.alias is not None:
        table(
            ["ALIAS", "ROUTES", "UPDATED"],
            [[answer.get("alias"), routes_text(answer.get("routes")), answer.get("updated_at")]],
            title=f"{target}",
        )
    else:
        _show_model(answer)


def _show_model(model: dict[str, Any]) -> None:
    name = model.get("name")
    description = model.get("description")
    table(
        ["VERSION", "STATUS", "FORMAT", "CREATED", "SHA256", "LOAD ERROR"],
        (
            [
                v.get("version"),
                status_text(v.get("status")),
                v.get("format"),
                short_time(v.get("created_at")),
                (v.get("sha256") or "")[:12] or None,
                v.get("load_error"),
            ]
            for v in model.get("versions", [])
        ),
        title=f"{name}" + (f": {description}" if description else ""),
    )
    aliases = model.get("aliases") or []
    if aliases:
        table(
            ["ALIAS", "ROUTES", "UPDATED"],
            (
                [a.get("alias"), routes_text(a.get("routes")), short_time(a.get("updated_at"))]
                for a in aliases
            ),
        )


_VERSION_FIELDS = (
    "model",
    "version",
    "status",
    "load_error",
    "format",
    "device",
    "replicas",
    "sha256",
    "size",
    "inputs",
    "outputs",
    "batching",
    "metrics",
    "tags",
    "description",
    "created_at",
    "updated_at",
    "loaded_at",
)


def _signature(specs: Any) -> str:
    try:
        return ", ".join(f"{s['name']} {s['dtype']} {s['shape']}" for s in specs) or "—"
    except (KeyError, TypeError):
        return plain(specs)


def _pairs(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k}={plain(v)}" for k, v in value.items()) or "—"
    return plain(value)


def _show_version(version: dict[str, Any]) -> None:
    rows: list[list[Any]] = []
    for field in (*_VERSION_FIELDS, *(k for k in version if k not in _VERSION_FIELDS)):
        if field not in version or field == "stats":
            continue
        value = version[field]
        if field == "status":
            rows.append([field, status_text(value)])
        elif field in ("inputs", "outputs"):
            rows.append([field, _signature(value)])
        elif field == "size":
            rows.append([field, human_size(value)])
        elif field in ("batching", "metrics", "tags"):
            rows.append([field, _pairs(value)])
        else:
            rows.append([field, value])
    stats = version.get("stats")
    if isinstance(stats, dict):
        rows.extend([f"stats.{k}", v] for k, v in stats.items())
    elif stats is not None:
        rows.append(["stats", stats])
    table(["FIELD", "VALUE"], rows, title=f"{version.get('model')}@{version.get('version')}")


# --- versions --------------------------------------------------------------------------------


def _version_action(ref_text: str, method: str, action: str | None, as_json: bool) -> None:
    ref = version_ref(ref_text)
    url = path("models", ref.name, "versions", ref.version or 0)
    with Client() as client:
        answer = client.call(method, url + (f"/{action}" if action else ""))
    if as_json:
        emit_json(answer)
        return
    status = (answer or {}).get("status", "done")
    hint = f"; follow it with `maas models show {ref}`" if status == "loading" else ""
    say(f"{ref} is {status}{hint}")


@models.command("load")
@click.argument("ref")
@json_option
def models_load(ref: str, as_json: bool) -> None:
    """Load NAME@V on the workers."""
    _version_action(ref, "POST", "load", as_json)


@models.command("unload")
@click.argument("ref")
@json_option
def models_unload(ref: str, as_json: bool) -> None:
    """Unload NAME@V from the workers (refused while an alias points at it)."""
    _version_action(ref, "POST", "unload", as_json)


@models.command("archive")
@click.argument("ref")
@json_option
def models_archive(ref: str, as_json: bool) -> None:
    """Archive NAME@V (refused while an alias points at it)."""
    _version_action(ref, "DELETE", None, as_json)


# --- aliases ---------------------------------------------------------------------------------


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
    propagated = answer.get("propagated") or {}
    tail = f"generation {answer.get('generation')}"
    if "gateways" in propagated:
        tail += (
            f", confirmed by {propagated.get('confirmed')}/{propagated.get('gateways')} gateways"
        )
    missing = propagated.get("missing") or []
    if missing:
        tail += f"; not yet served by {', '.join(str(m) for m in missing)}"
    return f"{head}; {tail}"


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


@models.command("promote")
@click.argument("ref")
@ALIAS_OPTION
@json_option
def models_promote(ref: str, alias: str, as_json: bool) -> None:
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
            {"version": version, "alias": alias},
            as_json,
        )


@models.command("rollback")
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


@models.command("canary")
@click.argument("ref")
@click.option(
    "--weight",
    required=True,
    type=click.IntRange(1, 99),
    help="Percent of the traffic for NAME@V (1-99); the current target(s) share the rest.",
)
@ALIAS_OPTION
@json_option
def models_canary(ref: str, weight: int, alias: str, as_json: bool) -> None:
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
        answer = client.call("PUT", path("models", target.name, "aliases", alias), json=body)
    _show_alias(answer, current, as_json)


@models.command("history")
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


@models.command("alias-delete")
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
