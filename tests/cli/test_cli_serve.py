"""`maas serve`, `maas worker`, `maas db upgrade`: settings mistakes are one line and exit 2,
unknown MAAS_* variables are warned about, flags override the environment."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from support.cli import Run, clean_env
from support.inprocess_gateway import ADMIN_SECRET
from support.model_files import mlp_meta, tiny_mlp, torchscript_bytes
from support.processes import deploy, maas_server


def _maas(*args: str, cwd: Path, timeout: float = 60, **env: str) -> Run:
    done = subprocess.run(
        [sys.executable, "-m", "maas", *args],
        env=clean_env(MAAS_DATA_DIR=str(cwd / "data"), **env),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return Run(tuple(args), done.returncode, done.stdout, done.stderr)


@pytest.mark.parametrize(
    ("args", "env", "names"),
    [
        (("serve",), {"MAAS_PORT": "abc"}, "MAAS_PORT='abc'"),
        (("serve", "--port", "70000"), {}, "--port=70000"),
        (("serve",), {"MAAS_WORKERS": "-1"}, "MAAS_WORKERS"),
        (("serve",), {"MAAS_BOOTSTRAP_ADMIN_KEY": "short"}, "MAAS_BOOTSTRAP_ADMIN_KEY"),
        (("db", "upgrade"), {"MAAS_DATABASE_URL": "mysql://db/x"}, "MAAS_DATABASE_URL"),
        (("worker", "--listen", "127.0.0.1:1"), {"MAAS_REQUIRE_INFER_KEY": "maybe"}, "MAAS_"),
    ],
)
def test_a_setting_maas_cannot_use_is_one_line_and_exit_2(
    tmp_path: Path, args: tuple[str, ...], env: dict[str, str], names: str
) -> None:
    line = _maas(*args, cwd=tmp_path, **env).failed(2)
    assert names in line


def test_unknown_maas_variables_are_warned_about(tmp_path: Path) -> None:
    run = _maas("serve", cwd=tmp_path, MAAS_PROT="8001", MAAS_WORKRS="2", MAAS_PORT="abc")
    assert run.code == 2
    assert "warning: MAAS_PROT " in run.err
    assert "warning: MAAS_WORKRS " in run.err
    assert "Traceback" not in run.err
    assert len(run.err_lines) == 3  # two warnings, one error
    assert "MAAS_URL" not in run.err  # the CLI's own variables are known


def test_db_upgrade_that_cannot_reach_its_database_is_one_line(tmp_path: Path) -> None:
    url = "postgresql://maas:pw-not-shown@127.0.0.1:1/maas"
    line = _maas("db", "upgrade", cwd=tmp_path, MAAS_DATABASE_URL=url).failed(3)
    assert "pw-not-shown" not in line
    assert "127.0.0.1:1/maas" in line


def test_serve_on_a_busy_port_is_one_line_and_exit_1(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        database = f"sqlite:///{tmp_path}/registry.db"
        args = ("serve", "--port", str(port), "--workers", "1", "--gateways", "1")
        run = _maas(*args, cwd=tmp_path, MAAS_DATABASE_URL=database)
    assert run.code == 1, run
    assert "Traceback" not in run.err, run
    errors = [line for line in run.err_lines if line.startswith("error: ")]
    assert len(errors) == 1, run
    assert str(port) in errors[0]


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
        "--gateways",
        "1",
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
