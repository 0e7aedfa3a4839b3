"""`/console`: the operator console, a page served by every gateway from files in maas itself
(`console_assets/`: one HTML page, a stylesheet and a few ES modules: `console.js` the pages
and the poll, `model.js` a model's page, `charts.js` its traffic charts as SVG, `api.js` the
admin calls, `dom.js` the helpers; no framework, no build step, no CDN). Loading it needs no
key; everything it shows or does goes through the admin API with the key the operator enters,
which the page keeps in the tab's session storage (never a URL, a cookie or a log line).

The page may load nothing from anywhere else, and run no inline script (its
Content-Security-Policy says so); it is not part of the OpenAPI schema.
"""

from __future__ import annotations

from importlib.resources import files

from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.staticfiles import StaticFiles

CONSOLE = "/console"
ASSETS = "/console/assets"
HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; "
    "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
    "form-action 'self'",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",
}


def assets_dir() -> str:
    return str(files("maas.api") / "console_assets")


def install(app: FastAPI) -> None:
    """Add the page and its assets to `app`."""
    app.mount(ASSETS, StaticFiles(directory=assets_dir()), name="console-assets")
    page = (files("maas.api") / "console_assets" / "index.html").read_text(encoding="utf-8")

    async def console(request: Request) -> Response:
        return HTMLResponse(page, headers=HEADERS)

    app.add_api_route(CONSOLE, console, methods=["GET"], include_in_schema=False)
