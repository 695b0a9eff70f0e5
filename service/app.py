"""The FastAPI application factory."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from service.batch import router as batch_router
from service.demo import install_demo
from service.docs import install_docs
from service.engine import Engine, Loader
from service.errors import install_error_handlers
from service.metrics import Metrics
from service.middleware import RequestContextMiddleware
from service.reload import Reloader, install_sighup, reload_counter, remove_sighup
from service.reload import router as reload_router
from service.routes import router
from service.routes_v2 import router as v2_router
from service.settings import Settings

log = logging.getLogger("service.app")


def create_app(settings: Settings | None = None, loader: Loader | None = None) -> FastAPI:
    """Build the app. `settings` default to the environment (read at startup, in the lifespan);
    `loader` (path, threads) -> detector is injectable for tests."""
    metrics = Metrics()
    reloads = reload_counter(metrics)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        s = settings if settings is not None else Settings()
        logging.getLogger("service.access").disabled = not s.access_log
        engine = Engine(s, metrics, loader)
        metrics.queue_capacity.set(s.max_queue)
        app.state.settings, app.state.engine = s, engine
        loading = asyncio.create_task(engine.load())  # background: live now, ready later
        app.state.reloader = reloader = Reloader(engine, reloads, loading)
        install_sighup(reloader)  # SIGHUP -> reload the model file (main thread only)
        try:
            yield
        finally:
            remove_sighup()
            # uvicorn has stopped accepting and drained in-flight requests by now.
            await asyncio.to_thread(engine.close)
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
    app.include_router(router)
    app.include_router(batch_router)
    app.include_router(v2_router)
    app.include_router(reload_router)
    install_demo(app)  # GET / and /static/
    install_docs(app)  # GET /docs and /docs/assets/
    app.add_middleware(RequestContextMiddleware, metrics=metrics)
    return app
