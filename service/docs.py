"""`GET /docs`: Swagger UI served by the app itself (assets from the `swagger-ui-bundle-v2`
package), so the page works without internet access; `GET /openapi.json` is the spec."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from swagger_ui_bundle import swagger_ui_path

DOCS_PATH = "/docs"
ASSETS_PREFIX = "/docs/assets"


def install_docs(app: FastAPI) -> None:
    """Add `/docs` and its assets; the app must be created with `docs_url=None`."""
    assets = Path(str(swagger_ui_path))
    app.mount(ASSETS_PREFIX, StaticFiles(directory=assets), name="docs-assets")

    @app.get(DOCS_PATH, include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{app.title} - API",
            swagger_js_url=f"{ASSETS_PREFIX}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS_PREFIX}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS_PREFIX}/favicon-32x32.png",
        )
