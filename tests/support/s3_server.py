"""A real S3 server for tests: moto in server mode (it speaks the S3 protocol over HTTP), one
per session on a free port, a fresh bucket per test. Without moto's server extras the fixtures
skip with the reason; any other failure to start fails loudly with the server's log."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

HOST = "127.0.0.1"
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "maas-test",
    "AWS_SECRET_ACCESS_KEY": "maas-test-secret",
    "AWS_REGION": "us-east-1",
}


@dataclass(frozen=True)
class S3Server:
    endpoint: str
    process: subprocess.Popen[bytes]

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


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    try:
        import flask  # noqa: F401 - moto's server mode needs its server extras
        import moto.server  # noqa: F401
    except ImportError as exc:
        pytest.skip(f"moto's S3 server is not installed (pip install 'moto[server]'): {exc}")
    port = free_port()
    log = Path(tempfile.mkdtemp(prefix="maas-moto-")) / "moto.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", HOST, "-p", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "MOTO_ALLOW_NONEXISTENT_REGION": "true"},
        )
    endpoint = f"http://{HOST}:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            httpx.get(f"{endpoint}/moto-api/", timeout=1)
            break
        except httpx.TransportError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                pytest.fail(f"moto's S3 server did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.1)
    try:
        yield S3Server(endpoint, process)
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()


@pytest.fixture
def s3_bucket(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh bucket, and this process's AWS variables pointing at the server."""
    for name, value in s3_server.env().items():
        monkeypatch.setenv(name, value)
    return s3_server.create_bucket()
