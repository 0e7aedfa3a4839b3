"""`/console` is served by every gateway with no key and no network: the page, its script and
stylesheet from maas itself, under a policy that lets it load nothing from elsewhere."""

from __future__ import annotations

from support.inprocess_gateway import Gateway


async def test_the_console_and_its_assets_need_no_key_and_load_nothing_from_elsewhere(
    gateway: Gateway,
) -> None:
    page = await gateway.client.get("/console")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    policy = page.headers["content-security-policy"]
    assert "default-src 'self'" in policy
    assert "script-src 'self'" in policy
    assert "http" not in page.text  # no CDN, no absolute URL
    for asset, kind in (("console.js", "javascript"), ("console.css", "text/css")):
        answer = await gateway.client.get(f"/console/assets/{asset}")
        assert answer.status_code == 200, asset
        assert kind in answer.headers["content-type"]
        assert "http://" not in answer.text
        assert "https://" not in answer.text
    missing = await gateway.client.get("/console/assets/nope.js")
    assert missing.status_code == 404
    schema = (await gateway.client.get("/openapi.json")).json()
    assert not any(path.startswith("/console") for path in schema["paths"])
