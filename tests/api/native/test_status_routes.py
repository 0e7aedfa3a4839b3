"""The native status routes, as KServe's v1 protocol and TF Serving answer them."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from maas.config import Settings
from support.fake_gateway import deploy_three_versions, fake_gateway, loads_as_halve
from support.inprocess_gateway import Gateway


@pytest.fixture
async def gateway(settings: Settings) -> AsyncIterator[Gateway]:
    # What the registry and the loads say, not what a model computes: no worker needed.
    async with fake_gateway(settings, on_load=loads_as_halve) as gw:
        yield gw


@pytest.fixture
async def served(gateway: Gateway) -> Gateway:
    await deploy_three_versions(gateway, "mlp")
    await gateway.create_model("empty")
    return gateway


async def test_root_and_the_model_list(served: Gateway) -> None:
    assert (await served.client.get("/")).json() == {"status": "alive"}
    assert (await served.client.get("/v1/models")).json() == {"models": ["empty", "mlp"]}


async def test_a_bare_name_lists_every_version_and_is_ready_by_production(served: Gateway) -> None:
    response = await served.client.get("/v1/models/mlp")
    assert response.status_code == 200
    body = response.json()
    assert (body["name"], body["ready"]) == ("mlp", True)
    ok = {"error_code": "OK", "error_message": ""}
    assert body["model_version_status"][:2] == [
        {"version": "1", "state": "AVAILABLE", "status": ok},
        {"version": "2", "state": "AVAILABLE", "status": ok},
    ]
    failed = body["model_version_status"][2]
    assert (failed["version"], failed["state"]) == ("3", "END")
    assert failed["status"]["error_code"] == "UNKNOWN"
    assert failed["status"]["error_message"]  # the load error, for the operator


@pytest.mark.parametrize(
    ("path", "version"),
    [
        ("/v1/models/mlp@2", "2"),
        ("/v1/models/mlp/versions/2", "2"),
        ("/v1/models/mlp/labels/staging", "2"),
        ("/v1/models/mlp@staging", "2"),
        ("/v1/models/mlp@production", "1"),
    ],
)
async def test_a_version_or_alias_lists_what_it_resolves_to(
    served: Gateway, path: str, version: str
) -> None:
    response = await served.client.get(path)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["ready"] is True
    assert [v["version"] for v in body["model_version_status"]] == [version]


async def test_what_cannot_serve_is_503_and_what_is_unknown_is_404(served: Gateway) -> None:
    failed = await served.client.get("/v1/models/mlp/versions/3")
    assert failed.status_code == 503
    assert failed.json()["ready"] is False
    assert failed.json()["model_version_status"][0]["state"] == "END"
    no_alias = await served.client.get("/v1/models/empty")  # no production alias yet
    assert (no_alias.status_code, no_alias.json()["ready"]) == (503, False)
    for path, code in [
        ("/v1/models/ghost", "model_not_found"),
        ("/v1/models/mlp/versions/9", "version_not_found"),
        ("/v1/models/mlp/labels/nosuch", "alias_not_found"),
        ("/v1/models/ghost/metadata", "model_not_found"),
    ]:
        response = await served.client.get(path)
        assert response.status_code == 404, path
        assert response.json()["error"]["code"] == code
    bad = await served.client.get("/v1/models/mlp/versions/two")
    assert bad.status_code == 400
    wrong_method = await served.client.get("/v1/models/mlp:predict")
    assert wrong_method.status_code == 405


async def test_metadata_names_the_signature_and_the_versions(served: Gateway) -> None:
    meta = (await served.client.get("/v1/models/mlp/metadata")).json()
    assert meta == {
        "name": "mlp",
        "versions": [1],
        "inputs": [{"name": "x", "dtype": "float32", "shape": [4]}],
        "outputs": [{"name": "y", "dtype": "float32", "shape": [3]}],
    }
    assert (await served.client.get("/v1/models/mlp/labels/staging/metadata")).json()[
        "versions"
    ] == [2]
    assert (await served.client.get("/v1/models/mlp/versions/3/metadata")).json()["versions"] == [3]
    empty = await served.client.get("/v1/models/empty/metadata")
    assert empty.status_code == 404
