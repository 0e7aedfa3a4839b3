"""An upload's optional `labels` part (UTF-8 text, one label per line) fills meta's
`postprocess.labels`; a labels part that cannot be the version's labels is refused, and
leaves no version and no file behind."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from support.inprocess_gateway import ADMIN, Gateway
from support.model_files import mlp_meta, tiny_mlp, torchscript_bytes

ARTIFACT = torchscript_bytes(tiny_mlp(seed=1))
POST = {"output": "y", "top_k": 2}


async def _upload(
    gateway: Gateway, meta: dict[str, Any], *labels: bytes, query: str = "?wait=true"
) -> httpx.Response:
    files: list[tuple[str, tuple[str, bytes, str]]] = [
        ("file", ("model.pt", ARTIFACT, "application/octet-stream"))
    ]
    files += [("labels", ("labels.txt", part, "text/plain")) for part in labels]
    return await gateway.client.post(
        f"/admin/models/clf/versions{query}",
        files=files,
        data={"meta": json.dumps(meta)},
        headers=ADMIN,
    )


def _stored_files(gateway: Gateway) -> list[str]:
    root = gateway.services.store.root / "sha256"
    return sorted(p.name for p in root.rglob("*") if p.is_file()) if root.exists() else []


@pytest.mark.parametrize(
    "text",
    [
        b"cat\ndog\nbird\n",
        b"cat\ndog\nbird",
        b"cat\r\ndog\r\nbird\r\n",
        b"\xef\xbb\xbfcat\ndog\nbird",
    ],
    ids=["newline_after_last", "no_newline_after_last", "crlf", "byte_order_mark"],
)
async def test_a_labels_part_fills_the_postprocess_labels(gateway: Gateway, text: bytes) -> None:
    await gateway.create_model("clf")
    uploaded = await _upload(gateway, mlp_meta(postprocess=POST), text)
    assert uploaded.status_code == 201, uploaded.text
    version = uploaded.json()
    assert version["status"] == "ready"
    assert version["postprocess"]["labels"] == ["cat", "dog", "bird"]
    shown = await gateway.client.get("/admin/models/clf/versions/1", headers=ADMIN)
    assert shown.json()["postprocess"]["labels"] == ["cat", "dog", "bird"]
    answer = await gateway.predict("/v1/models/clf@1:classify", {"instances": [[1, 2, 3, 4]]})
    assert answer.status_code == 200, answer.text
    (row,) = answer.json()["result"]
    assert len(row) == 2
    assert {label for label, _ in row} <= {"cat", "dog", "bird"}


async def test_labels_in_utf8_keep_every_character(gateway: Gateway) -> None:
    await gateway.create_model("clf")
    labels = ["chat noir", "🐶 chien", "oiseau: à plumes"]
    uploaded = await _upload(gateway, mlp_meta(postprocess=POST), "\n".join(labels).encode())
    assert uploaded.status_code == 201, uploaded.text
    assert uploaded.json()["postprocess"]["labels"] == labels


@pytest.mark.parametrize(
    ("meta", "parts", "status", "code", "says"),
    [
        (mlp_meta(postprocess=POST), [b"cat\ndog\n"], 422, "invalid_artifact", "has 2 labels"),
        (mlp_meta(postprocess=POST), [b"a\nb\nc\nd\n"], 422, "invalid_artifact", "has 4 labels"),
        (mlp_meta(), [b"cat\ndog\nbird\n"], 400, "bad_request", "needs meta.postprocess"),
        (
            mlp_meta(postprocess={**POST, "labels": ["a", "b", "c"]}),
            [b"cat\ndog\nbird\n"],
            400,
            "bad_request",
            "labels are given twice",
        ),
        (mlp_meta(postprocess=POST), [b"cat\n\xff\xfe\nbird\n"], 400, "bad_request", "not UTF-8"),
        (mlp_meta(postprocess=POST), [b""], 400, "bad_request", "is empty"),
        (mlp_meta(postprocess=POST), [b"\n"], 400, "bad_request", "is empty"),
        (
            mlp_meta(postprocess=POST),
            [b"cat\ndog\nbird\n"] * 2,
            400,
            "bad_request",
            "only one 'labels' part",
        ),
        (
            mlp_meta(postprocess=POST),
            [b"x" * (1024 * 1024) + b"\n"],
            413,
            "payload_too_large",
            "labels part exceeds 1 MiB",
        ),
    ],
    ids=[
        "too_few",
        "too_many",
        "no_postprocess",
        "twice",
        "not_utf8",
        "empty",
        "only_a_newline",
        "two_parts",
        "too_large",
    ],
)
async def test_labels_that_cannot_be_the_versions_are_refused_and_leave_nothing(
    gateway: Gateway, meta: dict[str, Any], parts: list[bytes], status: int, code: str, says: str
) -> None:
    await gateway.create_model("clf")
    refused = await _upload(gateway, meta, *parts)
    assert refused.status_code == status, refused.text
    error = refused.json()["error"]
    assert error["code"] == code
    assert says in error["message"]
    model = await gateway.client.get("/admin/models/clf", headers=ADMIN)
    assert model.json()["versions"] == []
    assert _stored_files(gateway) == []


async def test_an_unknown_part_names_the_labels_part_too(gateway: Gateway) -> None:
    await gateway.create_model("clf")
    refused = await gateway.client.post(
        "/admin/models/clf/versions",
        files={"file": ("m.pt", ARTIFACT), "extra": ("x.txt", b"x")},
        data={"meta": json.dumps(mlp_meta())},
        headers=ADMIN,
    )
    assert refused.status_code == 400
    assert "optionally a 'labels' part" in refused.json()["error"]["message"]
