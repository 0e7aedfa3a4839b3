"""Numbers as clients write them: past int64, non-ASCII digits, booleans or strings where a
number belongs, NaN. Each is a clear 4xx; none reaches the database or answers 500 (the
fuzzer found `{"version": 18446744073709551617}` and a 31-digit version path doing so)."""

from __future__ import annotations

import json

import pytest

from support.inprocess_gateway import ADMIN, Gateway
from support.model_files import mlp_meta, tiny_mlp, torchscript_bytes

HUGE = "9242147007467732312786959597568"
PAST_INT64 = 2**63


@pytest.fixture
async def deployed(gateway: Gateway) -> Gateway:
    await gateway.deploy("mlp", torchscript_bytes(tiny_mlp()), mlp_meta())
    return gateway


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", f"/admin/models/mlp/versions/{HUGE}", None),
        ("GET", f"/admin/models/mlp/versions/{PAST_INT64}", None),
        ("POST", f"/admin/models/mlp/versions/{HUGE}/load", None),
        ("DELETE", f"/admin/keys/{PAST_INT64}", None),
        ("POST", "/admin/models/mlp/promote", {"version": 18446744073709551617}),
        ("POST", "/admin/models/mlp/rollback", {"to_version": PAST_INT64}),
        ("PUT", "/admin/models/mlp/aliases/canary", {"version": PAST_INT64}),
        ("PUT", "/admin/models/mlp/aliases/canary", {"routes": [{"version": 1, "weight": "5"}]}),
        ("PUT", "/admin/models/mlp/aliases/canary", {"version": True}),
        ("POST", "/admin/models/mlp/promote", {"version": "1"}),
        ("PATCH", "/admin/models/mlp/versions/1", {"batching": {"max_delay_ms": False}}),
        ("PATCH", "/admin/models/mlp/versions/1", {"batching": {"max_batch_size": 2.0}}),
        ("GET", "/admin/events?since=0.5", None),
        ("GET", "/admin/events?since=yesterday", None),
    ],
)
async def test_admin_numbers_past_int64_or_of_the_wrong_type_are_422(
    deployed: Gateway, method: str, path: str, body: object
) -> None:
    response = await deployed.client.request(method, path, json=body, headers=ADMIN)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "invalid_request"


async def test_an_iso_time_is_still_taken(deployed: Gateway) -> None:
    response = await deployed.client.get("/admin/events?since=2026-01-01T00:00:00Z", headers=ADMIN)
    assert response.status_code == 200, response.text


@pytest.mark.parametrize(
    "path",
    [
        f"/v1/models/mlp/versions/{HUGE}",
        f"/v1/models/mlp/versions/{HUGE}/metadata",
        f"/v1/models/mlp@{HUGE}",
        f"/v1/models/mlp/versions/{PAST_INT64}",
        "/v1/models/mlp/versions/%C2%B2",  # '²': str.isdigit says yes, int() says no
        "/v1/models/mlp/versions/0",
    ],
)
async def test_native_version_paths_out_of_range_are_400(deployed: Gateway, path: str) -> None:
    response = await deployed.client.get(path)
    assert response.status_code == 400, response.text
    assert "version must be" in response.json()["error"]["message"]


@pytest.mark.parametrize(
    "path",
    [
        f"/v1/models/mlp/versions/{HUGE}:predict",
        f"/v1/models/mlp@{HUGE}:predict",
        "/v1/models/mlp/versions/%C2%B2:predict",
    ],
)
async def test_native_predict_paths_out_of_range_are_400(deployed: Gateway, path: str) -> None:
    response = await deployed.predict(path, {"instances": [[1.0, 2.0, 3.0, 4.0]]})
    assert response.status_code == 400, response.text
    assert "version must be" in response.json()["error"]["message"]


@pytest.mark.parametrize("suffix", ["", "/ready", "/config"])
async def test_v2_version_paths_out_of_range_are_400(deployed: Gateway, suffix: str) -> None:
    response = await deployed.client.get(f"/v2/models/mlp/versions/{HUGE}{suffix}")
    assert response.status_code == 400, response.text
    assert "version must be" in response.json()["error"]


async def test_v2_infer_path_out_of_range_is_400(deployed: Gateway) -> None:
    body = {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]}
    response = await deployed.predict(f"/v2/models/mlp/versions/{HUGE}/infer", body)
    assert response.status_code == 400, response.text
    assert "version must be" in response.json()["error"]


async def test_a_non_ascii_digit_is_an_alias_name_in_v2(deployed: Gateway) -> None:
    response = await deployed.client.get("/v2/models/mlp/versions/%C2%B2/ready")
    assert response.status_code == 404, response.text


async def test_nan_in_upload_meta_is_refused(deployed: Gateway) -> None:
    meta = mlp_meta()
    meta["inputs"][0]["min"] = float("nan")
    text = json.dumps(meta)  # Python writes NaN, which is not JSON
    response = await deployed.upload("mlp", torchscript_bytes(tiny_mlp()), text)
    assert response.status_code in (400, 422), response.text
    listed = await deployed.client.get("/admin/models/mlp", headers=ADMIN)
    assert [v["version"] for v in listed.json()["versions"]] == [1]  # nothing registered


async def test_method_not_allowed_names_every_method_of_the_path(deployed: Gateway) -> None:
    response = await deployed.client.request("OPTIONS", "/admin/models", headers=ADMIN)
    assert response.status_code == 405
    assert {m.strip() for m in response.headers["allow"].split(",")} >= {"GET", "POST"}
    one = await deployed.client.request("PUT", "/admin/keys", headers=ADMIN)
    assert {m.strip() for m in one.headers["allow"].split(",")} >= {"GET", "POST"}


async def test_a_predict_path_allows_post_only(deployed: Gateway) -> None:
    response = await deployed.client.get("/v1/models/mlp:predict")
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"
