"""A real S3 server for tests: moto in server mode (it speaks the S3 protocol over HTTP), one
per session on a free port, a fresh bucket per test. Without moto's server extras the fixtures
skip with the reason; any other failure to start fails loudly with the server's log."""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from support.processes import Child, free_port, started

HOST = "127.0.0.1"
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "maas-test",
    "AWS_SECRET_ACCESS_KEY": "maas-test-secret",
    "AWS_REGION": "us-east-1",
}


@dataclass(frozen=True)
class S3Server:
    endpoint: str
    process: Child

    def env(self) -> dict[str, str]:
        """The AWS variables a maas process needs to use this server."""
        return {"AWS_ENDPOINT_URL": self.endpoint, **CREDENTIALS}

    def create_bucket(self, name: str | None = None) -> str:
        name = name or f"maas-{uuid.uuid4().hex[:12]}"
        response = httpx.put(f"{self.endpoint}/{name}", timeout=10)
        response.raise_for_status()
        return name

    def objects(self, bucket: str) -> list[str]:
        """Every key in `bucket` (moto answers unsigned requests)."""
        response = httpx.get(f"{self.endpoint}/{bucket}?list-type=2", timeout=10)
        response.raise_for_status()
        text = response.text
        return [part.split("</Key>")[0] for part in text.split("<Key>")[1:]]


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    try:
        import flask  # noqa: F401 - moto's server mode needs its server extras
        import moto.server  # noqa: F401
    except ImportError as exc:
        pytest.skip(f"moto's S3 server is not installed (pip install 'moto[server]'): {exc}")
    port = free_port()
    endpoint = f"http://{HOST}:{port}"

    def up() -> bool:
        try:
            httpx.get(f"{endpoint}/moto-api/", timeout=1)
        except httpx.TransportError:
            return False
        return True

    with started(
        [sys.executable, "-m", "moto.server", "-H", HOST, "-p", str(port)],
        env={**os.environ, "MOTO_ALLOW_NONEXISTENT_REGION": "true"},
        ready=up,
        what="moto's S3 server answering",
        ready_s=30,
        grace_s=10,
    ) as process:
        yield S3Server(endpoint, process)


@pytest.fixture
def s3_bucket(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh bucket, and this process's AWS variables pointing at the server."""
    for name, value in s3_server.env().items():
        monkeypatch.setenv(name, value)
    return s3_server.create_bucket()
