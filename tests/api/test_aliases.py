"""Aliases: set, split, conditional change, promote, rollback, history and the audit log."""

from __future__ import annotations

from collections import Counter

import httpx

from support.inprocess_gateway import ADMIN, Gateway
from support.model_files import mlp_meta, tiny_mlp, torchscript_bytes

ROW = {"instances": [[1.0, 2.0, 3.0, 4.0]]}


async def _two_versions(gateway: Gateway) -> None:
    await gateway.deploy("mlp", torchscript_bytes(tiny_mlp(1)), mlp_meta())
    await gateway.deploy("mlp", torchscript_bytes(tiny_mlp(2)), mlp_meta(), alias=None)


async def _put(gateway: Gateway, alias: str, body: dict[str, object]) -> httpx.Response:
    return await gateway.client.put(f"/admin/models/mlp/aliases/{alias}", json=body, headers=ADMIN)


async def _history(gateway: Gateway, alias: str = "production") -> list[dict[str, object]]:
    response = await gateway.client.get(f"/admin/models/mlp/aliases/{alias}/history", headers=ADMIN)
    history: list[dict[str, object]] = response.json()["history"]
    return history


async def test_alias_answer_and_history(gateway: Gateway) -> None:
    await _two_versions(gateway)
    response = await _put(gateway, "production", {"version": 2})
    body = response.json()
    assert body["model"] == "mlp"
    assert body["alias"] == "production"
    assert body["routes"] == [{"version": 2, "weight": 100}]
    assert body["updated_at"]
    history = await _history(gateway)
    assert [h["action"] for h in history] == ["set", "set"]
    assert history[0]["from"] == [{"version": 1, "weight": 100}]
    assert history[0]["to"] == [{"version": 2, "weight": 100}]
    assert history[1]["from"] is None
    assert history[0]["key"] == "bootstrap-admin"
    served = await gateway.predict("/v1/models/mlp:predict", ROW)
    assert served.json()["version"] == 2


async def test_change_that_moves_nothing_records_nothing(gateway: Gateway) -> None:
    await _two_versions(gateway)
    before = await _history(gateway)
    response = await _put(gateway, "production", {"version": 1})
    assert response.status_code == 200
    assert await _history(gateway) == before


async def test_alias_only_onto_ready_versions(gateway: Gateway) -> None:
    await gateway.deploy("mlp", torchscript_bytes(tiny_mlp(1)), mlp_meta())
    await gateway.upload("mlp", torchscript_bytes(tiny_mlp(2)), mlp_meta(load=False))
    not_ready = await _put(gateway, "production", {"version": 2})
    assert not_ready.status_code == 409
    missing = await _put(gateway, "production", {"version": 9})
    assert missing.status_code == 404
    bad_name = await _put(gateway, "Bad!", {"version": 1})
    assert bad_name.status_code == 400
    both = await _put(gateway, "x", {"version": 1, "routes": [{"version": 1, "weight": 1}]})
    assert both.status_code == 422


async def test_expected_current_guards_concurrent_changes(gateway: Gateway) -> None:
    await _two_versions(gateway)
    stale = await _put(gateway, "production", {"version": 2, "expected_current": 2})
    assert stale.status_code == 409
    assert stale.json()["error"]["code"] == "concurrent_change"
    ok = await _put(gateway, "production", {"version": 2, "expected_current": 1})
    assert ok.status_code == 200


async def test_traffic_split_and_sticky_routing_key(gateway: Gateway) -> None:
    await _two_versions(gateway)
    routes = [{"version": 1, "weight": 50}, {"version": 2, "weight": 50}]
    response = await _put(gateway, "production", {"routes": routes})
    assert response.json()["routes"] == routes
    seen = Counter()
    for _ in range(60):
        seen[(await gateway.predict("/v1/models/mlp:predict", ROW)).json()["version"]] += 1
    assert set(seen) == {1, 2}
    sticky = {
        (
            await gateway.predict("/v1/models/mlp:predict", ROW, **{"X-Routing-Key": "user-7"})
        ).json()["version"]
        for _ in range(20)
    }
    assert len(sticky) == 1


async def test_promote_and_rollback(gateway: Gateway) -> None:
    await _two_versions(gateway)
    promoted = await gateway.client.post(
        "/admin/models/mlp/promote", json={"version": 2, "alias": "production"}, headers=ADMIN
    )
    assert promoted.json()["routes"] == [{"version": 2, "weight": 100}]
    rolled = await gateway.client.post(
        "/admin/models/mlp/rollback", json={"alias": "production"}, headers=ADMIN
    )
    assert rolled.json()["routes"] == [{"version": 1, "weight": 100}]
    actions = [h["action"] for h in await _history(gateway)]
    assert actions == ["rollback", "promote", "set"]
    to_two = await gateway.client.post(
        "/admin/models/mlp/rollback", json={"alias": "production", "to_version": 2}, headers=ADMIN
    )
    assert to_two.json()["routes"] == [{"version": 2, "weight": 100}]
    nothing = await gateway.client.post(
        "/admin/models/mlp/rollback", json={"alias": "canary"}, headers=ADMIN
    )
    assert nothing.status_code == 404


async def test_archive_refused_while_aliased(gateway: Gateway) -> None:
    await _two_versions(gateway)
    refused = await gateway.client.delete("/admin/models/mlp/versions/1", headers=ADMIN)
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "alias_in_use"
    archived = await gateway.client.delete("/admin/models/mlp/versions/2", headers=ADMIN)
    assert archived.json()["status"] == "archived"
    gone = await gateway.predict("/v1/models/mlp@2:predict", ROW)
    assert gone.status_code == 409


async def test_audit_log_records_who_did_what(gateway: Gateway) -> None:
    await _two_versions(gateway)
    await _put(gateway, "production", {"version": 2})
    events = (await gateway.client.get("/admin/events?limit=50", headers=ADMIN)).json()["events"]
    actions = [e["action"] for e in events]
    assert actions[0] == "alias.set"
    assert events[0]["target"] == "mlp/production"
    assert events[0]["before"] == [{"version": 1, "weight": 100}]
    assert events[0]["after"] == [{"version": 2, "weight": 100}]
    assert {"model.create", "version.create"} <= set(actions)
    assert all(e["key"] for e in events)
    limited = (await gateway.client.get("/admin/events?limit=2", headers=ADMIN)).json()
    assert len(limited["events"]) == 2
    assert [e["id"] for e in limited["events"]] == sorted(
        (e["id"] for e in limited["events"]), reverse=True
    )


async def test_rollbacks_walk_back_through_promotions(gateway: Gateway) -> None:
    await _two_versions(gateway)
    await gateway.deploy("mlp", torchscript_bytes(tiny_mlp(3)), mlp_meta(), alias=None)
    for version in (2, 3):
        promoted = await gateway.client.post(
            "/admin/models/mlp/promote", json={"version": version}, headers=ADMIN
        )
        assert promoted.status_code == 200
    targets = []
    for _ in range(2):
        rolled = await gateway.client.post("/admin/models/mlp/rollback", json={}, headers=ADMIN)
        assert rolled.status_code == 200, rolled.text
        targets.append(rolled.json()["routes"][0]["version"])
    assert targets == [2, 1]
    served = await gateway.predict("/v1/models/mlp:predict", ROW)
    assert served.json()["version"] == 1
    empty = await gateway.client.post("/admin/models/mlp/rollback", json={}, headers=ADMIN)
    assert empty.status_code == 409
    assert empty.json()["error"]["code"] == "nothing_to_undo"
    history = await _history(gateway)
    assert [h["action"] for h in history] == ["rollback", "rollback", "promote", "promote", "set"]
    assert history[0]["undoes"] == history[3]["id"]


async def test_alias_delete(gateway: Gateway) -> None:
    await _two_versions(gateway)
    assert (await _put(gateway, "canary", {"version": 2})).status_code == 200
    deleted = await gateway.client.delete("/admin/models/mlp/aliases/canary", headers=ADMIN)
    assert deleted.status_code == 200
    assert deleted.json()["deleted"] is True
    assert (await gateway.predict("/v1/models/mlp@canary:predict", ROW)).status_code == 404
    again = await gateway.client.delete("/admin/models/mlp/aliases/canary", headers=ADMIN)
    assert again.status_code == 404
    production = await gateway.client.delete("/admin/models/mlp/aliases/production", headers=ADMIN)
    assert production.status_code == 409
    assert (await gateway.predict("/v1/models/mlp:predict", ROW)).status_code == 200
    events = await gateway.client.get("/admin/events?action=alias.delete", headers=ADMIN)
    assert [e["target"] for e in events.json()["events"]] == ["mlp/canary"]
