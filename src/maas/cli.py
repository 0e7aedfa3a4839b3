"""The `maas` command line: serve, db, models and keys."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

import click
import httpx

from maas.config import Settings


@click.group()
@click.version_option(package_name="maas")
def main() -> None:
    """maas: model-as-a-service gateway for PyTorch models."""


@main.command()
@click.option("--host", default=None, help="Interface to listen on (MAAS_HOST).")
@click.option("--port", type=int, default=None, help="Port to listen on (MAAS_PORT).")
@click.option("--workers", type=int, default=None, help="Local worker processes (MAAS_WORKERS).")
@click.option("--gateways", type=int, default=None, help="Gateway processes (MAAS_GATEWAYS).")
@click.option("--database-url", default=None, help="Registry database (MAAS_DATABASE_URL).")
@click.option("--data-dir", type=click.Path(path_type=Path), default=None, help="MAAS_DATA_DIR.")
@click.option(
    "--artifact-dir", type=click.Path(path_type=Path), default=None, help="MAAS_ARTIFACT_DIR."
)
@click.option("--max-body-bytes", type=int, default=None, help="MAAS_MAX_BODY_BYTES.")
@click.option("--request-timeout-ms", type=int, default=None, help="MAAS_REQUEST_TIMEOUT_MS.")
@click.option("--bootstrap-admin-key", default=None, help="MAAS_BOOTSTRAP_ADMIN_KEY.")
@click.option("--demo", is_flag=True, default=None, help="Train and serve the demo models.")
@click.option("--log-level", default="info", show_default=True)
def serve(log_level: str, **overrides: Any) -> None:
    """Run G gateway processes and N workers (embedded SQLite unless MAAS_DATABASE_URL)."""
    import logging

    from maas.supervisor import Supervisor

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    settings = Settings.load(**overrides)
    Supervisor(settings, demo=settings.demo, log_level=log_level).run()


@main.command()
@click.option(
    "--listen",
    required=True,
    help="HOST:PORT (tcp) or a ZeroMQ endpoint such as ipc:///run/maas/w0.sock.",
)
@click.option("--id", "worker_id", default="w0", show_default=True)
@click.option("--index", type=int, default=0, help="Picks the CUDA device round-robin.")
@click.option("--device", default=None, help="cpu, cuda or cuda:N (default: by --index).")
@click.option("--threads", type=int, default=None, help="Torch intra-op threads.")
@click.option("--restarts", type=int, default=0, hidden=True)
@click.option("--log-level", default="info", show_default=True)
def worker(
    listen: str,
    worker_id: str,
    index: int,
    device: str | None,
    threads: int | None,
    restarts: int,
    log_level: str,
) -> None:
    """Run one worker process that loads versions and runs batches for gateways."""
    import logging

    from maas.workers.server import run_worker

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(name)s %(message)s")
    endpoint = listen if "://" in listen else f"tcp://{listen}"
    run_worker(
        endpoint=endpoint,
        worker_id=worker_id,
        index=index,
        device=device,
        threads=threads or Settings.load().effective_torch_threads,
        restarts=restarts,
    )


@main.group()
def db() -> None:
    """Registry database."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True)
def db_upgrade(revision: str) -> None:
    """Apply migrations (alembic upgrade head)."""
    from maas.registry import db as registry_db

    settings = Settings.load()

    async def run() -> None:
        engine = registry_db.create_engine(settings.database_url)
        try:
            await registry_db.upgrade(engine, revision)
        finally:
            await engine.dispose()

    asyncio.run(run())
    click.echo(f"registry at {revision}")


@main.group()
def keys() -> None:
    """API keys."""


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
def keys_create(name: str, scopes: tuple[str, ...]) -> None:
    """Create a key and print its secret once (directly on the DB unless MAAS_URL is set)."""
    if os.environ.get("MAAS_URL"):
        out = _call("POST", "/admin/keys", json={"name": name, "scopes": list(scopes)})
        click.echo(json.dumps(out, indent=2))
        return
    from maas.auth import create_key
    from maas.registry import db as registry_db
    from maas.registry.service import Registry

    settings = Settings.load()

    async def run() -> dict[str, Any]:
        database = registry_db.open_database(settings.database_url)
        try:
            await registry_db.upgrade(database.engine)
            registry = Registry(database.reads, writes=database.writes)
            record, secret = await create_key(registry, name=name, scopes=list(scopes), actor="cli")
            return {
                "id": record.id,
                "name": record.name,
                "scopes": list(record.scopes),
                "secret": secret,
            }
        finally:
            await database.dispose()

    click.echo(json.dumps(asyncio.run(run()), indent=2))


@main.group()
def models() -> None:
    """Models on a running gateway (MAAS_URL, key from MAAS_API_KEY or maas-data/admin.key)."""


@models.command("list")
def models_list() -> None:
    out = _call("GET", "/admin/models")
    for model in out["models"]:
        aliases = ", ".join(
            f"{a['alias']}->" + "+".join(f"{r['version']}({r['weight']})" for r in a["routes"])
            for a in model["aliases"]
        )
        versions = ", ".join(f"{v['version']}:{v['status']}" for v in model["versions"])
        click.echo(f"{model['name']:<20} versions [{versions}]  aliases [{aliases}]")


@models.command("register")
@click.argument("name")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--meta", "meta", required=True, help="JSON text, or @path to a JSON file.")
def models_register(name: str, file: Path, meta: str) -> None:
    """Upload FILE as a new version of NAME (the model is created if missing)."""
    meta_text = Path(meta[1:]).read_text() if meta.startswith("@") else meta
    with _client() as client:
        created = client.post("/admin/models", json={"name": name})
        if created.status_code not in (201, 409):
            _fail(created)
        with open(file, "rb") as fh:
            response = client.post(
                f"/admin/models/{name}/versions",
                files={"file": (file.name, fh, "application/octet-stream")},
                data={"meta": meta_text},
                timeout=None,
            )
        if response.status_code != 201:
            _fail(response)
        click.echo(json.dumps(response.json(), indent=2))


@models.command("promote")
@click.argument("ref")
@click.option("--alias", default="production", show_default=True)
def models_promote(ref: str, alias: str) -> None:
    """Point ALIAS at REF (NAME@VERSION)."""
    name, _, version = ref.partition("@")
    if not version.isdigit():
        raise click.BadParameter("expected NAME@VERSION", param_hint="REF")
    out = _call(
        "POST", f"/admin/models/{name}/promote", json={"version": int(version), "alias": alias}
    )
    click.echo(json.dumps(out, indent=2))


@models.command("rollback")
@click.argument("name")
@click.option("--alias", default="production", show_default=True)
@click.option("--to", "to_version", type=int, default=None)
def models_rollback(name: str, alias: str, to_version: int | None) -> None:
    body: dict[str, Any] = {"alias": alias}
    if to_version is not None:
        body["to_version"] = to_version
    click.echo(json.dumps(_call("POST", f"/admin/models/{name}/rollback", json=body), indent=2))


def _client() -> httpx.Client:
    settings = Settings.load()
    url = os.environ.get("MAAS_URL") or f"http://{settings.host}:{settings.port}"
    key = os.environ.get("MAAS_API_KEY")
    key_file = settings.data_dir / "admin.key"
    if not key and key_file.exists():
        key = key_file.read_text().strip()
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.Client(base_url=url, headers=headers, timeout=60)


def _call(method: str, path: str, **kwargs: Any) -> Any:
    with _client() as client:
        try:
            response = client.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise click.ClickException(f"cannot reach the gateway: {exc}") from None
    if response.is_error:
        _fail(response)
    return response.json()


def _fail(response: httpx.Response) -> None:
    try:
        error = response.json()["error"]
        message = f"{response.status_code} {error['code']}: {error['message']}"
    except (ValueError, KeyError, TypeError):
        message = f"{response.status_code}: {response.text[:500]}"
    click.echo(message, err=True)
    sys.exit(1)
