"""A throwaway PostgreSQL server for tests: one per session, a fresh database per test.

`initdb` and `pg_ctl` must be on PATH; without them the fixtures skip. Any other failure to
bring the server up fails the test loudly, with the server's log. initdb refuses to run as
root, so under root the server runs as the `postgres` system user, in a temporary directory
handed over to it. The server listens on 127.0.0.1 only (its socket directory lives inside the
temporary directory), trusts every local connection and skips durability for speed.
"""

from __future__ import annotations

import asyncio
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import pytest

HOST = "127.0.0.1"
SUPERUSER = "postgres"
_SETTINGS = {
    "listen_addresses": f"'{HOST}'",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "200",
    "shared_buffers": "32MB",
}


@dataclass(frozen=True)
class PostgresServer:
    host: str
    port: int
    user: str
    base_dir: Path

    @property
    def admin_url(self) -> str:
        return self.url("postgres")

    def url(self, database: str) -> str:
        return f"postgresql://{self.user}@{self.host}:{self.port}/{database}"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _as_server_user() -> tuple[list[str], tuple[int, int] | None]:
    """Command prefix that runs a binary as the server's OS user, and the uid/gid to chown to."""
    if os.geteuid() != 0:
        return [], None
    try:
        entry = pwd.getpwnam("postgres")
    except KeyError:
        pytest.fail("running as root, but there is no `postgres` system user to run initdb as")
    if shutil.which("runuser"):
        return ["runuser", "-u", "postgres", "--"], (entry.pw_uid, entry.pw_gid)
    pytest.fail("running as root, but `runuser` is missing: cannot switch to `postgres`")


def _run(cmd: list[str], cwd: Path, what: str, log: Path | None = None) -> None:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=120, check=False)
    if proc.returncode != 0:
        server_log = log.read_text(errors="replace") if log is not None and log.exists() else ""
        pytest.fail(
            f"{what} failed (exit {proc.returncode}): {' '.join(cmd)}\n"
            f"--- stdout ---\n{proc.stdout}\n--- stderr ---\n{proc.stderr}\n"
            f"--- server log ---\n{server_log}",
            pytrace=False,
        )


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    initdb, pg_ctl = shutil.which("initdb"), shutil.which("pg_ctl")
    if initdb is None or pg_ctl is None:
        pytest.skip("PostgreSQL binaries (initdb, pg_ctl) are not on PATH")
    prefix, owner = _as_server_user()

    base = Path(tempfile.mkdtemp(prefix="maas-pg-"))
    log = base / "server.log"
    started = False
    try:
        data, port = _init_cluster(base, prefix, owner)
        started = True  # from here on, try to stop it whatever happens
        _run(
            [*prefix, pg_ctl, "-D", str(data), "-l", str(log), "-w", "-t", "60", "start"],
            cwd=base,
            what="pg_ctl start",
            log=log,
        )
        yield PostgresServer(host=HOST, port=port, user=SUPERUSER, base_dir=base)
    finally:
        try:
            if started:
                _stop_now(prefix, data, base)
        finally:
            shutil.rmtree(base, ignore_errors=True)


def _stop_now(prefix: list[str], data: Path, base: Path) -> None:
    """`pg_ctl -m immediate stop`, whatever state the server is in (teardown)."""
    pg_ctl = shutil.which("pg_ctl") or "pg_ctl"
    subprocess.run(
        [*prefix, pg_ctl, "-D", str(data), "-m", "immediate", "-w", "stop"],
        cwd=base,
        capture_output=True,
        timeout=60,
        check=False,
    )


def _admin(server: PostgresServer, sql: str) -> None:
    """Run one statement on the `postgres` database, from a thread of its own, so that it works
    the same whether or not the caller is inside a running event loop."""
    errors: list[BaseException] = []

    async def go() -> None:
        conn: Any = await asyncpg.connect(
            host=server.host, port=server.port, user=server.user, database="postgres"
        )
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    def target() -> None:
        try:
            asyncio.run(go())
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=target, name="postgres-admin")
    thread.start()
    thread.join()
    if errors:
        raise errors[0]


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> Iterator[str]:
    """A fresh, empty database on the session's server; dropped afterwards."""
    name = f"t_{uuid.uuid4().hex[:20]}"
    _admin(postgres_server, f'CREATE DATABASE "{name}"')
    try:
        yield postgres_server.url(name)
    finally:
        _admin(postgres_server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class StoppablePostgres:
    """A PostgreSQL server of a test's own, with one database (`url`), that the test may stop
    and start again (a registry outage); the same port and data survive a restart."""

    def __init__(self, server: PostgresServer, data: Path, log: Path, prefix: list[str]) -> None:
        self.server = server
        self.url = server.url("maas")
        self._data, self._log, self._prefix = data, log, prefix
        self.running = False

    def start(self) -> None:
        pg_ctl = shutil.which("pg_ctl")
        assert pg_ctl is not None
        cmd = [*self._prefix, pg_ctl, "-D", str(self._data), "-l", str(self._log), "-w"]
        _run(
            [*cmd, "-t", "60", "start"],
            cwd=self.server.base_dir,
            what="pg_ctl start",
            log=self._log,
        )
        self.running = True

    def stop(self, mode: str = "fast") -> None:
        """`pg_ctl -m fast stop`: clients are disconnected, new connections refused."""
        pg_ctl = shutil.which("pg_ctl")
        assert pg_ctl is not None
        cmd = [*self._prefix, pg_ctl, "-D", str(self._data), "-m", mode, "-w", "-t", "60", "stop"]
        _run(cmd, cwd=self.server.base_dir, what="pg_ctl stop", log=self._log)
        self.running = False


def _init_cluster(base: Path, prefix: list[str], owner: tuple[int, int] | None) -> tuple[Path, int]:
    """initdb a data directory under `base` set up like the session server's; (data, port)."""
    initdb = shutil.which("initdb")
    assert initdb is not None
    data, sockets = base / "data", base / "sock"
    sockets.mkdir()
    if owner is not None:
        for path in (base, sockets):
            os.chown(path, *owner)
    _run(
        [
            *prefix,
            initdb,
            *("-D", str(data), "-U", SUPERUSER, "-A", "trust", "-E", "UTF8", "--locale=C"),
            "--no-sync",
            "--no-instructions",
        ],
        cwd=base,
        what="initdb",
    )
    port = _free_port()
    conf = "".join(f"{key} = {value}\n" for key, value in _SETTINGS.items())
    conf += f"port = {port}\nunix_socket_directories = '{sockets}'\n"
    with (data / "postgresql.conf").open("a") as fh:  # appended settings win
        fh.write(conf)
    return data, port


@pytest.fixture
def stoppable_postgres() -> Iterator[StoppablePostgres]:
    """A dedicated PostgreSQL server (not the session's), running, with an empty database
    `maas`; the test may `stop()` and `start()` it. Removed afterwards, whatever its state."""
    if shutil.which("initdb") is None or shutil.which("pg_ctl") is None:
        pytest.skip("PostgreSQL binaries (initdb, pg_ctl) are not on PATH")
    prefix, owner = _as_server_user()
    base = Path(tempfile.mkdtemp(prefix="maas-pg-stoppable-"))
    pg: StoppablePostgres | None = None
    try:
        data, port = _init_cluster(base, prefix, owner)
        server = PostgresServer(host=HOST, port=port, user=SUPERUSER, base_dir=base)
        pg = StoppablePostgres(server, data, base / "server.log", prefix)
        pg.running = True  # from here on, try to stop it whatever happens
        pg.start()
        _admin(server, 'CREATE DATABASE "maas"')
        yield pg
    finally:
        try:
            if pg is not None and pg.running:
                _stop_now(prefix, base / "data", base)
        finally:
            shutil.rmtree(base, ignore_errors=True)
