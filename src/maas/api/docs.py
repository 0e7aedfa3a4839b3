"""`/docs` (Swagger UI) and `/redoc`, served with no network: their scripts, stylesheet and
favicon come from maas itself (`/docs/assets/...`, the static files the `fastapi-offline`
package ships), not from a CDN, so the pages work on a host that cannot reach the internet.

None of these routes is in the OpenAPI schema, and none needs a key.
"""

from __future__ import annotations

from importlib.resources import files

from fastapi import FastAPI
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.staticfiles import StaticFiles

DOCS = "/docs"
REDOC = "/redoc"
ASSETS = "/docs/assets"
OAUTH2_REDIRECT = "/docs/oauth2-redirect"

SWAGGER_JS = "swagger-ui-bundle.js"
SWAGGER_CSS = "swagger-ui.css"
REDOC_JS = "redoc.standalone.js"
FAVICON = "favicon.png"


def assets_dir() -> str:
    return str(files("fastapi_offline") / "static")


def install(app: FastAPI) -> None:
    """Add the pages and their assets to `app` (created with `docs_url=None, redoc_url=None`)."""
    app.mount(ASSETS, StaticFiles(directory=assets_dir()), name="docs-assets")
    openapi_url = app.openapi_url or "/openapi.json"

    async def swagger_ui(request: Request) -> HTMLResponse:
        root = _root(request)
        return get_swagger_ui_html(
            openapi_url=root + openapi_url,
            title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{root}{ASSETS}/{SWAGGER_JS}",
            swagger_css_url=f"{root}{ASSETS}/{SWAGGER_CSS}",
            swagger_favicon_url=f"{root}{ASSETS}/{FAVICON}",
            oauth2_redirect_url=root + OAUTH2_REDIRECT,
            # Swagger UI would otherwise send the schema's URL to validator.swagger.io.
            swagger_ui_parameters={"validatorUrl": None},
        )

    async def oauth2_redirect(request: Request) -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    async def redoc(request: Request) -> HTMLResponse:
        root = _root(request)
        return get_redoc_html(
            openapi_url=root + openapi_url,
            title=f"{app.title} - ReDoc",
            redoc_js_url=f"{root}{ASSETS}/{REDOC_JS}",
            redoc_favicon_url=f"{root}{ASSETS}/{FAVICON}",
            with_google_fonts=False,
        )

    app.add_route(DOCS, swagger_ui, include_in_schema=False)
    app.add_route(OAUTH2_REDIRECT, oauth2_redirect, include_in_schema=False)
    app.add_route(REDOC, redoc, include_in_schema=False)


def _root(request: Request) -> str:
    """The prefix a proxy mounts the app under (ASGI root_path), as FastAPI's own pages use."""
    root: str = request.scope.get("root_path", "")
    return root.rstrip("/")
