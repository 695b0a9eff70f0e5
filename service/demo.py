"""The demo page: `GET /` (service/static/index.html) and its assets under `/static/`.

Static HTML + vanilla JS + CSS, no build step and nothing loaded from outside the service
(the Content-Security-Policy below enforces it), so the page works offline. It calls the
public API only (`GET /models`, `/models/{name}`, `/model`, `POST /detect?model=`), like any
other client.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

STATIC_DIR = Path(__file__).resolve().parent / "static"
STATIC_PREFIX = "/static"
CONTENT_SECURITY_POLICY = "; ".join((
    "default-src 'self'", "img-src 'self' blob: data:", "script-src 'self'", "style-src 'self'",
    "connect-src 'self'", "object-src 'none'", "base-uri 'none'", "frame-ancestors 'none'",
    "form-action 'self'",
))  # fmt: skip

router = APIRouter()


@router.api_route("/", methods=["GET", "HEAD"], include_in_schema=False)
async def demo_page() -> FileResponse:
    return FileResponse(
        STATIC_DIR / "index.html",
        media_type="text/html; charset=utf-8",
        headers={"Content-Security-Policy": CONTENT_SECURITY_POLICY, "Cache-Control": "no-cache"},
    )


def install_demo(app: FastAPI) -> None:
    """Add `GET /` and mount the assets (fails at start-up if service/static/ is missing,
    e.g. a package built without its package data)."""
    app.include_router(router)
    app.mount(STATIC_PREFIX, StaticFiles(directory=STATIC_DIR), name="static")
