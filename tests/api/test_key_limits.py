"""Keys limited to named models, keys that expire, what a refusal tells (nothing about whether
a key exists) and what it leaves behind (a count, and for a known key an audit event)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from support.inprocess_gateway import ADMIN, Gateway, make_settings, running_gateway
from support.model_files import mlp_meta, tiny_mlp, torchscript_bytes

ROW = {"instances": [[1.0, 2.0, 3.0, 4.0]]}


@pytest.fixture
async def locked(tmp_path: Path) -> AsyncIterator[Gateway]:
    """A gateway that wants keys for inference too, with models `a` and `b` deployed."""
    async with running_gateway(make_settings(tmp_path, require_infer_key=True)) as gw:
        for name in ("a", "b"):
            await gw.deploy(name, torchscript_bytes(tiny_mlp()), mlp_meta())
        yield gw


async def _key(gw: Gateway, **body: Any) -> dict[str, str]:
    made = await gw.client.post("/admin/keys", json={"name": "k", **body}, headers=ADMIN)
    assert made.status_code == 201, made.text
    return {"Authorization": f"Bearer {made.json()['secret']}"}


async def _failures(gw: Gateway) -> dict[str, float]:
    text = (await gw.client.get("/metrics")).text
    (family,) = [f for f in text_string_to_metric_families(text) if f.name == "maas_auth_failures"]
    return {s.labels["reason"]: s.value for s in family.samples if s.name.endswith("_total")}


async def test_an_infer_key_limited_to_a_model_runs_that_model_only(locked: Gateway) -> None:
    key = await _key(locked, scopes=["infer"], models=["a"])
    assert (await locked.predict("/v1/models/a:predict", ROW, **key)).status_code == 200
    other = await locked.predict("/v1/models/b:predict", ROW, **key)
    assert other.status_code == 403
    assert "may not act on model 'b'" in other.json()["error"]["message"]
    ghost = await locked.predict("/v1/models/nothing-here:predict", ROW, **key)
    assert ghost.status_code == 403  # not 404: it learns nothing of which models exist


async def test_an_admin_key_limited_to_a_model_administers_that_model_only(
    locked: Gateway,
) -> None:
    key = await _key(locked, scopes=["admin"], models=["a", "c"])
    client = locked.client
    assert (await client.get("/admin/models/a", headers=key)).status_code == 200
    uploaded = await locked.upload("a", torchscript_bytes(tiny_mlp(seed=3)), mlp_meta(), **key)
    assert uploaded.status_code == 201, uploaded.text
    assert (await client.post("/admin/models", json={"name": "c"}, headers=key)).status_code == 201
    refused = [
        await client.get("/admin/models/b", headers=key),
        await client.post("/admin/models/b/promote", json={"version": 1}, headers=key),
        await client.post("/admin/models", json={"name": "d"}, headers=key),
        await client.post("/admin/keys", json={"name": "x", "scopes": ["admin"]}, headers=key),
    ]
    assert [r.status_code for r in refused] == [403] * 4
    events = (await client.get("/admin/events?action=refused", headers=ADMIN)).json()["events"]
    assert len(events) == 4
    assert {e["key"] for e in events} == {"k"}
    asked = {e["after"]["request"] for e in events}
    assert "POST /admin/models/{name}/promote" in asked
    # The list of models shows it its own, and no other.
    listed = await client.get("/admin/models", headers=key)
    assert listed.status_code == 200
    assert sorted(m["name"] for m in listed.json()["models"]) == ["a", "c"]
    everything = await client.get("/admin/models", headers=ADMIN)
    assert "b" in {m["name"] for m in everything.json()["models"]}
    promoted = await client.get("/admin/models/b/aliases/production", headers=ADMIN)
    assert promoted.json()["routes"] == [{"version": 1, "weight": 100}]  # nothing moved


async def test_an_expired_key_is_refused_like_an_unknown_one(locked: Gateway) -> None:
    soon = datetime.now(UTC) + timedelta(seconds=1)
    key = await _key(locked, scopes=["infer"], expires_at=soon.isoformat())
    listed = (await locked.client.get("/admin/keys", headers=ADMIN)).json()["keys"]
    assert [k["expires_at"] for k in listed if k["name"] == "k"] == [soon.isoformat()]
    assert (await locked.predict("/v1/models/a:predict", ROW, **key)).status_code == 200
    before = await _failures(locked)
    await asyncio.sleep(max(0.0, (soon - datetime.now(UTC)).total_seconds()) + 0.05)
    expired = await locked.predict("/v1/models/a:predict", ROW, **key)
    unknown = await locked.predict("/v1/models/a:predict", ROW, Authorization="Bearer maas_nope")
    assert expired.status_code == unknown.status_code == 401
    assert expired.json() == unknown.json()  # the same words: it was never said it exists
    after = await _failures(locked)
    assert after["expired"] == before["expired"] + 1
    assert after["invalid"] == before["invalid"] + 1


async def test_every_kind_of_refusal_is_counted(locked: Gateway) -> None:
    before = await _failures(locked)
    infer = await _key(locked, scopes=["infer"])
    await locked.predict("/v1/models/a:predict", ROW)
    await locked.predict("/v1/models/a:predict", ROW, Authorization="Basic xyz")
    await locked.client.get("/admin/models", headers=infer)
    after = await _failures(locked)
    assert after["missing"] == before["missing"] + 1
    assert after["malformed"] == before["malformed"] + 1
    assert after["forbidden"] == before["forbidden"] + 1


@pytest.mark.parametrize(
    "body",
    [
        {"scopes": ["infer"], "expires_at": "2001-01-01T00:00:00Z"},  # past
        {"scopes": ["infer"], "expires_at": 4102444800},  # a number, not a time
        {"scopes": ["infer"], "expires_at": "next week"},
        {"scopes": ["infer"], "models": ["Not A Name"]},
        {"scopes": ["infer"], "models": []},
    ],
)
async def test_bad_limits_are_422(locked: Gateway, body: dict[str, Any]) -> None:
    made = await locked.client.post("/admin/keys", json={"name": "k", **body}, headers=ADMIN)
    assert made.status_code == 422, made.text


async def test_the_last_unlimited_admin_key_stays(locked: Gateway) -> None:
    await _key(locked, scopes=["admin"], models=["a"])
    later = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    await _key(locked, scopes=["admin"], expires_at=later)
    keys = (await locked.client.get("/admin/keys", headers=ADMIN)).json()["keys"]
    (bootstrap,) = [k["id"] for k in keys if k["name"] == "bootstrap-admin"]
    refused = await locked.client.delete(f"/admin/keys/{bootstrap}", headers=ADMIN)
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "last_admin_key"
