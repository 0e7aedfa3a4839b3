"""An alias's shadow through the admin API: the PUT forms (shadow alone, with routes, null,
absent), the answers and listings that show it, and the refusals with their status and code."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from support.inprocess_gateway import ADMIN, Gateway
from support.model_files import mlp_meta, tiny_mlp, torchscript_bytes

ROW = {"instances": [[1.0, 2.0, 3.0, 4.0]]}


async def _two_versions(gateway: Gateway) -> None:
    await gateway.deploy("mlp", torchscript_bytes(tiny_mlp(1)), mlp_meta())
    await gateway.deploy("mlp", torchscript_bytes(tiny_mlp(2)), mlp_meta(), alias=None)


async def _put(gateway: Gateway, alias: str, body: dict[str, Any]) -> httpx.Response:
    return await gateway.client.put(f"/admin/models/mlp/aliases/{alias}", json=body, headers=ADMIN)


async def _get(gateway: Gateway, path: str) -> Any:
    response = await gateway.client.get(path, headers=ADMIN)
    assert response.status_code == 200, response.text
    return response.json()


def _error(response: httpx.Response, status: int, code: str) -> str:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code, error
    message: str = error["message"]
    return message


async def test_shadow_alone_sets_and_removes_it(gateway: Gateway) -> None:
    await _two_versions(gateway)
    before = await _get(gateway, "/admin/models/mlp/aliases/production")
    assert before["shadow"] is None
    response = await _put(gateway, "production", {"shadow": {"version": 2, "percent": 25}})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["shadow"] == {"version": 2, "percent": 25}
    assert body["routes"] == [{"version": 1, "weight": 100}]  # the routes stay
    assert body["generation"] > 0
    assert body["propagated"]["missing"] == []
    assert body["propagated"]["confirmed"] == body["propagated"]["gateways"]
    # Every answer that shows the alias shows its shadow.
    alias = await _get(gateway, "/admin/models/mlp/aliases/production")
    assert alias["shadow"] == {"version": 2, "percent": 25}
    (listed,) = (await _get(gateway, "/admin/models/mlp"))["aliases"]
    assert listed["shadow"] == {"version": 2, "percent": 25}
    (model,) = (await _get(gateway, "/admin/models"))["models"]
    assert model["aliases"][0]["shadow"] == {"version": 2, "percent": 25}
    # The client's answers still come from the primary.
    served = await gateway.predict("/v1/models/mlp:predict", ROW)
    assert served.status_code == 200
    assert served.json()["version"] == 1

    removed = await _put(gateway, "production", {"shadow": None})
    assert removed.status_code == 200, removed.text
    assert removed.json()["shadow"] is None
    assert removed.json()["generation"] > body["generation"]
    events = await _get(gateway, "/admin/events?model=mlp&action=alias.shadow")
    assert [(e["before"], e["after"]) for e in events["events"]] == [
        ({"version": 2, "percent": 25}, None),
        (None, {"version": 2, "percent": 25}),
    ]
    # Not a route change: the alias's history did not grow.
    history = await _get(gateway, "/admin/models/mlp/aliases/production/history")
    assert [h["action"] for h in history["history"]] == ["set"]


async def test_routes_and_shadow_in_one_put(gateway: Gateway) -> None:
    await _two_versions(gateway)
    body = {"routes": [{"version": 1, "weight": 1}], "shadow": {"version": 2, "percent": 100}}
    response = await _put(gateway, "canary", body)
    assert response.status_code == 200, response.text
    assert response.json()["routes"] == [{"version": 1, "weight": 1}]
    assert response.json()["shadow"] == {"version": 2, "percent": 100}
    # Absent: the shadow stays as it is while the routes move.
    moved = await _put(gateway, "canary", {"version": 2})
    assert moved.json()["routes"] == [{"version": 2, "weight": 100}]
    assert moved.json()["shadow"] == {"version": 2, "percent": 100}
    # Null with a target: both change.
    cleared = await _put(gateway, "canary", {"version": 1, "shadow": None})
    assert cleared.json()["routes"] == [{"version": 1, "weight": 100}]
    assert cleared.json()["shadow"] is None


async def test_a_shadow_that_changes_nothing_still_answers_with_a_generation(
    gateway: Gateway,
) -> None:
    await _two_versions(gateway)
    nothing = await _put(gateway, "production", {"shadow": None})
    assert nothing.status_code == 200, nothing.text
    assert nothing.json()["shadow"] is None
    assert "generation" in nothing.json()
    assert "propagated" in nothing.json()
    events = await _get(gateway, "/admin/events?model=mlp&action=alias.shadow")
    assert events["events"] == []


async def test_refused_shadows(gateway: Gateway) -> None:
    await _two_versions(gateway)
    await gateway.upload("mlp", torchscript_bytes(tiny_mlp(3)), mlp_meta(load=False))
    shadow = {"version": 2, "percent": 10}
    message = _error(await _put(gateway, "canary", {"shadow": shadow}), 404, "alias_not_found")
    assert "no alias 'canary'" in message
    missing = await _put(gateway, "production", {"shadow": {"version": 9, "percent": 10}})
    _error(missing, 404, "version_not_found")
    not_ready = await _put(gateway, "production", {"shadow": {"version": 3, "percent": 10}})
    message = _error(not_ready, 409, "version_not_ready")
    assert "may only shadow ready versions" in message
    no_model = await gateway.client.put(
        "/admin/models/nope/aliases/production", json={"shadow": shadow}, headers=ADMIN
    )
    _error(no_model, 404, "model_not_found")
    _error(await _put(gateway, "Bad!", {"shadow": shadow}), 400, "bad_request")
    for bad in (
        {"shadow": {"version": 2, "percent": 0}},
        {"shadow": {"version": 2, "percent": 101}},
        {"shadow": {"version": 2}},
        {"shadow": {"version": 2, "percent": 10, "extra": 1}},
        {"shadow": 5},
        {"shadow": shadow, "expected_current": 1},
        {"shadow": shadow, "force": True},
        {},
    ):
        _error(await _put(gateway, "production", bad), 422, "invalid_request")
    assert (await _get(gateway, "/admin/models/mlp/aliases/production"))["shadow"] is None


@pytest.mark.parametrize(
    ("method", "path"),
    [("POST", "/admin/models/mlp/versions/2/unload"), ("DELETE", "/admin/models/mlp/versions/2")],
)
async def test_a_shadowed_version_is_protected(gateway: Gateway, method: str, path: str) -> None:
    await _two_versions(gateway)
    assert (await _put(gateway, "production", {"shadow": {"version": 2, "percent": 5}})).is_success
    refused = await gateway.client.request(method, path, headers=ADMIN)
    message = _error(refused, 409, "alias_in_use")
    assert "shadow of alias(es) production" in message
    assert '"shadow": null' in message
    assert (await _put(gateway, "production", {"shadow": None})).is_success
    assert (await gateway.client.request(method, path, headers=ADMIN)).is_success


async def test_deleting_an_alias_removes_its_shadow(gateway: Gateway) -> None:
    await _two_versions(gateway)
    body = {"version": 1, "shadow": {"version": 2, "percent": 50}}
    assert (await _put(gateway, "canary", body)).is_success
    deleted = await gateway.client.delete("/admin/models/mlp/aliases/canary", headers=ADMIN)
    assert deleted.status_code == 200, deleted.text
    unloaded = await gateway.client.post("/admin/models/mlp/versions/2/unload", headers=ADMIN)
    assert unloaded.status_code == 200, unloaded.text
