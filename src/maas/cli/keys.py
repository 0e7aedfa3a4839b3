"""`maas keys ...`: API keys, through the admin API; only `create --database-url` writes a
database directly (to bootstrap the first key), and it says which."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from maas.cli.client import Client, path
from maas.cli.output import (
    CliError,
    emit_json,
    json_option,
    plain,
    say,
    short_time,
    table,
    usage_error,
    warn,
)
from maas.cli.refs import model_name


@click.group()
def keys() -> None:
    """API keys (admin scope on a running server; MAAS_URL, MAAS_API_KEY)."""


def _expires(text: str | None) -> str | None:
    if text is None:
        return None
    try:
        at = datetime.fromisoformat(text.strip())
    except ValueError:
        raise usage_error(
            f"--expires {text!r}: expected an ISO 8601 time such as 2026-01-31T00:00:00Z"
        ) from None
    return (at if at.tzinfo else at.replace(tzinfo=UTC)).astimezone(UTC).isoformat()


@keys.command("create")
@click.argument("name")
@click.option(
    "--scope",
    "scopes",
    multiple=True,
    required=True,
    type=click.Choice(["admin", "infer"]),
    help="Repeat for several scopes.",
)
@click.option("--model", "models", multiple=True, help="Limit the key to this model (repeat).")
@click.option("--expires", default=None, help="ISO 8601 time after which the key is refused.")
@click.option(
    "--rate",
    type=click.FloatRange(min=0, min_open=True, max=1_000_000),
    default=None,
    help="Requests per second it may make (on each host; beyond: 429 with Retry-After).",
)
@click.option(
    "--database-url",
    default=None,
    help="Write the key straight into this registry database instead of asking the server "
    "(to bootstrap the first admin key).",
)
@json_option
def keys_create(
    name: str,
    scopes: tuple[str, ...],
    models: tuple[str, ...],
    expires: str | None,
    rate: float | None,
    database_url: str | None,
    as_json: bool,
) -> None:
    """Create a key and print its secret, shown this once only."""
    body: dict[str, Any] = {"name": name, "scopes": list(dict.fromkeys(scopes))}
    if models:
        body["models"] = [model_name(m) for m in models]
    expires_at = _expires(expires)
    if expires_at is not None:
        body["expires_at"] = expires_at
    if rate is not None:
        body["rate_limit_per_s"] = rate
    if database_url is not None:
        answer = _create_in_database(database_url, body)
    else:
        with Client() as client:
            answer = client.call("POST", path("keys"), json=body)
    if as_json:
        emit_json(answer)
        return
    say(f"created key {answer.get('id')} {answer.get('name')!r} ({plain(answer.get('scopes'))})")
    say("its secret, shown only this once (only its hash is kept):")
    say("")
    say(f"    {answer.get('secret')}")
    say("")


def _create_in_database(database_url: str, body: dict[str, Any]) -> dict[str, Any]:
    """The bootstrap path: the key written straight into the database, answered in the admin
    API's own shape."""
    from maas.api.admin.answers import KeyCreated
    from maas.api.answers import json_of
    from maas.auth.keys import create_key
    from maas.cli.serve import database_failure, load_settings, masked
    from maas.registry import db as registry_db
    from maas.registry.service import Registry

    url = load_settings(database_url=database_url).database_url

    async def run() -> dict[str, Any]:
        database = registry_db.open_database(url)
        try:
            await registry_db.upgrade(database.engine)
            registry = Registry(database.reads, writes=database.writes)
            expires = body.get("expires_at")
            record, secret = await create_key(
                registry,
                name=body["name"],
                scopes=body["scopes"],
                actor="cli",
                models=body.get("models"),
                expires_at=datetime.fromisoformat(expires) if expires else None,
                rate_limit_per_s=body.get("rate_limit_per_s"),
            )
        finally:
            await database.dispose()
        return json_of(KeyCreated.with_secret(record, secret))

    try:
        answer = asyncio.run(run())
    except Exception as exc:
        raise database_failure("write a key into", url, exc) from None
    warn(f"wrote key {answer['id']} into {masked(url)}")
    return answer


@keys.command("artifact")
def keys_artifact() -> None:
    """Print a new artifact key (MAAS_ARTIFACT_KEY: artifacts sealed at rest, AES-256-GCM).
    Give the same one to every gateway and worker; keep it: artifacts sealed with it open
    with it only."""
    from maas.store.sealing import ArtifactKey

    say(ArtifactKey.generate())


@keys.command("worker")
@click.option(
    "--out",
    "folder",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder for the key files (give it to every gateway and worker as MAAS_WORKER_KEYS_DIR).",
)
def keys_worker(folder: Path) -> None:
    """Make the deployment's CurveZMQ key pairs for tcp:// worker links (no server needed)."""
    from maas.transport.curve import KeysError, make_keys

    try:
        written = make_keys(folder)
    except (KeysError, OSError) as exc:
        raise CliError(str(exc)) from None
    for written_path in written:
        say(str(written_path))
    say(f"set MAAS_WORKER_KEYS_DIR={folder} for every gateway and worker of this deployment")


@keys.command("list")
@json_option
def keys_list(as_json: bool) -> None:
    """Every key (revoked ones too), never a secret."""
    with Client() as client:
        answer = client.call("GET", path("keys"))
    if as_json:
        emit_json(answer)
        return
    rows = answer.get("keys") or []
    table(
        ["ID", "NAME", "SCOPES", "MODELS", "EXPIRES", "CREATED", "REVOKED"],
        (
            [
                k.get("id"),
                k.get("name"),
                k.get("scopes"),
                k.get("models") or "all",
                short_time(k.get("expires_at")),
                short_time(k.get("created_at")),
                short_time(k.get("revoked_at")),
            ]
            for k in rows
        ),
    )


@keys.command("revoke")
@click.argument("key_id", metavar="ID", type=click.IntRange(min=1))
@json_option
def keys_revoke(key_id: int, as_json: bool) -> None:
    """Revoke key ID (refused for the last admin key)."""
    with Client() as client:
        answer = client.call("DELETE", path("keys", key_id))
    if as_json:
        emit_json(answer if answer is not None else {})
    else:
        say(f"revoked key {key_id}")
