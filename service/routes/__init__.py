"""The HTTP routes, one module per family, siblings that share only `common` (model lookup,
API key, options, metrics) and service.intake (the body path)."""

from __future__ import annotations

from fastapi import APIRouter

from service.routes import admin, batch, deepstack, detect, health, models, v2

ROUTERS: tuple[APIRouter, ...] = (
    detect.router, batch.router, v2.router, deepstack.router, models.router, health.router,
    admin.router,
)  # fmt: skip
