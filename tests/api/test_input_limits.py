"""Limits on what one request may hold, each a setting or a version's own, each a clear 4xx
that says which limit and what to do: never a 429 that retrying cannot cure, never a 500."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from support.inprocess_gateway import ADMIN, Gateway, make_settings, running_gateway
from support.model_files import mlp_meta, tiny_mlp, torchscript_bytes

ROW = [1.0, 2.0, 3.0, 4.0]


@pytest.fixture
async def small(tmp_path: Path) -> AsyncIterator[Gateway]:
    async with running_gateway(make_settings(tmp_path, max_instances=5)) as gw:
        await gw.deploy("mlp", torchscript_bytes(tiny_mlp()), mlp_meta())  # max_queue 64
        yield gw


async def test_more_instances_than_the_setting_is_413(small: Gateway) -> None:
    assert (await small.predict("/v1/models/mlp:predict", {"instances": [ROW] * 5})).is_success
    native = await small.predict("/v1/models/mlp:predict", {"instances": [ROW] * 6})
    assert native.status_code == 413
    assert "MAAS_MAX_INSTANCES" in native.json()["error"]["message"]
    body = {"inputs": [{"name": "x", "shape": [6, 4], "datatype": "FP32", "data": ROW * 6}]}
    v2 = await small.predict("/v2/models/mlp/infer", body)
    assert v2.status_code == 413
    assert "MAAS_MAX_INSTANCES" in v2.json()["error"]


async def test_more_instances_than_the_queue_holds_is_not_a_429(tmp_path: Path) -> None:
    async with running_gateway(make_settings(tmp_path)) as gw:
        await gw.deploy("mlp", torchscript_bytes(tiny_mlp()), mlp_meta())
        answer = await gw.predict("/v1/models/mlp:predict", {"instances": [ROW] * 65})
        assert answer.status_code == 422  # a retry would never fit: it says so
        assert "max_queue" in answer.json()["error"]["message"]
        assert (await gw.predict("/v1/models/mlp:predict", {"instances": [ROW] * 64})).is_success


def _parts(*extra: tuple[str, tuple[str, bytes]]) -> list[tuple[str, tuple[str, bytes]]]:
    return [
        ("file", ("model.pt", torchscript_bytes(tiny_mlp()))),
        ("meta", ("meta.json", json.dumps(mlp_meta()).encode())),
        *extra,
    ]


@pytest.mark.parametrize(
    ("files", "said"),
    [
        (_parts(("extra", ("x", b"1"))), "unexpected part 'extra'"),
        (_parts(("meta", ("m.json", json.dumps(mlp_meta()).encode()))), "only one 'meta'"),
        (_parts(("file", ("m2.pt", b"zip"))), "only one 'file'"),
        (_parts()[:1], "no 'meta' part"),
        (_parts()[1:], "no 'file' part"),
    ],
)
async def test_multipart_with_missing_extra_or_twice_given_parts_is_400(
    small: Gateway, files: list[tuple[str, tuple[str, bytes]]], said: str
) -> None:
    answer = await small.client.post("/admin/models/mlp/versions", files=files, headers=ADMIN)
    assert answer.status_code == 400, answer.text
    assert said in answer.json()["error"]["message"]
    listed = await small.client.get("/admin/models/mlp", headers=ADMIN)
    assert [v["version"] for v in listed.json()["versions"]] == [1]  # nothing registered
    store = small.services.settings.artifact_dir
    assert not [p for p in store.rglob("*") if p.is_file() and ".tmp" in p.name]


async def test_a_client_file_name_never_reaches_a_path(small: Gateway, tmp_path: Path) -> None:
    files = [
        ("file", ("../../../../escaped.pt", torchscript_bytes(tiny_mlp(seed=4)))),
        ("meta", ("/etc/meta.json", json.dumps(mlp_meta()).encode())),
    ]
    answer = await small.client.post("/admin/models/mlp/versions", files=files, headers=ADMIN)
    assert answer.status_code == 201, answer.text
    digest = answer.json()["sha256"]
    assert not list(tmp_path.parent.rglob("escaped.pt"))
    stored = [p.name for p in small.services.settings.artifact_dir.rglob("*") if p.is_file()]
    assert digest in stored
    assert all(len(name) == 64 for name in stored)  # files are named by their sha256 only


@pytest.mark.parametrize(("limit", "status"), [(3, 413), (4, 200)])
async def test_an_instance_with_more_numbers_than_the_setting_is_413(
    tmp_path: Path, limit: int, status: int
) -> None:
    async with running_gateway(make_settings(tmp_path, max_instance_elements=limit)) as gw:
        await gw.deploy("mlp", torchscript_bytes(tiny_mlp()), mlp_meta())  # 4 numbers each
        native = await gw.predict("/v1/models/mlp:predict", {"instances": [ROW] * 2})
        body = {"inputs": [{"name": "x", "shape": [2, 4], "datatype": "FP32", "data": ROW * 2}]}
        v2 = await gw.predict("/v2/models/mlp/infer", body)
        assert (native.status_code, v2.status_code) == (status, status), native.text
        if status == 413:
            assert "MAAS_MAX_INSTANCE_ELEMENTS" in native.json()["error"]["message"]
            assert "MAAS_MAX_INSTANCE_ELEMENTS" in v2.json()["error"]


def _nested(levels: int) -> object:
    value: object = 1
    for _ in range(levels):
        value = [value]
    return value


@pytest.mark.parametrize("levels", [30, 31, 300, 900])
async def test_meta_nested_past_the_json_depth_is_400_and_never_stored(
    small: Gateway, levels: int
) -> None:
    # meta → tags → "a" → the list: `levels` below tags' value, 2 + levels in all.
    meta = {**mlp_meta(), "tags": {"a": _nested(levels)}}
    files = [
        ("file", ("model.pt", torchscript_bytes(tiny_mlp(seed=5)))),
        ("meta", ("meta.json", json.dumps(meta).encode())),
    ]
    answer = await small.client.post("/admin/models/mlp/versions", files=files, headers=ADMIN)
    listed = await small.client.get("/admin/models/mlp", headers=ADMIN)
    assert listed.status_code == 200, listed.text  # whatever was kept can be shown
    if 2 + levels <= 32:  # MAAS_MAX_JSON_DEPTH's default
        assert answer.status_code == 201, answer.text
        return
    assert answer.status_code == 400, answer.text
    assert "MAAS_MAX_JSON_DEPTH" in answer.json()["error"]["message"]
    assert len(listed.json()["versions"]) == 1  # only the fixture's


@pytest.mark.parametrize("levels", [32, 33, 300, 900])
async def test_tags_nested_past_the_json_depth_are_400_and_the_version_still_shows(
    small: Gateway, levels: int
) -> None:
    body = {"tags": {"a": _nested(levels - 2)}}  # the body, tags, "a": `levels` in all
    answer = await small.client.patch("/admin/models/mlp/versions/1", json=body, headers=ADMIN)
    shown = await small.client.get("/admin/models/mlp/versions/1", headers=ADMIN)
    assert shown.status_code == 200, shown.text
    if levels <= 32:
        assert answer.status_code == 200, answer.text
        assert shown.json()["tags"] == body["tags"]
        return
    assert answer.status_code == 400, answer.text
    assert "MAAS_MAX_JSON_DEPTH" in answer.json()["error"]["message"]
    assert shown.json()["tags"] != body["tags"]
