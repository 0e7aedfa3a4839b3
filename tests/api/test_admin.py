"""Admin REST: access control, uploads (good, corrupt, rejected, oversized), aliases, keys."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from support.inprocess_gateway import ADMIN, Gateway, make_settings, running_gateway
from support.model_files import failing_meta, mlp_meta, tiny_mlp, torchscript_bytes

ROW = {"instances": [[1.0, 2.0, 3.0, 4.0]]}


def _files(root: Path) -> list[Path]:
    return sorted(p for p in (root / "artifacts").rglob("*") if p.is_file())


async def test_admin_routes_need_an_admin_key(gateway: Gateway) -> None:
    anonymous = await gateway.client.get("/admin/models")
    assert anonymous.status_code == 401
    assert anonymous.json()["error"]["code"] == "unauthenticated"
    wrong = await gateway.client.get("/admin/models", headers={"Authorization": "Bearer wrong"})
    assert wrong.status_code == 401
    basic = await gateway.client.get("/admin/models", headers={"Authorization": "Basic abc"})
    assert basic.status_code == 401
    created = await gateway.client.post(
        "/admin/keys", json={"name": "reader", "scopes": ["infer"]}, headers=ADMIN
    )
    assert created.status_code == 201
    infer_only = {"Authorization": f"Bearer {created.json()['secret']}"}
    forbidden = await gateway.client.get("/admin/models", headers=infer_only)
    assert forbidden.status_code == 403
    assert forbidden.json()["error"]["code"] == "forbidden"
    upload = await gateway.client.post("/admin/models", json={"name": "x"}, headers=infer_only)
    assert upload.status_code == 403


async def test_revoked_key_stops_working(gateway: Gateway) -> None:
    created = await gateway.client.post(
        "/admin/keys", json={"name": "ops", "scopes": ["admin"]}, headers=ADMIN
    )
    body = created.json()
    assert set(body) >= {"id", "name", "scopes", "secret", "created_at"}
    ops = {"Authorization": f"Bearer {body['secret']}"}
    assert (await gateway.client.get("/admin/models", headers=ops)).status_code == 200
    deleted = await gateway.client.delete(f"/admin/keys/{body['id']}", headers=ADMIN)
    assert deleted.status_code == 200
    assert (await gateway.client.get("/admin/models", headers=ops)).status_code == 401
    again = await gateway.client.delete(f"/admin/keys/{body['id']}", headers=ADMIN)
    assert again.status_code == 404


async def test_keys_are_listed_without_secrets_and_the_last_admin_key_stays(
    gateway: Gateway,
) -> None:
    reader = await gateway.client.post(
        "/admin/keys", json={"name": "reader", "scopes": ["infer"]}, headers=ADMIN
    )
    listed = (await gateway.client.get("/admin/keys", headers=ADMIN)).json()["keys"]
    assert [k["name"] for k in listed] == ["bootstrap-admin", "reader"]
    for key in listed:
        assert set(key) == {
            "id",
            "name",
            "scopes",
            "models",
            "expires_at",
            "created_at",
            "revoked_at",
        }
        assert key["created_at"].endswith("+00:00")
    assert reader.json()["secret"] not in json.dumps(listed)
    bootstrap = listed[0]["id"]
    refused = await gateway.client.delete(f"/admin/keys/{bootstrap}", headers=ADMIN)
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "last_admin_key"
    assert (await gateway.client.get("/admin/models", headers=ADMIN)).status_code == 200
    revoked = await gateway.client.delete(f"/admin/keys/{reader.json()['id']}", headers=ADMIN)
    body = revoked.json()
    assert body["revoked"] is True
    assert body["revoked_at"] is not None
    assert body["propagated"]["missing"] == []
    after = (await gateway.client.get("/admin/keys", headers=ADMIN)).json()["keys"]
    assert after[1]["revoked_at"] == body["revoked_at"]


async def test_create_model_validation_and_conflict(gateway: Gateway) -> None:
    assert (await gateway.create_model("digits", "d")).status_code == 201
    dup = await gateway.create_model("digits")
    assert dup.status_code == 409
    bad = await gateway.client.post("/admin/models", json={"name": "Bad Name"}, headers=ADMIN)
    assert bad.status_code == 422
    assert bad.json()["error"]["code"] == "invalid_request"
    garbage = await gateway.client.post(
        "/admin/models", content=b"{oops", headers={**ADMIN, "Content-Type": "application/json"}
    )
    assert garbage.status_code == 400
    listing = (await gateway.client.get("/admin/models", headers=ADMIN)).json()
    assert [m["name"] for m in listing["models"]] == ["digits"]
    missing = await gateway.client.get("/admin/models/nope", headers=ADMIN)
    assert missing.status_code == 404


async def test_upload_answers_the_version_object(gateway: Gateway) -> None:
    await gateway.create_model("mlp")
    artifact = torchscript_bytes(tiny_mlp())
    response = await gateway.upload("mlp", artifact, mlp_meta(tags={"team": "a"}))
    assert response.status_code == 201
    body = response.json()
    for field in (
        "model",
        "version",
        "status",
        "sha256",
        "size",
        "format",
        "inputs",
        "outputs",
        "batching",
        "device",
        "metrics",
        "tags",
        "load_error",
        "created_at",
    ):
        assert field in body, field
    assert body["status"] == "loading"
    assert body["size"] == len(artifact)
    import hashlib

    assert body["sha256"] == hashlib.sha256(artifact).hexdigest()
    settled = await gateway.wait_settled("mlp", body["version"])
    assert settled["status"] == "ready"
    assert settled["stats"]["loaded"] is True
    assert settled["tags"] == {"team": "a"}


async def test_version_numbers_are_never_reused(gateway: Gateway) -> None:
    await gateway.create_model("mlp")
    artifact = torchscript_bytes(tiny_mlp())
    numbers = []
    for _ in range(3):
        response = await gateway.upload("mlp", artifact, mlp_meta(load=False))
        numbers.append(response.json()["version"])
    archived = await gateway.client.delete("/admin/models/mlp/versions/3", headers=ADMIN)
    assert archived.json()["status"] == "archived"
    nxt = await gateway.upload("mlp", artifact, mlp_meta(load=False))
    assert [*numbers, nxt.json()["version"]] == [1, 2, 3, 4]


async def test_a_failed_load_keeps_its_cause_and_others_keep_serving(gateway: Gateway) -> None:
    await gateway.deploy("mlp", torchscript_bytes(tiny_mlp()), mlp_meta())
    response = await gateway.upload("mlp", torchscript_bytes(tiny_mlp()), failing_meta())
    assert response.status_code == 201
    settled = await gateway.wait_settled("mlp", response.json()["version"])
    assert settled["status"] == "failed"
    assert "output 'y' has shape [3] per instance, signature declares [7]" in settled["load_error"]
    serving = await gateway.predict("/v1/models/mlp:predict", ROW)
    assert serving.status_code == 200
    failed = await gateway.predict(f"/v1/models/mlp@{settled['version']}:predict", ROW)
    assert failed.status_code == 409


async def test_artifact_tampered_on_disk_fails_its_checksum(gateway: Gateway) -> None:
    await gateway.create_model("mlp")
    uploaded = await gateway.upload("mlp", torchscript_bytes(tiny_mlp()), mlp_meta(load=False))
    path = gateway.services.store.path_for(uploaded.json()["sha256"])
    path.chmod(0o644)
    path.write_bytes(path.read_bytes() + b"tamper")
    load = await gateway.client.post("/admin/models/mlp/versions/1/load", headers=ADMIN)
    assert load.status_code == 202
    settled = await gateway.wait_settled("mlp", 1)
    assert settled["status"] == "failed"
    assert "checksum mismatch" in settled["load_error"]


async def test_signature_mismatch_with_model_fails_the_load(gateway: Gateway) -> None:
    meta = mlp_meta()
    meta["outputs"][0]["shape"] = [7]  # the model gives 3
    await gateway.create_model("mlp")
    response = await gateway.upload("mlp", torchscript_bytes(tiny_mlp()), meta)
    settled = await gateway.wait_settled("mlp", response.json()["version"])
    assert settled["status"] == "failed"
    assert "signature declares [7]" in settled["load_error"]


async def test_golden_examples_are_checked_at_load(gateway: Gateway) -> None:
    meta = mlp_meta(golden=[{"inputs": [[1, 2, 3, 4]], "outputs": [[9.0, 9.0, 9.0]]}])
    await gateway.create_model("mlp")
    response = await gateway.upload("mlp", torchscript_bytes(tiny_mlp()), meta)
    settled = await gateway.wait_settled("mlp", response.json()["version"])
    assert settled["status"] == "failed"
    assert "golden example 0" in settled["load_error"]


@pytest.mark.parametrize(
    ("meta", "status"),
    [
        ("{not json", 400),
        (json.dumps({"format": "pickle", "inputs": [], "outputs": []}), 422),
        (json.dumps({**mlp_meta(), "device": "tpu"}), 422),
        (json.dumps({**mlp_meta(), "unknown_field": 1}), 422),
        (
            json.dumps({**mlp_meta(), "inputs": [{"name": "x", "dtype": "complex", "shape": [4]}]}),
            422,
        ),
    ],
)
async def test_rejected_upload_leaves_no_file_and_no_row(
    gateway: Gateway, tmp_path: Path, meta: str, status: int
) -> None:
    await gateway.create_model("mlp")
    response = await gateway.upload("mlp", torchscript_bytes(tiny_mlp()), meta)
    assert response.status_code == status, response.text
    assert _files(tmp_path) == []
    model = (await gateway.client.get("/admin/models/mlp", headers=ADMIN)).json()
    assert model["versions"] == []


async def test_upload_missing_parts_is_400(gateway: Gateway, tmp_path: Path) -> None:
    await gateway.create_model("mlp")
    only_meta = await gateway.client.post(
        "/admin/models/mlp/versions",
        data={"meta": json.dumps(mlp_meta())},
        headers=ADMIN,
        files={"other": ("x", b"1")},
    )
    assert only_meta.status_code == 400
    only_file = await gateway.client.post(
        "/admin/models/mlp/versions", files={"file": ("m", b"abc")}, headers=ADMIN
    )
    assert only_file.status_code == 400
    not_multipart = await gateway.client.post(
        "/admin/models/mlp/versions", json={"meta": {}}, headers=ADMIN
    )
    assert not_multipart.status_code == 400
    assert _files(tmp_path) == []


async def test_upload_to_unknown_model_is_404(gateway: Gateway) -> None:
    response = await gateway.upload("ghost", b"abc", mlp_meta())
    assert response.status_code == 404


async def test_oversized_upload_is_413_and_leaves_nothing(tmp_path: Path) -> None:
    async with running_gateway(make_settings(tmp_path, max_artifact_bytes=4096)) as gw:
        await gw.create_model("mlp")
        response = await gw.upload("mlp", b"\0" * 10_000, mlp_meta())
        assert response.status_code == 413
        assert response.json()["error"]["code"] == "payload_too_large"
        assert _files(tmp_path) == []
        model = (await gw.client.get("/admin/models/mlp", headers=ADMIN)).json()
        assert model["versions"] == []


async def test_interrupted_upload_leaves_nothing(gateway: Gateway, tmp_path: Path) -> None:
    await gateway.create_model("mlp")
    boundary = "XyZ"

    async def body() -> Any:
        yield (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="m"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        yield b"\1" * 100_000
        raise ConnectionResetError("client went away")

    with pytest.raises(ConnectionResetError):
        await gateway.client.post(
            "/admin/models/mlp/versions",
            content=body(),
            headers={**ADMIN, "Content-Type": f"multipart/form-data; boundary={boundary}"},
        )
    assert _files(tmp_path) == []
    model = (await gateway.client.get("/admin/models/mlp", headers=ADMIN)).json()
    assert model["versions"] == []


async def test_same_bytes_twice_share_one_file(gateway: Gateway, tmp_path: Path) -> None:
    await gateway.create_model("mlp")
    artifact = torchscript_bytes(tiny_mlp())
    first = await gateway.upload("mlp", artifact, mlp_meta(load=False))
    second = await gateway.upload("mlp", artifact, mlp_meta(load=False))
    assert first.json()["sha256"] == second.json()["sha256"]
    assert len(_files(tmp_path)) == 1


async def test_patch_version(gateway: Gateway) -> None:
    await gateway.deploy("mlp", torchscript_bytes(tiny_mlp()), mlp_meta())
    response = await gateway.client.patch(
        "/admin/models/mlp/versions/1",
        json={"batching": {"max_batch_size": 4}, "description": "d", "tags": {"k": "v"}},
        headers=ADMIN,
    )
    assert response.status_code == 200
    body = response.json()
    assert body["batching"]["max_batch_size"] == 4
    assert body["batching"]["max_queue"] == 64
    assert (body["description"], body["tags"]) == ("d", {"k": "v"})
    bad = await gateway.client.patch(
        "/admin/models/mlp/versions/1", json={"batching": {"max_batch_size": 0}}, headers=ADMIN
    )
    assert bad.status_code == 422


async def test_unload_and_load_again(gateway: Gateway) -> None:
    await gateway.deploy("mlp", torchscript_bytes(tiny_mlp()), mlp_meta(), alias="staging")
    in_use = await gateway.client.post("/admin/models/mlp/versions/1/unload", headers=ADMIN)
    assert in_use.status_code == 409
    await gateway.deploy("mlp", torchscript_bytes(tiny_mlp(seed=5)), mlp_meta(), alias="staging")
    # Version 1 was also the model's first ready version, so production points at it too.
    await gateway.client.put(
        "/admin/models/mlp/aliases/production", json={"version": 2}, headers=ADMIN
    )
    unloaded = await gateway.client.post("/admin/models/mlp/versions/1/unload", headers=ADMIN)
    assert unloaded.json()["status"] == "unloaded"
    assert (await gateway.predict("/v1/models/mlp@1:predict", ROW)).status_code == 409
    await gateway.client.post("/admin/models/mlp/versions/1/load", headers=ADMIN)
    assert (await gateway.wait_settled("mlp", 1))["status"] == "ready"
    assert (await gateway.predict("/v1/models/mlp@1:predict", ROW)).status_code == 200
