"""Commands that run maas itself: `serve`, `worker` and `db upgrade`.

A setting maas cannot use (`maas.config.SettingsError`) is a usage error: one line, exit 2.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import click

from maas.cli.output import CliError, Unreachable, one_line, usage_error, warn
from maas.config import Settings, SettingsError
from maas.errors import StoreUnavailable


def load_settings(**overrides: Any) -> Settings:
    try:
        return Settings.load(**overrides)
    except SettingsError as exc:
        raise usage_error(str(exc)) from None


def warn_unknown_variables() -> None:
    for name in Settings.unknown_variables():
        warn(f"warning: {name} is not a maas setting; ignored (a typo?)")


def masked(database_url: str) -> str:
    """The URL with any password replaced by `***`."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(database_url).render_as_string(hide_password=True)
    except Exception:  # not parseable: show nothing that could be a secret
        return database_url.split("://", 1)[0] + "://…" if "@" in database_url else database_url


def database_failure(action: str, database_url: str, exc: BaseException) -> CliError:
    """One line for a database that cannot be reached (exit 3) or refused the work (exit 1)."""
    from sqlalchemy.exc import InterfaceError, OperationalError

    from maas.errors import RegistryUnavailable

    unreachable = isinstance(exc, OperationalError | InterfaceError | RegistryUnavailable | OSError)
    reason = getattr(exc, "orig", None) or exc
    message = (
        f"cannot {action} the database at {masked(database_url)} "
        f"({type(reason).__name__}: {one_line(str(reason), 300)})"
    )
    return Unreachable(message) if unreachable else CliError(message)


@click.command()
@click.option("--host", default=None, help="Interface to listen on (MAAS_HOST).")
@click.option("--port", type=int, default=None, help="Port to listen on (MAAS_PORT).")
@click.option(
    "--workers",
    type=int,
    default=None,
    help="Local worker processes (MAAS_WORKERS); 0: only MAAS_WORKER_ENDPOINTS.",
)
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

    from maas import supervisor
    from maas.supervision.logs import LOG_FORMAT

    warn_unknown_variables()
    settings = load_settings(**overrides)
    logging.basicConfig(level=log_level.upper(), format=LOG_FORMAT)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    try:
        supervisor.Supervisor(settings, demo=settings.demo, log_level=log_level).run()
    except supervisor.StartupError as exc:
        raise CliError(str(exc)) from None
    except StoreUnavailable as exc:  # the bucket, checked before any gateway starts
        raise Unreachable(f"MAAS_ARTIFACT_URL: {exc.message}") from None


@click.command()
@click.option(
    "--listen",
    required=True,
    help="HOST:PORT (tcp) or a ZeroMQ endpoint such as ipc:///run/maas/w0.sock.",
)
@click.option(
    "--id", "worker_id", default=None, help="Its name (default: HOST-PORT of this machine)."
)
@click.option(
    "--advertise",
    default=None,
    help="HOST:PORT gateways reach it on, for its registry entry (default: --listen, with "
    "this machine's name for 0.0.0.0).",
)
@click.option("--index", type=int, default=0, help="Picks the CUDA device round-robin.")
@click.option("--device", default=None, help="cpu, cuda or cuda:N (default: by --index).")
@click.option("--threads", type=int, default=None, help="Torch intra-op threads.")
@click.option("--restarts", type=int, default=0, hidden=True)
# `maas serve`'s pid, for its local workers: the worker ends with it (maas.supervision.lifeline).
@click.option("--supervisor-pid", type=int, default=None, hidden=True)
@click.option("--log-level", default="info", show_default=True)
def worker(
    listen: str,
    worker_id: str | None,
    advertise: str | None,
    index: int,
    device: str | None,
    threads: int | None,
    restarts: int,
    supervisor_pid: int | None,
    log_level: str,
) -> None:
    """Run one worker process that loads versions and runs batches for gateways."""
    import logging

    if supervisor_pid is not None:
        from maas.supervision import lifeline

        # First, before the seconds of settings and torch: a supervisor gone meanwhile is seen.
        lifeline.hold(supervisor_pid, group=True)
    warn_unknown_variables()
    settings = load_settings()
    from maas.supervision.logs import LOG_FORMAT
    from maas.worker.main import run_worker

    logging.basicConfig(level=log_level.upper(), format=LOG_FORMAT)
    endpoint = listen if "://" in listen else f"tcp://{listen}"
    keys = None
    if settings.worker_keys_dir is not None:
        from maas.transport.curve import DeploymentKeys, KeysError

        try:
            keys = DeploymentKeys.load(settings.worker_keys_dir)
        except KeysError as exc:
            raise CliError(f"MAAS_WORKER_KEYS_DIR: {exc}") from None
    elif endpoint.startswith("tcp://"):
        raise CliError(
            f"--listen {listen}: a tcp:// worker needs the deployment's keys in "
            "MAAS_WORKER_KEYS_DIR (make them with: maas keys worker --out DIR)"
        )
    reachable = advertised_endpoint(endpoint, advertise)
    worker_id = worker_id or default_worker_id(endpoint)
    # With MAAS_DATABASE_URL set, a worker on tcp:// announces itself: gateways find it there
    # (an ipc:// one is a local worker of `maas serve`, which knows it already).
    announce = "database_url" in settings.model_fields_set and reachable.startswith("tcp://")
    run_worker(
        endpoint=endpoint,
        worker_id=worker_id,
        index=index,
        device=device,
        threads=threads or settings.effective_torch_threads,
        restarts=restarts,
        keys=keys,
        cache_dir=settings.worker_cache_dir,
        artifact_key=settings.sealing_key,
        artifact_url=settings.artifact_url,
        on_serving=(
            (lambda server: announce_worker(settings.database_url, server, reachable))
            if announce
            else None
        ),
    )


def advertised_endpoint(endpoint: str, advertise: str | None) -> str:
    """Where gateways reach a worker listening on `endpoint`."""
    import socket

    if advertise is not None:
        return advertise if "://" in advertise else f"tcp://{advertise}"
    if not endpoint.startswith("tcp://"):
        return endpoint
    host, _, port = endpoint.removeprefix("tcp://").rpartition(":")
    if host in ("0.0.0.0", "*", "::", "[::]", ""):
        host = socket.getfqdn()
    return f"tcp://{host}:{port}"


def default_worker_id(endpoint: str) -> str:
    import socket

    port = endpoint.rpartition(":")[2] if endpoint.startswith("tcp://") else ""
    return f"{socket.gethostname()}-{port}" if port else socket.gethostname()


def announce_worker(database_url: str, server: Any, endpoint: str) -> None:
    """Run the worker's registry announcement on a thread of its own (its own event loop:
    the worker's loop never waits on the database)."""
    import socket
    import threading
    import time

    from maas.control.workers import WorkerAnnouncer
    from maas.registry import db
    from maas.registry.coordination import Coordination, WorkerRecord
    from maas.transport.version import PROTOCOL
    from maas.worker.memory import DeviceMemory

    total, _ = DeviceMemory(server.device).read()
    record = WorkerRecord(
        id=server.worker_id,
        endpoint=endpoint,
        host=socket.gethostname(),
        device=server.device,
        memory_total=total,
        threads=server.threads,
        protocol=PROTOCOL,
        started_at=time.time(),
        last_seen=time.time(),
    )

    async def announce() -> None:
        database = db.open_database(database_url)
        try:
            coordination = Coordination(database.reads, writes=database.writes)
            await WorkerAnnouncer(coordination, record).run()
        finally:
            await database.dispose()

    threading.Thread(target=asyncio.run, args=(announce(),), name="announce", daemon=True).start()


@click.group()
def db() -> None:
    """Registry database."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True)
def db_upgrade(revision: str) -> None:
    """Apply migrations (alembic upgrade head)."""
    from maas.registry import db as registry_db

    settings = load_settings()

    async def run() -> None:
        engine = registry_db.create_engine(settings.database_url)
        try:
            await registry_db.upgrade(engine, revision)
        finally:
            await engine.dispose()

    try:
        asyncio.run(run())
    except Exception as exc:
        raise database_failure("upgrade", settings.database_url, exc) from None
    click.echo(f"registry at {revision}")
