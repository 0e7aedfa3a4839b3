"""Admin GET answers carry an ETag, and a poller that sends it back gets 304 with no body until
something changed (what the console relies on to poll cheaply and redraw only on change)."""

from __future__ import annotations

from support.inprocess_gateway import ADMIN, Gateway
from support.model_files import IN, mlp_meta, tiny_mlp, torchscript_bytes


async def test_unchanged_answers_are_304_and_a_change_is_a_new_tag(gateway: Gateway) -> None:
    await gateway.deploy("mlp", torchscript_bytes(tiny_mlp(seed=1)), mlp_meta())
    first = await gateway.client.get("/admin/models", headers=ADMIN)
    assert first.status_code == 200
    tag = first.headers["etag"]
    assert tag.startswith('"')
    assert first.headers["cache-control"] == "no-cache"
    for sent in (tag, f"W/{tag}", f'"other", {tag}', "*"):
        again = await gateway.client.get("/admin/models", headers={**ADMIN, "If-None-Match": sent})
        assert again.status_code == 304, sent
        assert again.content == b""
        assert again.headers["etag"] == tag
    stale = await gateway.client.get("/admin/models", headers={**ADMIN, "If-None-Match": '"x"'})
    assert stale.status_code == 200
    assert stale.json() == first.json()
    assert (await gateway.create_model("second")).status_code == 201
    changed = await gateway.client.get("/admin/models", headers={**ADMIN, "If-None-Match": tag})
    assert changed.status_code == 200
    assert changed.headers["etag"] != tag
    assert "second" in {m["name"] for m in changed.json()["models"]}


async def test_refusals_changes_and_inference_carry_no_tag(gateway: Gateway) -> None:
    await gateway.deploy("mlp", torchscript_bytes(tiny_mlp(seed=1)), mlp_meta())
    missing = await gateway.client.get(
        "/admin/models/nope", headers={**ADMIN, "If-None-Match": "*"}
    )
    assert missing.status_code == 404
    assert "etag" not in missing.headers
    unsigned = await gateway.client.get("/admin/models", headers={"If-None-Match": "*"})
    assert unsigned.status_code == 401
    made = await gateway.create_model("third")
    assert made.status_code == 201
    assert "etag" not in made.headers
    answer = await gateway.predict("/v1/models/mlp:predict", {"instances": [[0.5] * IN]})
    assert answer.status_code == 200
    assert "etag" not in answer.headers
