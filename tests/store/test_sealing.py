"""Artifacts sealed at rest (AES-256-GCM, MAAS_ARTIFACT_KEY): what goes in comes out, and a
wrong key or any change to the file is refused with what went wrong."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import pytest

from maas.config import Settings
from maas.errors import InvalidArtifact
from maas.store.sealing import CHUNK, MAGIC, ArtifactKey, is_sealed, read_plain
from support.inprocess_gateway import make_settings, running_gateway
from support.model_files import mlp_meta, tiny_mlp, torchscript_bytes

KEY = ArtifactKey.generate()
ROW = {"instances": [[1.0, 2.0, 3.0, 4.0]]}


def _sealed(tmp_path: Path, data: bytes, key: str = KEY) -> Path:
    path = tmp_path / "sealed"
    with path.open("wb") as out:
        ArtifactKey.parse(key).seal(io.BytesIO(data), out)
    return path


@pytest.mark.parametrize("size", [1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK + 5])
def test_what_is_sealed_opens_as_it_was(tmp_path: Path, size: int) -> None:
    data = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
    path = _sealed(tmp_path, data)
    assert is_sealed(path)
    if len(data) >= 16:  # a byte or two turn up in any ~40 random bytes (1 in 8 for one)
        assert data[:64] not in path.read_bytes()
    handle, digest = read_plain(path, ArtifactKey.parse(KEY))
    assert handle.read() == data
    assert digest == hashlib.sha256(data).hexdigest()


def test_a_plain_file_is_read_as_it_is(tmp_path: Path) -> None:
    path = tmp_path / "plain"
    path.write_bytes(b"plain bytes")
    handle, digest = read_plain(path, None)
    with handle:
        assert handle.read() == b"plain bytes"
    assert digest == hashlib.sha256(b"plain bytes").hexdigest()


def _flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 1]) + data[at + 1 :]


@pytest.mark.parametrize(
    "change",
    [
        lambda b: _flip(b, len(MAGIC) + 20),  # a ciphertext byte
        lambda b: _flip(b, len(b) - 1),  # the last tag
        lambda b: _flip(b, len(MAGIC) + 1),  # the nonce prefix
        lambda b: b[: len(b) - 100],  # truncated inside the last chunk
        lambda b: b[: len(MAGIC) + 8 + CHUNK + 16],  # cut at a chunk boundary: not the last
        lambda b: b + b"\\0" * 40,  # extended
    ],
)
def test_any_change_to_a_sealed_file_is_refused(tmp_path: Path, change: object) -> None:
    path = _sealed(tmp_path, b"m" * (2 * CHUNK + 10))
    path.write_bytes(change(path.read_bytes()))  # type: ignore[operator]
    with pytest.raises(InvalidArtifact, match=r"does not open|truncated"):
        read_plain(path, ArtifactKey.parse(KEY))


def test_a_wrong_or_missing_key_is_refused(tmp_path: Path) -> None:
    path = _sealed(tmp_path, b"model bytes")
    with pytest.raises(InvalidArtifact, match="does not open with this MAAS_ARTIFACT_KEY"):
        read_plain(path, ArtifactKey.parse(ArtifactKey.generate()))
    with pytest.raises(InvalidArtifact, match="no MAAS_ARTIFACT_KEY"):
        read_plain(path, None)


@pytest.mark.parametrize("text", ["short", "zz" * 32, "0" * 63])
def test_a_malformed_key_stops_the_start_saying_what_it_must_be(text: str) -> None:
    with pytest.raises(ValueError, match="64 hex digits or 32 bytes in base64"):
        Settings(artifact_key=text)  # type: ignore[arg-type]


async def test_a_gateway_with_a_key_stores_sealed_and_serves(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, artifact_key=KEY)
    artifact = torchscript_bytes(tiny_mlp())
    async with running_gateway(settings) as gw:
        await gw.deploy("mlp", artifact, mlp_meta())
        assert (await gw.predict("/v1/models/mlp:predict", ROW)).status_code == 200
    stored = [p for p in (tmp_path / "artifacts").rglob("*") if p.is_file()]
    assert len(stored) == 1
    assert stored[0].name == hashlib.sha256(artifact).hexdigest()  # named by the plain bytes
    assert is_sealed(stored[0])
    assert artifact[:200] not in stored[0].read_bytes()
    # Started again with another key: the old artifact does not load (the log says why),
    # a new upload under the new key serves.
    other = make_settings(tmp_path, artifact_key=ArtifactKey.generate())
    async with running_gateway(other) as gw:
        answer = await gw.predict("/v1/models/mlp:predict", ROW)
        assert answer.status_code == 503, answer.text
        await gw.deploy("fresh", torchscript_bytes(tiny_mlp(seed=5)), mlp_meta())
        assert (await gw.predict("/v1/models/fresh:predict", ROW)).status_code == 200


@pytest.mark.slow
def test_maas_serve_with_a_key_seals_uploads_and_its_workers_open_them(tmp_path: Path) -> None:
    import httpx

    from support.processes import maas_server

    secret = "sealing-admin-0123456789abcdef"
    admin = {"Authorization": f"Bearer {secret}"}
    env = {"MAAS_ARTIFACT_KEY": KEY, "MAAS_BOOTSTRAP_ADMIN_KEY": secret}
    artifact = torchscript_bytes(tiny_mlp(seed=9))
    with maas_server(tmp_path, "--workers", "1", "--gateways", "2", env=env) as url:
        made = httpx.post(
            f"{url}/admin/models/sealed/versions?wait=true&create_model=true",
            files={"file": ("m.pt", artifact)},
            data={"meta": json.dumps(mlp_meta())},
            headers=admin,
            timeout=60,
        )
        assert made.status_code == 201, made.text
        assert made.json()["status"] == "ready"
        promoted = httpx.post(
            f"{url}/admin/models/sealed/promote", json={"version": 1}, headers=admin
        )
        assert promoted.status_code == 200, promoted.text
        answer = httpx.post(f"{url}/v1/models/sealed:predict", json=ROW, timeout=10)
        assert answer.status_code == 200, answer.text
    (stored,) = [p for p in (tmp_path / "artifacts").rglob("*") if p.is_file()]
    assert is_sealed(stored)
    assert artifact[:200] not in stored.read_bytes()
