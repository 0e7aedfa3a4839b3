"""The `maas` command line, run as a real process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx

from artifacts import mlp_meta, tiny_mlp, torchscript_bytes
from gateway import ADMIN_SECRET
from server import deploy, maas_server


def _maas(*args: str, env: dict[str, str], check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "maas", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=check,
        timeout=120,
    )


def test_db_upgrade_and_keys_create_work_on_the_database(tmp_path: Path) -> None:
    env = {"MAAS_DATABASE_URL": f"sqlite:///{tmp_path}/registry.db"}
    assert "head" in _maas("db", "upgrade", env=env).stdout
    created = json.loads(_maas("keys", "create", "ci", "--scope", "admin", env=env).stdout)
    assert created["scopes"] == ["admin"]
    assert created["secret"].startswith("maas_")
    bad = _maas("keys", "create", "x", "--scope", "root", env=env, check=False)
    assert bad.returncode != 0
    # The key works against a gateway on the same database.
    with maas_server(tmp_path) as url:
        ok = httpx.get(
            url + "/admin/models", headers={"Authorization": f"Bearer {created['secret']}"}
        )
        assert ok.status_code == 200


def test_models_register_promote_list_rollback(tmp_path: Path) -> None:
    artifact = tmp_path / "mlp.pt"
    artifact.write_bytes(torchscript_bytes(tiny_mlp()))
    meta = tmp_path / "meta.json"
    meta.write_text(json.dumps(mlp_meta()))
    with maas_server(tmp_path, env={"MAAS_BOOTSTRAP_ADMIN_KEY": ADMIN_SECRET}) as url:
        env = {"MAAS_URL": url, "MAAS_API_KEY": ADMIN_SECRET}
        for _ in range(2):
            out = json.loads(
                _maas(
                    "models", "register", "mlp", str(artifact), "--meta", f"@{meta}", env=env
                ).stdout
            )
            assert out["status"] == "loading"
        for version in (1, 2):
            for _ in range(200):
                body = httpx.get(
                    f"{url}/admin/models/mlp/versions/{version}",
                    headers={"Authorization": f"Bearer {ADMIN_SECRET}"},
                ).json()
                if body["status"] == "ready":
                    break
        _maas("models", "promote", "mlp@1", env=env)
        promoted = json.loads(_maas("models", "promote", "mlp@2", env=env).stdout)
        assert promoted["routes"] == [{"version": 2, "weight": 100}]
        listing = _maas("models", "list", env=env).stdout
        assert "production->2(100)" in listing
        rolled = json.loads(_maas("models", "rollback", "mlp", env=env).stdout)
        assert rolled["routes"] == [{"version": 1, "weight": 100}]
        denied = _maas(
            "models", "list", env={"MAAS_URL": url, "MAAS_API_KEY": "wrong"}, check=False
        )
        assert denied.returncode == 1
        assert "401" in denied.stderr


def test_serve_flags_override_the_environment(tmp_path: Path) -> None:
    flag_key = "flag-admin-key-0123456789abcdef"
    with maas_server(
        tmp_path,
        "--database-url",
        f"sqlite:///{tmp_path}/from-flag.db",
        "--bootstrap-admin-key",
        flag_key,
        "--max-body-bytes",
        "2048",
        env={"MAAS_BOOTSTRAP_ADMIN_KEY": ADMIN_SECRET, "MAAS_MAX_BODY_BYTES": "1000000"},
    ) as url:
        assert (tmp_path / "from-flag.db").exists()
        assert not (tmp_path / "registry.db").exists()
        listed = httpx.get(url + "/admin/models", headers={"Authorization": f"Bearer {flag_key}"})
        assert listed.status_code == 200
        env_key = httpx.get(
            url + "/admin/models", headers={"Authorization": f"Bearer {ADMIN_SECRET}"}
        )
        assert env_key.status_code == 401
        admin = {"Authorization": f"Bearer {flag_key}"}
        deploy(url, torchscript_bytes(tiny_mlp()), mlp_meta(), name="x", admin=admin)
        big = httpx.post(url + "/v1/models/x:predict", json={"instances": [[0.0] * 600]})
        assert big.status_code == 413
        assert big.json()["error"]["code"] == "payload_too_large"
