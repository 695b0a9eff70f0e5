"""GET /health/live, /health/ready and /metrics: always open (no API key)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from service.routes.common import ERROR_RESPONSES, engine_of, metrics_of
from service.schemas import HealthStatus

router = APIRouter()


@router.get("/health/live", response_model=HealthStatus, summary="Liveness: always 200")
async def live() -> HealthStatus:
    return HealthStatus(status="alive")


@router.get(
    "/health/ready",
    response_model=HealthStatus,
    responses={503: ERROR_RESPONSES[503]},
    summary="Readiness: 200 once the default model is loaded and warmed up",
)
async def ready(request: Request) -> HealthStatus:
    engine_of(request).require_ready()
    return HealthStatus(status="ready")


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
    summary="Prometheus metrics",
)
async def metrics_endpoint(request: Request) -> Response:
    metrics = metrics_of(request)
    return Response(metrics.render(), media_type=metrics.content_type)
