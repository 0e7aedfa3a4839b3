"""Faults around the artifact store that must lose nothing and leave nothing: a disk that
fills during an upload (507, no file, no version), and what a crash leaves between the steps
of an upload, swept at the next `maas serve` (the sweeper says what it cleaned)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from maas.control.sweeper import MISSING, sweep
from maas.registry import db
from maas.registry.service import Registry
from maas.store.local import LocalStore
from support.inprocess_gateway import ADMIN, make_settings, running_gateway
from support.killable_serve import kill_tree, start_serve, stop_serve, wait_up
from support.model_files import mlp_meta, tiny_mlp, torchscript_bytes
from support.postgres import StoppablePostgres, stoppable_postgres  # noqa: F401
from support.processes import free_port
from support.small_disk import small_disk

MiB = 1024 * 1024


async def test_a_full_disk_during_an_upload_is_507_and_leaves_nothing(tmp_path: Path) -> None:
    with small_disk(tmp_path / "disk") as disk:
        settings = make_settings(tmp_path).model_copy(update={"artifact_dir": disk / "artifacts"})
        async with running_gateway(settings) as gw:
            await gw.deploy("mlp", torchscript_bytes(tiny_mlp()), mlp_meta())
            before = sorted(p for p in disk.rglob("*") if p.is_file())
            answer = await gw.upload("mlp", os.urandom(3 * MiB), mlp_meta())
            assert answer.status_code == 507, answer.text
            assert answer.json()["error"]["code"] == "insufficient_storage"
            assert sorted(p for p in disk.rglob("*") if p.is_file()) == before
            listed = await gw.client.get("/admin/models/mlp", headers=ADMIN)
            assert [v["version"] for v in listed.json()["versions"]] == [1]
            served = await gw.predict("/v1/models/mlp:predict", {"instances": [[1, 2, 3, 4]]})
            assert served.status_code == 200  # the rest keeps serving


async def test_the_sweeper_makes_store_and_registry_agree_and_says_what_it_did(
    tmp_path: Path,
) -> None:
    settings = make_settings(tmp_path)
    async with running_gateway(settings) as gw:
        await gw.deploy("kept", torchscript_bytes(tiny_mlp(seed=1)), mlp_meta())
        await gw.deploy("lost", torchscript_bytes(tiny_mlp(seed=2)), mlp_meta())
    store = LocalStore(settings.artifact_dir)
    database = db.open_database(settings.database_url)
    try:
        registry = Registry(database.reads, writes=database.writes)
        (lost,) = [v for v in await registry.all_versions() if v.key.model == "lost"]
        (kept,) = [v for v in await registry.all_versions() if v.key.model == "kept"]
        store.delete(lost.sha256)  # a file the store lost
        orphan = store.path_for("ab" * 32)  # a file stored, its row never written
        orphan.parent.mkdir(parents=True, exist_ok=True)
        orphan.write_bytes(b"stored, never registered")
        (store.tmp_dir / "upload-deadbeef").write_bytes(b"half an upload")
        young = store.tmp_dir / "upload-young"

        report = await sweep(registry, store, min_age_s=0)
        young.write_bytes(b"an upload in progress now")
        again = await sweep(registry, store, min_age_s=60)

        assert report.temporaries == 1
        assert report.orphans == ["ab" * 32]
        assert report.missing == ["lost@1"]
        assert "swept 1 unfinished upload(s) and 1 artifact(s)" in str(report)
        assert store.digests() == [kept.sha256]
        assert store.temporaries() == [young]  # too young for the second sweep: kept
        assert not again.cleaned
        failed = await registry.get_version(lost.key)
        assert (failed.status.value, failed.load_error) == ("failed", MISSING)
        assert (await registry.get_version(kept.key)).status.value == "ready"
    finally:
        await database.dispose()


@pytest.mark.slow
def test_sigkill_in_the_middle_of_an_upload_then_a_restart_leaves_store_and_registry_agreeing(
    tmp_path: Path,
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    first = start_serve(tmp_path, port, tmp_path / "first.log")
    try:
        wait_up(url, first, tmp_path / "first.log")
        assert httpx.post(url + "/admin/models", json={"name": "m"}, headers=ADMIN).is_success
        sent = threading.Event()

        def body() -> Iterator[bytes]:
            boundary = b"--b\r\n"
            yield boundary + b'Content-Disposition: form-data; name="file"; filename="m"\r\n\r\n'
            for _ in range(8):
                yield os.urandom(256 * 1024)
            sent.set()
            time.sleep(30)  # killed meanwhile: the upload never ends

        def upload() -> None:
            with contextlib.suppress(httpx.HTTPError):
                httpx.post(
                    url + "/admin/models/m/versions",
                    content=body(),
                    headers={**ADMIN, "Content-Type": "multipart/form-data; boundary=b"},
                    timeout=60,
                )

        thread = threading.Thread(target=upload, daemon=True)
        thread.start()
        assert sent.wait(30)
        tmp = tmp_path / "artifacts" / "tmp"
        for _ in range(100):  # until the gateway has written part of it to disk
            if any(p.stat().st_size > 0 for p in tmp.glob("upload-*")):
                break
            time.sleep(0.05)
        assert list(tmp.glob("upload-*")), "the upload never reached the store"
        kill_tree(first)
    finally:
        if first.poll() is None:
            kill_tree(first)
    second = start_serve(tmp_path, port, tmp_path / "second.log")
    try:
        wait_up(url, second, tmp_path / "second.log")
        said = (tmp_path / "second.log").read_text()
        assert "maas: swept 1 unfinished upload(s)" in said, said
        assert list((tmp_path / "artifacts" / "tmp").glob("upload-*")) == []
        versions = httpx.get(url + "/admin/models/m", headers=ADMIN).json()["versions"]
        assert versions == []  # no half-registered version
        made = httpx.post(
            url + "/admin/models/m/versions",
            files={"file": ("m.pt", torchscript_bytes(tiny_mlp()))},
            data={"meta": json.dumps(mlp_meta())},
            headers=ADMIN,
            timeout=60,
        )
        assert made.status_code == 201, made.text  # and the store takes uploads again
    finally:
        stop_serve(second)


@pytest.mark.postgres
async def test_the_database_going_away_mid_upload_leaves_no_half_registered_version(
    tmp_path: Path,
    stoppable_postgres: StoppablePostgres,  # noqa: F811
) -> None:
    pg = stoppable_postgres
    settings = make_settings(tmp_path, database_url=pg.url)
    async with running_gateway(settings) as gw:
        await gw.deploy("mlp", torchscript_bytes(tiny_mlp(seed=1)), mlp_meta())
        artifact = torchscript_bytes(tiny_mlp(seed=2))
        boundary = "cut"

        async def body() -> AsyncIterator[bytes]:
            yield (
                f'--{boundary}\r\nContent-Disposition: form-data; name="meta"\r\n\r\n'
                f"{json.dumps(mlp_meta())}\r\n--{boundary}\r\n"
                'Content-Disposition: form-data; name="file"; filename="m.pt"\r\n\r\n'
            ).encode()
            yield artifact[: len(artifact) // 2]
            await asyncio.to_thread(pg.stop)  # the database goes away mid-upload
            yield artifact[len(artifact) // 2 :] + f"\r\n--{boundary}--\r\n".encode()

        answer = await gw.client.post(
            "/admin/models/mlp/versions",
            content=body(),
            headers={**ADMIN, "Content-Type": f"multipart/form-data; boundary={boundary}"},
        )
        assert answer.status_code == 503, answer.text
        assert answer.json()["error"]["code"] == "registry_unavailable"
        served = await gw.predict("/v1/models/mlp:predict", {"instances": [[1, 2, 3, 4]]})
        assert served.status_code == 200  # inference goes on meanwhile
        await asyncio.to_thread(pg.start)
        listed = await gw.client.get("/admin/models/mlp", headers=ADMIN)
        assert [v["version"] for v in listed.json()["versions"]] == [1]  # nothing half-made
    # The artifact it had stored is swept (it could not ask the database whether it was used).
    store = LocalStore(settings.artifact_dir)
    database = db.open_database(settings.database_url)
    try:
        registry = Registry(database.reads, writes=database.writes)
        report = await sweep(registry, store, min_age_s=0)
        named = {v.sha256 for v in await registry.all_versions()}
        assert set(store.digests()) == named
        assert len(report.orphans) == 1  # kept while the database could not say it was unused
    finally:
        await database.dispose()
