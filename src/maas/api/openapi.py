"""What /openapi.json says beyond what FastAPI infers: the bearer scheme, maas's own error shape
and the meta of an upload.

The request path stays untouched: admin and health routes declare the model they answer
(`response_model=`), admin routes their errors with `admin_errors(...)`, inference routes
their answers with `inference_answers(...)` (documentation only: they build their bodies
themselves), and `install` post-processes the schema FastAPI generates, once:

- `securitySchemes.bearer`, required on every `/admin/` operation (Swagger UI's Authorize
  button then sends the key), optional on the inference POSTs (`MAAS_REQUIRE_INFER_KEY`); the
  `authorization` header parameter that `require_admin` reads is dropped from the operations.
- FastAPI's `422 HTTPValidationError` (`{"detail": [...]}`), which maas never sends, is gone:
  where a route's parameters or body can fail validation it becomes maas's error shape (the v2
  routes' own shape under /v2), where they cannot it is dropped.
- The upload's `meta` part refers to the JSON schema of `maas.control.meta.VersionMeta`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel

from maas.api.answers import ErrorBody, V2ErrorBody
from maas.control.meta import VersionMeta

REF = "#/components/schemas/"
BEARER = "bearer"

REGISTRY_UNAVAILABLE = "`registry_unavailable`: the registry database cannot be reached"
# Errors more than one admin route can answer (401, 403 and 503 come with every admin route).
BAD_JSON = "`bad_request`: the body is not valid JSON"
INVALID = "`invalid_request`: a parameter or the body does not validate"
VERSION_NOT_FOUND = "`model_not_found` or `version_not_found`"
_ADMIN_ERRORS = {
    401: "`unauthenticated`: no key, a malformed `Authorization` header, or a key that is "
    "unknown or revoked",
    403: "`forbidden`: the key lacks the `admin` scope",
    503: REGISTRY_UNAVAILABLE,
}
_INFER_KEY = (
    "\n\nNeeds no key unless the gateway runs with `MAAS_REQUIRE_INFER_KEY=true`; then it needs "
    "`Authorization: Bearer <key>` with a key of the `infer` or `admin` scope (401 without one, "
    "403 with a key of neither scope)."
)
_VALIDATION_COMPONENTS = ("HTTPValidationError", "ValidationError")


def admin_errors(errors: Mapping[int, str] | None = None) -> dict[int | str, dict[str, Any]]:
    """The `responses=` of an admin route: the errors it can send (401, 403 and 503 come with
    the admin key check; `errors` adds the route's own, status -> description). Its answer is
    its `response_model=`, described by its `response_description=`."""
    out: dict[int | str, dict[str, Any]] = {}
    for code, text in sorted({**_ADMIN_ERRORS, **(errors or {})}.items()):
        out[code] = {"model": ErrorBody, "description": text}
        if code == 401:
            out[code]["headers"] = {
                "WWW-Authenticate": {"description": "Bearer", "schema": {"type": "string"}}
            }
    return out


def inference_answers(
    model: type[BaseModel],
    description: str,
    *,
    v2: bool = False,
    errors: Mapping[int, str] | None = None,
    not_ready: type[BaseModel] | None = None,
) -> dict[int | str, dict[str, Any]]:
    """The `responses=` of an inference route: its answer, its errors in its protocol's shape
    (status -> description), and with `not_ready` the 503 a status route answers with that
    model's body while the model cannot serve."""
    error = V2ErrorBody if v2 else ErrorBody
    out: dict[int | str, dict[str, Any]] = {200: {"model": model, "description": description}}
    for code, text in sorted((errors or {}).items()):
        out[code] = {"model": error, "description": text}
        if code == 429:
            out[code]["headers"] = {
                "Retry-After": {"description": "seconds to wait", "schema": {"type": "integer"}}
            }
    if not_ready is not None:
        out[503] = {"model": not_ready, "description": "not ready: `ready` is false"}
    return out


def upload_body() -> dict[str, Any]:
    """The multipart body of `POST /admin/models/{name}/versions`."""
    return {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file", "meta"],
                    "properties": {
                        "file": {
                            "type": "string",
                            "format": "binary",
                            "description": "the artifact: a TorchScript archive "
                            "(torch.jit.save) or a torch.export program (torch.export.save)",
                        },
                        "meta": {"$ref": REF + VersionMeta.__name__},
                        "labels": {
                            "type": "string",
                            "format": "binary",
                            "description": "optional: UTF-8 text, one label per line, that "
                            "fills meta.postprocess.labels (at most 1 MiB)",
                        },
                    },
                },
                "encoding": {"meta": {"contentType": "application/json"}},
            }
        },
    }


def install(app: FastAPI) -> None:
    """Serve the refined schema from `app.openapi()` (and so /openapi.json and /docs)."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = refine(generate())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def refine(schema: dict[str, Any]) -> dict[str, Any]:
    """Post-process a schema FastAPI generated (in place; returned too)."""
    components = schema.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    _add_model(schemas, VersionMeta)
    components.setdefault("securitySchemes", {})[BEARER] = {
        "type": "http",
        "scheme": "bearer",
        "description": "An API key: `Authorization: Bearer <secret>`. The admin routes need "
        "the `admin` scope; inference needs a key only with `MAAS_REQUIRE_INFER_KEY=true`.",
    }
    for path, item in schema.get("paths", {}).items():
        for method, operation in item.items():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            if path.startswith("/admin/"):
                operation["security"] = [{BEARER: []}]
                _drop_authorization_header(operation)
            elif method == "post":  # the inference POSTs (maas.api.fastpath.document)
                operation["security"] = [{}, {BEARER: []}]
                operation["description"] = operation.get("description", "") + _INFER_KEY
            _tidy_responses(path, operation, schemas)
    for name in _VALIDATION_COMPONENTS:
        schemas.pop(name, None)
    return schema


def _add_model(schemas: dict[str, Any], model: type[BaseModel]) -> None:
    """`model`'s JSON schema (and those it refers to) as components, unless already there."""
    definition = model.model_json_schema(ref_template=REF + "{model}")
    for name, nested in definition.pop("$defs", {}).items():
        schemas.setdefault(name, nested)
    schemas.setdefault(model.__name__, definition)


def _drop_authorization_header(operation: dict[str, Any]) -> None:
    """The key travels through the security scheme (OpenAPI ignores a header parameter named
    Authorization anyway)."""
    parameters = [
        p
        for p in operation.get("parameters", [])
        if not (p.get("in") == "header" and str(p.get("name", "")).lower() == "authorization")
    ]
    if parameters:
        operation["parameters"] = parameters
    else:
        operation.pop("parameters", None)


def _tidy_responses(path: str, operation: dict[str, Any], schemas: dict[str, Any]) -> None:
    responses: dict[str, Any] = operation["responses"]
    for response in responses.values():
        for media in response.get("content", {}).values():
            body = media.get("schema")
            if isinstance(body, dict) and "$ref" in body:
                # A model declared in `responses=` (an inference route's) merged into the schema
                # FastAPI inferred from a `dict[...]` return annotation: the model is the truth.
                media["schema"] = {"$ref": body["$ref"]}
    invalid = responses.get("422")
    if invalid is None or not _is_fastapi_validation(invalid):
        return
    if not _can_fail_validation(operation):
        del responses["422"]
        return
    v2 = path == "/v2" or path.startswith("/v2/")
    model = V2ErrorBody if v2 else ErrorBody
    _add_model(schemas, model)
    what = "a parameter or the body does not validate"
    responses["422"] = {
        "description": what if v2 else f"`invalid_request`: {what}",
        "content": {"application/json": {"schema": {"$ref": REF + model.__name__}}},
    }


def _is_fastapi_validation(response: dict[str, Any]) -> bool:
    return any(
        media.get("schema", {}).get("$ref") == REF + "HTTPValidationError"
        for media in response.get("content", {}).values()
    )


def _can_fail_validation(operation: dict[str, Any]) -> bool:
    """A body, or a parameter that is not any string (path strings always validate)."""
    if "requestBody" in operation:
        return True
    for parameter in operation.get("parameters", []):
        kind = parameter.get("schema", {})
        if kind.get("type") != "string" or set(kind) - {"type", "title", "description"}:
            return True
    return False
