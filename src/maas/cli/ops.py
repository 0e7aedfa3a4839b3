"""`maas events`, `maas gateways`, `maas workers`: what the server did and what it runs on."""

from __future__ import annotations

from typing import Any

import click

from maas.cli.client import Client, path
from maas.cli.output import emit_json, json_option, plain, routes_text, say, short_time, table
from maas.cli.refs import since as parse_since


def _since(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    return None if value is None else parse_since(value)


@click.command()
@click.option("--model", default=None, help="Only events about this model.")
@click.option("--action", default=None, help="Only this action, e.g. promote, key.create.")
@click.option("--key", default=None, help="Only events by this key (its name).")
@click.option(
    "--since",
    default=None,
    callback=_since,
    help="Only newer events: 10m, 2h, 1d, or an ISO 8601 time (UTC unless it has an offset).",
)
@click.option("--limit", type=click.IntRange(1, 10_000), default=None, help="At most N events.")
@json_option
def events(
    model: str | None,
    action: str | None,
    key: str | None,
    since: str | None,
    limit: int | None,
    as_json: bool,
) -> None:
    """The audit log, newest first: who did what, before and after."""
    params = {"model": model, "action": action, "key": key, "since": since, "limit": limit}
    with Client() as client:
        answer = client.call("GET", path("events"), params=params)
    if as_json:
        emit_json(answer)
        return
    rows = answer.get("events") or []
    if not rows:
        say("no events")
        return
    table(
        ["AT", "KEY", "ACTION", "TARGET", "BEFORE", "AFTER"],
        (
            [
                short_time(e.get("at")),
                e.get("key"),
                e.get("action"),
                e.get("target"),
                _brief(e.get("before")),
                _brief(e.get("after")),
            ]
            for e in rows
        ),
    )


def _brief(value: Any, limit: int = 80) -> str:
    """A before/after value: routes as `1 (90%) + 2 (10%)`, anything else as compact JSON."""
    is_routes = isinstance(value, list) and all(
        isinstance(r, dict) and set(r) == {"version", "weight"} for r in value
    )
    text = routes_text(value) if is_routes and value else plain(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


@click.command()
@json_option
def gateways(as_json: bool) -> None:
    """Every live gateway: host, pid, the generation it serves, when it was last seen, whether
    it leads placement and whether it drives the rollouts."""
    with Client() as client:
        answer = client.call("GET", path("gateways"))
    if as_json:
        emit_json(answer)
        return
    rows = answer.get("gateways") or []
    table(
        ["ID", "HOST", "PID", "GENERATION", "LAST SEEN", "LEADER", "ROLLOUTS"],
        (
            [
                g.get("id"),
                g.get("host"),
                g.get("pid"),
                g.get("generation"),
                short_time(g.get("last_seen")),
                g.get("leader"),
                g.get("rollouts"),
            ]
            for g in rows
        ),
        title=f"registry generation {answer.get('generation')}" if "generation" in answer else None,
    )


_WORKER_COLUMNS = ("id", "host", "pid", "device", "healthy", "queue_depth", "versions")
_NESTED = ("stats",)  # too big for a table: in --json


@click.command()
@json_option
def workers(as_json: bool) -> None:
    """Workers: their device, health, queue and loaded versions."""
    with Client() as client:
        answer = client.call("GET", path("workers"))
    if as_json:
        emit_json(answer)
        return
    rows: list[dict[str, Any]] = [w for w in answer.get("workers") or [] if isinstance(w, dict)]
    if not rows:
        say("no workers")
        return
    columns = [c for c in _WORKER_COLUMNS if any(c in w for w in rows)]
    for w in rows:
        columns.extend(k for k in w if k not in columns and k not in _NESTED)
    table(
        [c.upper().replace("_", " ") for c in columns],
        ([w.get(c) for c in columns] for w in rows),
    )
