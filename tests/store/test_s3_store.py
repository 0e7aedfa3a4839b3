"""Artifacts in S3-compatible object storage (`MAAS_ARTIFACT_URL`), against a real S3 server
(moto in server mode): the store itself, uploads through a gateway, sealing at rest, the
sweeper, the 503 of a store that cannot be used, and a worker downloading straight from it."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from maas.control.sweeper import MISSING, sweep
from maas.errors import InvalidArtifact, ModelLoadError, StoreUnavailable
from maas.registry import db
from maas.registry.service import Registry
from maas.store import deployment_store, open_store
from maas.store.base import ArtifactWriter, put_bytes
from maas.store.s3 import PART_BYTES, S3Store
from maas.store.sealing import MAGIC, ArtifactKey
from maas.transport import messages as msg
from maas.worker.cache import ArtifactCache
from support.inprocess_gateway import ADMIN, make_settings, running_gateway
from support.model_files import mlp_meta, tiny_mlp, torchscript_bytes
from support.s3_server import S3Server
from support.small_disk import small_disk

ROW = {"instances": [[1.0, 2.0, 3.0, 4.0]]}
KEY = ArtifactKey.generate()


def _object(bucket: str, name: str, tmp_path: Path) -> bytes:
    """The object's bytes as the bucket holds them."""
    digest = name.rsplit("/", 1)[-1]
    prefix = name.rsplit("/sha256/", 1)[0] if "/sha256/" in name else ""
    store = S3Store(f"s3://{bucket}/{prefix}", scratch=tmp_path)
    return store.read_range(digest, 0, 1 << 40)[0]


def test_the_store_keeps_reads_lists_and_deletes_by_sha256(s3_bucket: str, tmp_path: Path) -> None:
    store = open_store(f"s3://{s3_bucket}/team/models", tmp_path, None)
    assert isinstance(store, S3Store)
    store.prepare()
    data = bytes(range(256)) * 4000
    digest, new = put_bytes(store, data)
    assert (digest, new) == (hashlib.sha256(data).hexdigest(), True)
    assert put_bytes(store, data) == (digest, False)  # content-addressed: stored once
    assert store.location(digest) == f"s3://{s3_bucket}/team/models/sha256/{digest[:2]}/{digest}"
    assert store.digests() == [digest]
    assert store.digests(older_than=0) == []  # stored after 1970: too young for the sweeper
    assert store.read_range(digest, 1000, 50) == (data[1000:1050], len(data))
    assert store.temporaries() == []  # the spooled upload left the scratch directory
    store.delete(digest)
    store.delete(digest)  # deleting what is gone is no error
    assert store.digests() == []
    with pytest.raises(InvalidArtifact, match="missing from the store"):
        store.read_range(digest, 0, 10)


def test_a_multipart_upload_is_whole_or_absent(
    s3_server: S3Server, s3_bucket: str, tmp_path: Path
) -> None:
    store = open_store(f"s3://{s3_bucket}", tmp_path, None)
    store.prepare()
    data = bytes(range(256)) * ((2 * PART_BYTES + 12345) // 256)  # three parts
    digest, _ = put_bytes(store, data)
    name = f"sha256/{digest[:2]}/{digest}"
    assert _object(s3_bucket, name, tmp_path) == data
    # A failed upload (the file vanishes under it) leaves no object at all.
    writer = ArtifactWriter(store, max_bytes=10 * PART_BYTES)
    writer.write(b"y" * (2 * PART_BYTES))
    writer.finish()
    writer.tmp_path.unlink()
    with pytest.raises(FileNotFoundError):
        writer.commit()
    assert s3_server.objects(s3_bucket) == [name]


def test_a_missing_bucket_or_an_unreachable_server_is_said_as_such(
    s3_server: S3Server, s3_bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(StoreUnavailable, match="bucket does not exist"):
        open_store("s3://no-such-bucket/x", tmp_path, None).prepare()
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens there
    with pytest.raises(StoreUnavailable, match="cannot reach the artifact store"):
        open_store(f"s3://{s3_bucket}", tmp_path, None).prepare()


async def test_a_gateway_on_s3_serves_what_it_uploads_and_keeps_no_artifact_on_disk(
    s3_server: S3Server, s3_bucket: str, tmp_path: Path
) -> None:
    settings = make_settings(tmp_path, artifact_url=f"s3://{s3_bucket}/maas")
    async with running_gateway(settings) as gw:
        await gw.deploy("mlp", torchscript_bytes(tiny_mlp()), mlp_meta())
        served = await gw.predict("/v1/models/mlp:predict", ROW)
        assert served.status_code == 200, served.text
        waited = await gw.client.post(
            "/admin/models/mlp/versions?wait=true",
            files={"file": ("m.pt", torchscript_bytes(tiny_mlp(seed=3)), "application/x")},
            data={"meta": json.dumps(mlp_meta())},
            headers=ADMIN,
        )
        assert (waited.status_code, waited.json()["status"]) == (201, "ready"), waited.text
        refused = await gw.upload("mlp", b"not a model at all", mlp_meta())
        assert refused.status_code == 422, refused.text
    digests = sorted(
        hashlib.sha256(torchscript_bytes(tiny_mlp(seed=s))).hexdigest() for s in (0, 3)
    )
    assert s3_server.objects(s3_bucket) == [f"maas/sha256/{d[:2]}/{d}" for d in digests]
    on_disk = [p for p in settings.artifact_dir.rglob("*") if p.is_file()]
    assert [p for p in on_disk if "sha256" in p.parts] == []  # only the worker's cache
    assert {p.parent.name for p in on_disk} <= {"cache"}


async def test_artifacts_sealed_in_s3_open_only_with_the_key(
    s3_server: S3Server, s3_bucket: str, tmp_path: Path
) -> None:
    settings = make_settings(tmp_path, artifact_url=f"s3://{s3_bucket}", artifact_key=KEY)
    plain = torchscript_bytes(tiny_mlp())
    async with running_gateway(settings) as gw:
        await gw.deploy("mlp", plain, mlp_meta())
        assert (await gw.predict("/v1/models/mlp:predict", ROW)).status_code == 200
    (name,) = s3_server.objects(s3_bucket)
    stored = _object(s3_bucket, name, tmp_path)
    assert stored.startswith(MAGIC)
    assert plain[-64:] not in stored
    digest = hashlib.sha256(plain).hexdigest()
    store = S3Store(f"s3://{s3_bucket}", scratch=tmp_path, key=ArtifactKey.parse(KEY))
    opened = await ArtifactCache(tmp_path / "c1", ArtifactKey.parse(KEY)).download(digest, store)
    assert opened.read_bytes() == stored  # kept sealed in the cache, checked by its content
    with pytest.raises(ModelLoadError, match="does not open with this MAAS_ARTIFACT_KEY"):
        await ArtifactCache(tmp_path / "c2", ArtifactKey.parse(ArtifactKey.generate())).download(
            digest, store
        )


async def test_a_store_that_goes_away_is_a_503_and_keeps_no_version(
    s3_server: S3Server, s3_bucket: str, tmp_path: Path
) -> None:
    settings = make_settings(tmp_path, artifact_url=f"s3://{s3_bucket}")
    async with running_gateway(settings) as gw:
        async with httpx.AsyncClient() as client:
            gone = await client.delete(f"{s3_server.endpoint}/{s3_bucket}")
        assert gone.status_code == 204, gone.text
        created = await gw.create_model("mlp")
        assert created.status_code == 201
        answer = await gw.upload("mlp", torchscript_bytes(tiny_mlp()), mlp_meta())
        assert answer.status_code == 503, answer.text
        assert answer.json()["error"]["code"] == "store_unavailable"
        assert "bucket does not exist" in answer.json()["error"]["message"]
        listed = await gw.client.get("/admin/models/mlp", headers=ADMIN)
        assert listed.json()["versions"] == []
    assert list((settings.artifact_dir / "tmp").iterdir()) == []


async def test_a_full_scratch_disk_is_507_and_leaves_nothing_in_the_bucket(
    s3_server: S3Server, s3_bucket: str, tmp_path: Path
) -> None:
    with small_disk(tmp_path / "disk") as disk:
        settings = make_settings(tmp_path, artifact_url=f"s3://{s3_bucket}").model_copy(
            update={"artifact_dir": disk / "scratch"}
        )
        async with running_gateway(settings) as gw:
            await gw.deploy("mlp", torchscript_bytes(tiny_mlp()), mlp_meta())
            before = s3_server.objects(s3_bucket)
            answer = await gw.upload("mlp", os.urandom(3 * 1024 * 1024), mlp_meta())
            assert answer.status_code == 507, answer.text
            assert answer.json()["error"]["code"] == "insufficient_storage"
            assert list((disk / "scratch" / "tmp").iterdir()) == []
            listed = await gw.client.get("/admin/models/mlp", headers=ADMIN)
            assert [v["version"] for v in listed.json()["versions"]] == [1]
        assert s3_server.objects(s3_bucket) == before


async def test_the_sweeper_works_on_s3(s3_bucket: str, tmp_path: Path) -> None:
    settings = make_settings(tmp_path, artifact_url=f"s3://{s3_bucket}/p")
    async with running_gateway(settings) as gw:
        await gw.deploy("kept", torchscript_bytes(tiny_mlp(seed=1)), mlp_meta())
        await gw.deploy("lost", torchscript_bytes(tiny_mlp(seed=2)), mlp_meta())
    store = deployment_store(settings)
    database = db.open_database(settings.database_url)
    try:
        registry = Registry(database.reads, writes=database.writes)
        versions = {v.key.model: v for v in await registry.all_versions()}
        store.delete(versions["lost"].sha256)  # an object the bucket lost
        orphan, _ = put_bytes(store, b"stored, never registered")
        (store.tmp_dir / "upload-deadbeef").write_bytes(b"half an upload")

        young = await sweep(registry, store, min_age_s=3600)
        report = await sweep(registry, store, min_age_s=0)

        assert (young.temporaries, young.orphans) == (0, [])  # too young: kept
        assert (report.temporaries, report.orphans) == (1, [orphan])
        assert (young.missing, report.missing) == (["lost@1"], [])
        assert store.digests() == [versions["kept"].sha256]
        failed = await registry.get_version(versions["lost"].key)
        assert (failed.status.value, failed.load_error) == ("failed", MISSING)
    finally:
        await database.dispose()


async def test_a_worker_downloads_from_s3_and_asks_the_gateway_when_it_cannot(
    s3_server: S3Server, s3_bucket: str, tmp_path: Path
) -> None:
    store = S3Store(f"s3://{s3_bucket}", scratch=tmp_path)
    store.prepare()
    data = b"artifact bytes " * 100_000
    digest, _ = await asyncio.to_thread(put_bytes, store, data)
    asked: list[int] = []

    async def ask(offset: int, length: int) -> tuple[msg.Chunk, bytes]:
        asked.append(offset)
        piece, total = await asyncio.to_thread(store.read_range, digest, offset, length)
        return msg.Chunk(0, total), piece

    direct = await ArtifactCache(tmp_path / "direct", store=store).obtain(digest, ask)
    assert (direct.read_bytes(), asked) == (data, [])
    again = await ArtifactCache(tmp_path / "direct", store=store).obtain(digest, ask)
    assert (again, asked) == (direct, [])  # the cache is kept
    # A worker whose store cannot be used (no such bucket here) falls back to its gateway.
    stranger = S3Store("s3://no-such-bucket", scratch=tmp_path)
    fetched = await ArtifactCache(tmp_path / "fallback", store=stranger).obtain(digest, ask)
    assert (fetched.read_bytes(), asked) == (data, [0])


def test_maas_serve_says_in_one_line_when_its_bucket_cannot_be_used(
    s3_server: S3Server, tmp_path: Path
) -> None:
    env = {
        **os.environ,
        **s3_server.env(),
        "MAAS_ARTIFACT_URL": "s3://no-such-bucket/models",
        "MAAS_DATA_DIR": str(tmp_path),
        "MAAS_DATABASE_URL": f"sqlite:///{tmp_path}/registry.db",
        "MAAS_ARTIFACT_DIR": str(tmp_path / "scratch"),
    }
    done = subprocess.run(
        [sys.executable, "-m", "maas", "serve", "--workers", "0", "--gateways", "1", "--port", "0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 3, done.stderr
    assert "Traceback" not in done.stderr
    assert "MAAS_ARTIFACT_URL: cannot reach the artifact store: its bucket does not exist" in (
        done.stderr
    )
