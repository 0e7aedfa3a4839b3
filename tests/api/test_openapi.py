"""/docs and /redoc work with no network, and /openapi.json tells the truth: the bearer scheme,
maas's own error shape, a documented model for every admin answer (checked against real
answers), the upload's meta field by field, and the health routes."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from pydantic import BaseModel

from maas.api.admin import answers
from support.inprocess_gateway import ADMIN, Gateway
from support.model_files import mlp_meta, onnx_bytes, tiny_mlp, torchscript_bytes

REF = "#/components/schemas/"
ASSET_TYPES = {
    ".js": ("text/javascript", "application/javascript"),
    ".css": ("text/css",),
    ".png": ("image/png",),
}
METHODS = {"get", "put", "post", "delete", "patch"}


async def _schema(gateway: Gateway) -> dict[str, Any]:
    response = await gateway.client.get("/openapi.json")
    assert response.status_code == 200
    schema: dict[str, Any] = response.json()
    return schema


def _operations(schema: dict[str, Any], prefix: str = "") -> list[tuple[str, str, Any]]:
    return [
        (method, path, operation)
        for path, item in schema["paths"].items()
        if path.startswith(prefix)
        for method, operation in item.items()
        if method in METHODS
    ]


def _urls(html: str) -> list[str]:
    return re.findall(r'<(?:script[^>]*\ssrc|link[^>]*\shref)="([^"]+)"', html)


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
async def test_docs_pages_need_nothing_but_maas(gateway: Gateway, page: str) -> None:
    response = await gateway.client.get(page)  # no key
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    html = response.text
    assert "/openapi.json" in html
    urls = _urls(html)
    assert len(urls) >= 2  # the script and the favicon (and Swagger UI's stylesheet)
    # Nothing loaded from another host: no absolute or protocol-relative URL anywhere.
    assert not re.search(r"(?:https?:)?//[a-z0-9.-]+\.[a-z]{2,}", html, re.IGNORECASE), html
    for url in urls:
        assert url.startswith("/docs/assets/"), url
        asset = await gateway.client.get(url)
        assert asset.status_code == 200, url
        kind = asset.headers["content-type"].split(";")[0]
        assert kind in ASSET_TYPES[url[url.rindex(".") :]], (url, kind)
        assert len(asset.content) > 4000, url


async def test_swagger_ui_assets_and_oauth2_redirect(gateway: Gateway) -> None:
    html = (await gateway.client.get("/docs")).text
    assert "/docs/assets/swagger-ui-bundle.js" in _urls(html)
    assert "/docs/assets/swagger-ui.css" in _urls(html)
    assert "validatorUrl" in html  # disabled: it would send the schema URL to swagger.io
    bundle = await gateway.client.get("/docs/assets/swagger-ui-bundle.js")
    assert b"SwaggerUIBundle" in bundle.content
    redirect = await gateway.client.get("/docs/oauth2-redirect")
    assert redirect.status_code == 200
    missing = await gateway.client.get("/docs/assets/nope.js")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "not_found"


async def test_docs_routes_are_not_in_the_schema(gateway: Gateway) -> None:
    schema = await _schema(gateway)
    assert not [p for p in schema["paths"] if p.startswith(("/docs", "/redoc", "/openapi"))]


async def test_bearer_scheme_on_every_admin_operation(gateway: Gateway) -> None:
    schema = await _schema(gateway)
    assert schema["components"]["securitySchemes"]["bearer"]["type"] == "http"
    assert schema["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    admin = _operations(schema, "/admin/")
    assert len(admin) >= 21
    for method, path, operation in admin:
        assert operation["security"] == [{"bearer": []}], (method, path)
        headers = [p for p in operation.get("parameters", []) if p["in"] == "header"]
        assert not headers, (method, path)  # the key goes through the scheme
    inference = [
        (method, path, op)
        for method, path, op in _operations(schema)
        if method == "post" and not path.startswith("/admin/")
    ]
    assert {p for _, p, _ in inference} >= {"/v1/models/{name}:predict", "/v2/models/{name}/infer"}
    for method, path, operation in inference:
        assert operation["security"] == [{}, {"bearer": []}], (method, path)  # optional
        assert "MAAS_REQUIRE_INFER_KEY" in operation["description"]
    for path in ("/healthz", "/readyz", "/metrics"):
        assert "security" not in schema["paths"][path]["get"]


async def test_no_fastapi_validation_error_and_no_contract_mentions(gateway: Gateway) -> None:
    schema = await _schema(gateway)
    text = json.dumps(schema)
    assert "HTTPValidationError" not in text
    assert "ValidationError" not in schema["components"]["schemas"]
    assert "CONTRACT" not in text
    for method, path, operation in _operations(schema):
        for status, response in operation["responses"].items():
            for media in response.get("content", {}).values():
                assert media.get("schema", {}).get("$ref") != REF + "HTTPValidationError", (
                    method,
                    path,
                    status,
                )
    # Path parameters that are any string cannot fail validation: no 422 claimed there.
    assert "422" not in schema["paths"]["/v1/models/{name}"]["get"]["responses"]


async def test_every_admin_answer_and_error_is_documented(gateway: Gateway) -> None:
    schema = await _schema(gateway)
    components = schema["components"]["schemas"]
    error = components["ErrorBody"]
    assert error["properties"]["error"]["$ref"] == REF + "ErrorDetail"
    assert set(components["ErrorDetail"]["required"]) == {"code", "message"}
    for method, path, operation in _operations(schema, "/admin/"):
        responses = operation["responses"]
        ok = [s for s in responses if s in ("200", "201", "202")]
        assert len(ok) == 1, (method, path, list(responses))
        body = responses[ok[0]]["content"]["application/json"]["schema"]
        assert set(body) == {"$ref"}, (method, path, body)
        name = body["$ref"].removeprefix(REF)
        assert components[name]["properties"], (method, path)
        assert hasattr(answers, name), name  # a model of maas.api.admin.answers
        errors = [s for s in responses if s not in ok]
        assert {"401", "403", "503"} <= set(errors), (method, path)
        for status in errors:
            assert 400 <= int(status) < 600, (method, path, status)
            content = responses[status]["content"]["application/json"]["schema"]
            assert content == {"$ref": REF + "ErrorBody"}, (method, path, status)
            assert responses[status]["description"], (method, path, status)
    versions = schema["paths"]["/admin/models/{name}/versions"]["post"]["responses"]
    assert {"400", "404", "413", "422"} <= set(versions)
    unload = schema["paths"]["/admin/models/{name}/versions/{version}/unload"]["post"]
    assert "alias_in_use" in unload["responses"]["409"]["description"]
    listing = schema["paths"]["/admin/models"]["get"]["responses"]
    assert set(listing) == {"200", "401", "403", "503"}  # nothing it cannot answer


async def test_upload_meta_is_described_field_by_field(gateway: Gateway) -> None:
    schema = await _schema(gateway)
    components = schema["components"]["schemas"]
    upload = schema["paths"]["/admin/models/{name}/versions"]["post"]
    form = upload["requestBody"]["content"]["multipart/form-data"]
    assert set(form["schema"]["required"]) == {"file", "meta"}
    assert form["schema"]["properties"]["file"]["format"] == "binary"
    assert form["schema"]["properties"]["meta"] == {"$ref": REF + "VersionMeta"}
    assert form["schema"]["properties"]["labels"]["format"] == "binary"  # optional
    assert form["encoding"]["meta"]["contentType"] == "application/json"
    params = {p["name"] for p in upload["parameters"]}
    assert {"wait", "create_model"} <= params
    meta = components["VersionMeta"]
    assert set(meta["required"]) == {"format", "inputs", "outputs"}
    expected = {
        "VersionMeta": {
            "format",
            "inputs",
            "outputs",
            "batching",
            "device",
            "replicas",
            "metrics",
            "tags",
            "golden",
            "description",
            "load",
            "preprocess",
            "postprocess",
        },
        "PostprocessIn": {"output", "softmax", "labels", "top_k"},
        "TensorSpecIn": {"name", "dtype", "shape", "min", "max", "max_shape"},
        "BatchingIn": {"max_batch_size", "max_delay_ms", "max_queue", "pad_value", "buckets"},
        "GoldenIn": {"inputs", "outputs", "atol"},
    }
    for name, fields in expected.items():
        properties = components[name]["properties"]
        assert set(properties) == fields, name
        for field, definition in properties.items():
            assert definition.get("description"), (name, field)
    assert "-1" in components["TensorSpecIn"]["properties"]["shape"]["description"]
    assert "batch axis" in components["TensorSpecIn"]["properties"]["shape"]["description"]
    assert "cuda" in meta["properties"]["device"]["description"]
    assert "warm" in meta["properties"]["golden"]["description"]
    assert meta["properties"]["format"]["$ref"] == REF + "ArtifactFormat"
    assert set(components["ArtifactFormat"]["enum"]) == {"torchscript", "torch_export", "onnx"}


async def test_health_and_metrics_are_described(gateway: Gateway) -> None:
    schema = await _schema(gateway)
    ready = schema["paths"]["/readyz"]["get"]["responses"]
    assert ready["200"]["content"]["application/json"]["schema"] == {"$ref": REF + "Ready"}
    assert ready["503"]["content"]["application/json"]["schema"] == {"$ref": REF + "NotReady"}
    healthz = schema["paths"]["/healthz"]["get"]["responses"]["200"]
    assert healthz["content"]["application/json"]["schema"] == {"$ref": REF + "Healthy"}
    metrics = schema["paths"]["/metrics"]["get"]["responses"]["200"]
    assert list(metrics["content"]) == ["text/plain"]
    assert "Prometheus" in metrics["description"]
    _fits(answers.Healthy, (await gateway.client.get("/healthz")).json())
    _fits(answers.Alive, (await gateway.client.get("/")).json())
    _fits(answers.Ready, (await gateway.wait_ready()).json())
    not_ready = {"ready": False, "reasons": ["migrations have not run"], "degraded": []}
    _fits(answers.NotReady, not_ready)
    scrape = await gateway.client.get("/metrics")
    assert scrape.headers["content-type"].startswith("text/plain")


def _fits(model: type[BaseModel], answer: Any) -> None:
    """`answer` validates against `model`, and the model describes every key of it: what the
    model reads back out is the answer itself (nothing dropped, renamed or retyped)."""
    parsed = model.model_validate(answer)
    assert parsed.model_dump(mode="json", by_alias=True, exclude_unset=True) == answer


class _Documented:
    def __init__(self, gateway: Gateway, schema: dict[str, Any]) -> None:
        self.gateway = gateway
        self.schema = schema
        self.checked: set[tuple[str, str]] = set()

    async def call(
        self, method: str, path: str, template: str, status: int = 200, **kwargs: Any
    ) -> Any:
        """Call the route; the answer must fit the model its operation documents."""
        response = await self.gateway.client.request(method, path, headers=ADMIN, **kwargs)
        assert response.status_code == status, response.text
        responses = self.schema["paths"][template][method.lower()]["responses"]
        ref = responses[str(status)]["content"]["application/json"]["schema"]["$ref"]
        model = getattr(answers, ref.removeprefix(REF))
        body = response.json()
        _fits(model, body)
        self.checked.add((method.lower(), template))
        return body


async def test_real_answers_fit_the_documented_models(gateway: Gateway) -> None:
    doc = _Documented(gateway, await _schema(gateway))
    m = "/admin/models/{name}"
    v = m + "/versions/{version}"
    a = m + "/aliases/{alias}"
    await doc.call("POST", "/admin/models", "/admin/models", 201, json={"name": "mlp"})
    artifact = torchscript_bytes(tiny_mlp())
    meta = mlp_meta(tags={"team": "a"}, metrics={"accuracy": 0.9}, description="first")
    meta["inputs"][0].update(min=-100, max=100.5)
    uploaded = await doc.call(
        "POST",
        "/admin/models/mlp/versions?wait=true",
        m + "/versions",
        201,
        files={"file": ("model.bin", artifact, "application/octet-stream")},
        data={"meta": json.dumps(meta)},
    )
    assert uploaded["status"] == "ready"
    assert uploaded["created_at"].endswith("+00:00")
    second = await gateway.upload("mlp", torchscript_bytes(tiny_mlp(2)), mlp_meta(load=False))
    assert second.status_code == 201
    _fits(answers.VersionOut, second.json())
    await doc.call("GET", "/admin/models", "/admin/models")
    await doc.call("GET", "/admin/models/mlp", m)
    detail = await doc.call("GET", "/admin/models/mlp/versions/1", v)
    assert detail["stats"]["loaded"] is True
    await doc.call("PATCH", "/admin/models/mlp/versions/2", v, json={"tags": {"x": 1}})
    await doc.call("POST", "/admin/models/mlp/versions/2/load", v + "/load", 202)
    settled = await gateway.wait_settled("mlp", 2)
    assert settled["status"] == "ready"
    await doc.call("PUT", "/admin/models/mlp/aliases/production", a, json={"version": 1})
    split = {"routes": [{"version": 1, "weight": 90}, {"version": 2, "weight": 10}]}
    await doc.call("PUT", "/admin/models/mlp/aliases/canary", a, json=split)
    shadowed = await doc.call(
        "PUT", "/admin/models/mlp/aliases/canary", a, json={"shadow": {"version": 1, "percent": 5}}
    )
    assert shadowed["shadow"] == {"version": 1, "percent": 5}
    await doc.call("GET", "/admin/models/mlp/aliases/canary", a)
    await doc.call("POST", "/admin/models/mlp/promote", m + "/promote", json={"version": 2})
    await doc.call("POST", "/admin/models/mlp/rollback", m + "/rollback", json={})
    await doc.call("GET", "/admin/models/mlp/aliases/production/history", a + "/history")
    await doc.call("GET", "/admin/models/mlp/traffic?minutes=1&step_s=5", m + "/traffic")
    r = m + "/rollouts"
    body = {"candidate": 2, "steps": [10, 100], "interval_s": 3600}
    started = await doc.call("POST", "/admin/models/mlp/rollouts", r, 201, json=body)
    one = f"/admin/models/mlp/rollouts/{started['id']}"
    await doc.call("GET", "/admin/models/mlp/rollouts", r)
    assert (await doc.call("GET", one, r + "/{rollout_id}"))["window"]["requests"] == 0
    for verb in ("pause", "resume", "promote"):
        await doc.call("POST", f"{one}/{verb}", r + "/{rollout_id}/" + verb)
    aborted = await doc.call("POST", f"{one}/abort", r + "/{rollout_id}/abort")
    assert aborted["state"] == "aborted"
    await doc.call("DELETE", "/admin/models/mlp/aliases/canary", a)
    await doc.call("POST", "/admin/models/mlp/versions/2/unload", v + "/unload")
    await doc.call("DELETE", "/admin/models/mlp/versions/2", v)
    await doc.call("GET", "/admin/events?model=mlp", "/admin/events")
    key = await doc.call(
        "POST", "/admin/keys", "/admin/keys", 201, json={"name": "ops", "scopes": ["infer"]}
    )
    await doc.call("GET", "/admin/keys", "/admin/keys")
    await doc.call("DELETE", f"/admin/keys/{key['id']}", "/admin/keys/{key_id}")
    await doc.call("GET", "/admin/workers", "/admin/workers")
    await doc.call("GET", "/admin/gateways", "/admin/gateways")
    parent = await gateway.upload("mlp", onnx_bytes(tiny_mlp()), mlp_meta("onnx", load=False))
    assert parent.status_code == 201, parent.text
    int8 = {"method": "int8_dynamic", "holdout": {"instances": [[1.0, 2.0, 3.0, 4.0]]}}
    path = f"/admin/models/mlp/versions/{parent.json()['version']}/optimize"
    await doc.call("POST", path, v + "/optimize", 201, json=int8)
    documented = {(method, path) for method, path, _ in _operations(doc.schema, "/admin/")}
    assert documented == doc.checked  # every admin operation's answer was checked


async def test_real_errors_fit_the_error_model(gateway: Gateway) -> None:
    anonymous = await gateway.client.get("/admin/models")
    assert anonymous.status_code == 401
    _fits(answers.ErrorBody, anonymous.json())
    for path in ("/admin/models/nope", "/admin/models/nope/versions/x", "/admin/events?limit=0"):
        response = await gateway.client.get(path, headers=ADMIN)
        assert response.status_code in (404, 422), path
        _fits(answers.ErrorBody, response.json())
    v2 = await gateway.client.get("/v2/models/nope")
    assert v2.status_code == 404
    _fits(answers.V2ErrorBody, v2.json())
