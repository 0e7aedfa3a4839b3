"""Helpers for the CLI tests: run the real `maas` command as a process, a real server per
test module, and a version made ready over the admin API (independent of the CLI)."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from support.inprocess_gateway import ADMIN, ADMIN_SECRET
from support.model_files import mlp_meta, tiny_mlp, torchscript_bytes
from support.processes import free_port, maas_server


@dataclass(frozen=True)
class Run:
    args: tuple[str, ...]
    code: int
    out: str
    err: str

    def json(self) -> Any:
        assert self.code == 0, self
        return json.loads(self.out)

    @property
    def err_lines(self) -> list[str]:
        return [line for line in self.err.splitlines() if line.strip()]

    def ok(self) -> Run:
        assert self.code == 0, self
        return self

    def failed(self, code: int) -> str:
        """Exit `code`, nothing on stdout, exactly one `error: ...` line on stderr (returned)."""
        assert self.code == code, self
        assert "Traceback" not in self.err, self
        assert len(self.err_lines) == 1, self
        assert self.err_lines[0].startswith("error: "), self
        assert self.out == "", self
        return self.err_lines[0]

    def failed_json(self, code: int) -> dict[str, Any]:
        """Under `--json`: exit `code`, the one `error: ...` line on stderr, and on stdout one
        error object `{"error": {"code", "message"}}`; its inner object."""
        assert self.code == code, self
        assert "Traceback" not in self.err, self
        assert len(self.err_lines) == 1, self
        assert self.err_lines[0].startswith("error: "), self
        answer = json.loads(self.out)
        assert list(answer) == ["error"], self
        error: dict[str, Any] = answer["error"]
        assert isinstance(error["code"], str), self
        assert isinstance(error["message"], str), self
        assert error["message"], self
        return error


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without any MAAS_* variable of the outer shell, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAAS_")}
    env["COLUMNS"] = "200"
    env.update(extra)
    return env


@dataclass(frozen=True)
class Cli:
    """`maas` against one server (`url`, `key`), run from `home` (an empty directory)."""

    url: str
    home: Path
    key: str | None = ADMIN_SECRET

    def env(self, **extra: str) -> dict[str, str]:
        base = {"MAAS_URL": self.url, "MAAS_DATA_DIR": str(self.home / "no-data")}
        if self.key is not None:
            base["MAAS_API_KEY"] = self.key
        return clean_env(**{**base, **extra})

    def __call__(self, *args: str, env: dict[str, str] | None = None, timeout: float = 120) -> Run:
        done = subprocess.run(
            [sys.executable, "-m", "maas", *args],
            env=self.env(**(env or {})),
            cwd=self.home,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        return Run(tuple(args), done.returncode, done.stdout, done.stderr)

    def with_key(self, key: str | None) -> Cli:
        return Cli(self.url, self.home, key)


@contextlib.contextmanager
def cli_server(root: Path, *args: str, env: dict[str, str] | None = None) -> Iterator[Cli]:
    """A real `maas serve` (one gateway, one worker; `env` on top of its own) and a Cli
    pointed at it."""
    data = root / "server"
    home = root / "home"
    data.mkdir()
    home.mkdir()
    env = {"MAAS_BOOTSTRAP_ADMIN_KEY": ADMIN_SECRET, **(env or {})}
    with maas_server(data, "--workers", "1", "--gateways", "1", *args, env=env) as url:
        yield Cli(url, home)


def unreachable_url() -> str:
    """A URL on which nothing listens."""
    return f"http://127.0.0.1:{free_port()}"


def artifact_files(directory: Path, meta: dict[str, Any] | None = None) -> tuple[Path, Path]:
    """(artifact, meta.json) of the tiny MLP in `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    artifact = directory / "mlp.pt"
    artifact.write_bytes(torchscript_bytes(tiny_mlp()))
    meta_file = directory / "meta.json"
    meta_file.write_text(json.dumps(meta or mlp_meta()))
    return artifact, meta_file


def failing_load_meta() -> dict[str, Any]:
    """Meta that the tiny MLP's archive satisfies on upload but whose load fails: it declares
    7 outputs per instance where the model gives 3."""
    meta = mlp_meta()
    meta["outputs"][0]["shape"] = [7]
    return meta


def admin(url: str, method: str, path: str, **kwargs: Any) -> httpx.Response:
    return httpx.request(method, url + path, headers=ADMIN, timeout=30, **kwargs)


def ready_version(url: str, name: str, seed: int = 0) -> int:
    """Upload a version of `name` over the plain admin API (creating the model if needed) and
    poll until it is ready; its number."""
    created = admin(url, "POST", "/admin/models", json={"name": name})
    assert created.status_code in (201, 409), created.text
    uploaded = admin(
        url,
        "POST",
        f"/admin/models/{name}/versions",
        files={"file": ("model.pt", torchscript_bytes(tiny_mlp(seed)))},
        data={"meta": json.dumps(mlp_meta())},
    )
    assert uploaded.status_code == 201, uploaded.text
    version: int = uploaded.json()["version"]
    wait_status(url, name, version, "ready")
    return version


def wait_status(url: str, name: str, version: int, status: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        body = admin(url, "GET", f"/admin/models/{name}/versions/{version}").json()
        if body["status"] == status:
            return
        assert body["status"] in ("loading", "registered", status), body
        assert time.monotonic() < deadline, body
        time.sleep(0.05)


def set_alias(url: str, name: str, alias: str, routes: list[tuple[int, int]]) -> None:
    body = {"routes": [{"version": v, "weight": w} for v, w in routes]}
    response = admin(url, "PUT", f"/admin/models/{name}/aliases/{alias}", json=body)
    assert response.status_code == 200, response.text


def routes_of(answer: dict[str, Any]) -> dict[int, int]:
    return {r["version"]: r["weight"] for r in answer["routes"]}
