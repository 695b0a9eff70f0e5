"""The FastAPI application factory."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from service.api_keys import ApiKeys
from service.capture import Capture
from service.demo import install_demo
from service.docs import install_docs
from service.engine import Engine, Loader
from service.errors import install_error_handlers
from service.metrics import Metrics
from service.middleware import RequestContextMiddleware
from service.reload import Reloader, install_sighup, remove_sighup
from service.routes import ROUTERS
from service.settings import Settings

log = logging.getLogger("service.app")


def create_app(settings: Settings | None = None, loader: Loader | None = None) -> FastAPI:
    """Build the app. `settings` default to the environment (read at startup, in the lifespan);
    `loader` (path, threads) -> detector is injectable for tests."""
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        s = settings if settings is not None else Settings()
        logging.getLogger("service.access").disabled = not s.access_log
        engine = Engine(s, metrics, loader)
        metrics.queue_capacity.set(s.max_queue)
        app.state.settings, app.state.engine = s, engine
        app.state.api_keys = keys = ApiKeys.from_setting(s.api_keys)  # None: routes are open
        app.state.reloader = reloader = Reloader(engine, keys)
        app.state.capture = capture = Capture(s, metrics)  # off unless DETECTOR_CAPTURE_DIR
        capture.start()
        loading = reloader.start("startup")  # background: live now, ready later
        install_sighup(reloader)  # SIGHUP -> rescan the repository (main thread only)
        try:
            yield
        finally:
            remove_sighup()
            # uvicorn has stopped accepting and drained in-flight requests by now.
            await asyncio.to_thread(engine.close)
            await asyncio.to_thread(capture.stop)  # stores what is still queued
            try:
                await loading
            except Exception:  # Engine.load reports its own failures; this is a bug
                log.exception("model loading task failed")
            log.info("shutdown complete")

    app = FastAPI(
        title="FCOS detector",
        version="1.0",
        summary="Object detection (FCOS) on ONNX Runtime, CPU",
        lifespan=lifespan,
        docs_url=None,  # served by install_docs from local assets (works offline)
        redoc_url=None,  # ReDoc would load its script from a CDN
    )
    app.state.metrics = metrics
    install_error_handlers(app)
    for router in ROUTERS:
        app.include_router(router)
    install_demo(app)  # GET / and /static/
    install_docs(app)  # GET /docs and /docs/assets/
    app.add_middleware(RequestContextMiddleware, metrics=metrics)
    return app
