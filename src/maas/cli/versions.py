"""`maas models ...`: the `models` group, and models and their versions on a running server,
through the admin API: list, show, load, unload, archive. `register` (upload and wait for the
load) comes from `maas.cli.register`, the alias commands from `maas.cli.aliases`.
"""

from __future__ import annotations

from typing import Any

import click

from maas.cli.aliases import (
    models_alias_delete,
    models_canary,
    models_history,
    models_promote,
    models_rollback,
)
from maas.cli.client import Client, path
from maas.cli.output import (
    emit_json,
    human_size,
    json_option,
    plain,
    routes_text,
    say,
    short_time,
    status_text,
    table,
)
from maas.cli.refs import parse_ref, version_ref
from maas.cli.register import models_register
from maas.cli.shadow import shadow_text


@click.group()
def models() -> None:
    """Models, versions and aliases on a running server (MAAS_URL, MAAS_API_KEY)."""


models.add_command(models_register)
models.add_command(models_promote)
models.add_command(models_rollback)
models.add_command(models_canary)
models.add_command(models_history)
models.add_command(models_alias_delete)


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
                    + (f", shadow {shadow_text(a['shadow'])}" if a.get("shadow") else "")
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
            ["ALIAS", "ROUTES", "SHADOW", "UPDATED"],
            [
                [
                    answer.get("alias"),
                    routes_text(answer.get("routes")),
                    shadow_text(answer.get("shadow")),
                    answer.get("updated_at"),
                ]
            ],
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
            ["ALIAS", "ROUTES", "SHADOW", "UPDATED"],
            (
                [
                    a.get("alias"),
                    routes_text(a.get("routes")),
                    shadow_text(a.get("shadow")),
                    short_time(a.get("updated_at")),
                ]
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
