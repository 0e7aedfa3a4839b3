"""`maas keys ...`: through the server, and `create --database-url` straight into a database."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from support.cli import Cli, cli_server
from support.processes import maas_server


@pytest.fixture(scope="module")
def cli(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cli]:
    with cli_server(tmp_path_factory.mktemp("cli-keys")) as running:
        yield running


def _works(url: str, secret: str) -> int:
    return httpx.get(
        url + "/admin/models", headers={"Authorization": f"Bearer {secret}"}
    ).status_code


def test_create_prints_the_secret_once(cli: Cli) -> None:
    created = cli("keys", "create", "ci-json", "--scope", "infer", "--json").json()
    assert created["name"] == "ci-json"
    assert created["scopes"] == ["infer"]
    assert created["secret"].startswith("maas_")
    human = cli("keys", "create", "ci-human", "--scope", "admin", "--scope", "infer").ok()
    assert "shown only this once" in human.out
    secret = next(w for w in human.out.split() if w.startswith("maas_"))
    assert _works(cli.url, secret) == 200
    listed = cli("keys", "list", "--json").json()["keys"]
    (mine,) = [k for k in listed if k["name"] == "ci-human"]
    assert "secret" not in mine
    assert secret not in cli("keys", "list").out
    cli("keys", "revoke", str(mine["id"])).ok()  # leave the bootstrap key the only admin key


def test_list_and_revoke(cli: Cli) -> None:
    created = cli("keys", "create", "to-revoke", "--scope", "infer", "--json").json()
    listed = cli("keys", "list", "--json").json()["keys"]
    (row,) = [k for k in listed if k["id"] == created["id"]]
    assert row["name"] == "to-revoke"
    assert row["scopes"] == ["infer"]
    assert row["revoked_at"] is None
    assert all("secret" not in k for k in listed)

    table = cli("keys", "list").ok().out
    for header in ("ID", "NAME", "SCOPES", "CREATED", "REVOKED"):
        assert header in table
    assert "to-revoke" in table

    said = cli("keys", "revoke", str(created["id"])).ok().out
    assert said == f"revoked key {created['id']}\n"
    listed = cli("keys", "list", "--json").json()["keys"]
    (row,) = [k for k in listed if k["id"] == created["id"]]
    assert row["revoked_at"] is not None


def test_create_limited_to_models_and_expiring(cli: Cli) -> None:
    created = cli(
        "keys",
        "create",
        "ci-limited",
        "--scope",
        "admin",
        "--model",
        "digits",
        "--model",
        "tokens",
        "--expires",
        "2099-01-31T00:00:00Z",
        "--rate",
        "50",
        "--json",
    ).json()
    assert created["models"] == ["digits", "tokens"]
    assert created["expires_at"] == "2099-01-31T00:00:00+00:00"
    assert created["rate_limit_per_s"] == 50
    headers = {"Authorization": f"Bearer {created['secret']}"}
    listed = httpx.get(cli.url + "/admin/models", headers=headers)
    assert listed.status_code == 200  # its own models only
    assert {m["name"] for m in listed.json()["models"]} <= {"digits", "tokens"}
    assert httpx.post(cli.url + "/admin/keys", json={}, headers=headers).status_code == 403
    table = cli("keys", "list").ok().out
    assert "digits" in table
    cli("keys", "revoke", str(created["id"])).ok()
    bad = cli("keys", "create", "x", "--scope", "infer", "--expires", "2001-01-01").failed(1)
    assert "future" in bad


def test_revoking_the_last_admin_key_is_refused(cli: Cli) -> None:
    listed = cli("keys", "list", "--json").json()["keys"]
    admins = [k for k in listed if "admin" in k["scopes"] and k["revoked_at"] is None]
    assert [k["name"] for k in admins] == ["bootstrap-admin"]
    line = cli("keys", "revoke", str(admins[0]["id"])).failed(1)
    assert line.startswith("error: 409 ")


def test_revoking_an_unknown_key_exits_1(cli: Cli) -> None:
    assert cli("keys", "revoke", "99999").failed(1).startswith("error: 404 ")


def test_create_with_database_url_writes_that_database(tmp_path: Path) -> None:
    database = f"sqlite:///{tmp_path}/registry.db"
    cli = Cli("http://127.0.0.1:1", tmp_path)  # no server: it must not be asked
    upgraded = cli("db", "upgrade", env={"MAAS_DATABASE_URL": database}).ok()
    assert "head" in upgraded.out
    run = cli("keys", "create", "boot", "--scope", "admin", "--database-url", database, "--json")
    created = run.json()
    assert created["scopes"] == ["admin"]
    assert created["secret"].startswith("maas_")
    assert run.err == f"wrote key {created['id']} into {database}\n"

    human = cli("keys", "create", "boot2", "--scope", "infer", "--database-url", database).ok()
    assert "shown only this once" in human.out
    assert human.err.startswith("wrote key ")

    with maas_server(tmp_path) as url:  # the same database: the key works there
        assert _works(url, created["secret"]) == 200


def test_create_with_database_url_masks_the_password(tmp_path: Path) -> None:
    cli = Cli("http://127.0.0.1:1", tmp_path)
    url = "postgresql://maas:hunter2secret@127.0.0.1:1/maas"
    line = cli("keys", "create", "boot", "--scope", "admin", "--database-url", url).failed(3)
    assert "hunter2secret" not in line
    assert "127.0.0.1:1/maas" in line


def test_create_with_a_database_url_maas_cannot_use_is_a_usage_error(tmp_path: Path) -> None:
    cli = Cli("http://127.0.0.1:1", tmp_path)
    line = cli("keys", "create", "b", "--scope", "admin", "--database-url", "mysql://x").failed(2)
    assert "--database-url" in line


def test_keys_create_through_the_server_ignores_a_local_database(cli: Cli) -> None:
    # MAAS_DATABASE_URL names a database, but without --database-url the server is asked.
    local = cli.home / "local.db"
    env = {"MAAS_DATABASE_URL": f"sqlite:///{local}"}
    created = cli("keys", "create", "remote", "--scope", "infer", "--json", env=env).json()
    assert created["name"] == "remote"
    assert not local.exists()
