"""HTTP endpoints: /detect (JSON, or the annotated image), /health/live, /health/ready, /model,
/metrics."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Literal

from fastapi import APIRouter, Depends, Query, Request, Response

from export.runtime import DetectionResult
from service.annotate import FORMATS, MAX_SIDE, ImageFormat, render
from service.class_filter import classes_query, parse_classes
from service.engine import Engine
from service.errors import NotReadyError, record_outcome
from service.intake import received, request_deadline
from service.metrics import Metrics
from service.schemas import (
    DetectResponse,
    ErrorResponse,
    HealthStatus,
    ModelInfo,
    detect_response,
)
from service.tile_param import TILE, resolve_tile
from service.upload import IMAGE_FIELD, BudgetHold, read_image_upload

router = APIRouter()

_ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse, "description": text}
    for status, text in (
        (
            400,
            "empty, truncated or undecodable image (NaN/inf pixels included); malformed "
            "multipart body or more than 16 parts (JSON: malformed JSON or base64)",
        ),
        (408, "body not received within DETECTOR_BODY_TIMEOUT_S"),
        (
            413,
            "body over DETECTOR_MAX_UPLOAD_BYTES or image over DETECTOR_MAX_PIXELS (or, "
            "for modes over 3 bytes per pixel, over the same decoded size in bytes)",
        ),
        (415, "not an image (content type or content); formats: JPEG, PNG, WebP, GIF, BMP, TIFF"),
        (422, "invalid query parameter (e.g. unknown class), missing or repeated field"),
        (503, "model not ready, shutting down, or overloaded (with Retry-After)"),
        (504, "deadline (DETECTOR_REQUEST_TIMEOUT_S or timeout_ms) exceeded"),
    )
}
_BINARY = {"type": "string", "format": "binary"}
_ANNOTATED_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "JSON detections; with `annotate=true`, the image with the boxes drawn "
        f"(original size, longer side at most {MAX_SIDE} px; JPEG, or PNG with `format=png`)",
        "content": {"image/jpeg": {"schema": _BINARY}, "image/png": {"schema": _BINARY}},
        "headers": {
            "X-Detections": {
                "description": "number of boxes drawn (annotate=true only)",
                "schema": {"type": "integer"},
            }
        },
    }
}
_DETECT_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {IMAGE_FIELD: _BINARY},
                    "required": [IMAGE_FIELD],
                }
            },
            "image/*": {"schema": _BINARY},
            "application/octet-stream": {"schema": _BINARY},
            "application/json": {
                "schema": {
                    "type": "object",
                    "properties": {IMAGE_FIELD: {"type": "string", "format": "byte"}},
                    "required": [IMAGE_FIELD],
                }
            },
        },
    }
}


# Query parameters shared with POST /detect/batch (service.batch).
SCORE_THRESHOLD = Query(
    None, ge=0.0, le=1.0, description="minimum score (default DETECTOR_SCORE_THRESHOLD)"
)
MAX_DETECTIONS = Query(
    None, ge=1, le=1000, description="at most this many per image (default DETECTOR_MAX_DETECTIONS)"
)
TIMEOUT_MS = Query(
    None, ge=1, le=600_000, description="deadline for this request -> 504 when exceeded"
)


def _engine(request: Request) -> Engine:
    engine: Engine | None = getattr(request.app.state, "engine", None)
    if engine is None:
        raise NotReadyError("model not ready: the service is starting")
    return engine


@router.post(
    "/detect",
    response_model=DetectResponse,
    responses={**_ANNOTATED_RESPONSE, **_ERROR_RESPONSES},
    openapi_extra=_DETECT_BODY,
    summary="Detect objects in one image (JSON, or the image with the boxes drawn)",
)
async def detect(
    request: Request,
    score_threshold: float | None = SCORE_THRESHOLD,
    max_detections: int | None = MAX_DETECTIONS,
    timeout_ms: int | None = TIMEOUT_MS,
    annotate: bool = Query(
        False, description="answer with the image (boxes, labels and scores drawn), not JSON"
    ),
    image_format: Literal["jpeg", "png"] = Query(
        "jpeg", alias="format", description="format of the annotated image (annotate=true)"
    ),
    classes: list[str] | None = Depends(classes_query),
    tile: str | None = TILE,
) -> DetectResponse | Response:
    engine = _engine(request)
    settings = engine.settings
    detector = engine.require_ready()
    class_ids = parse_classes(classes, detector.metadata.class_names)
    tiling = resolve_tile(tile, settings.tile)
    metrics: Metrics = request.app.state.metrics
    timings: dict[str, float] = request.state.timings_s

    timeout_s = timeout_ms / 1000 if timeout_ms else None
    deadline = request_deadline(request, engine, timeout_s)
    drawn: list[bytes] = []
    async with received(request, engine, _read_image, timeout_s) as (data, slot):
        result, waited = await engine.detect(
            data,
            settings.score_threshold if score_threshold is None else score_threshold,
            settings.max_detections if max_detections is None else max_detections,
            deadline,
            slot,
            then=_annotator(data, detector.metadata.class_names, image_format,
                            settings.max_pixels, deadline, drawn) if annotate else None,
            classes=class_ids,
            tile=tiling,
        )  # fmt: skip
    timings.update(queue=waited, **result.timings_s)
    timings["total"] = time.monotonic() - request.state.started_monotonic
    n_det = len(result.detections)
    request.state.image_width, request.state.image_height = result.width, result.height
    request.state.detections = n_det
    metrics.observe_stages(timings)
    metrics.detections.observe(n_det)
    metrics.image_pixels.observe(result.width * result.height)
    metrics.tiles.inc(result.tiles)
    record_outcome(request, "ok")
    if annotate:
        fmt = FORMATS[image_format]
        return Response(drawn[0], media_type=fmt.media_type, headers={
            "Content-Disposition": f'inline; filename="detections.{fmt.extension}"',
            "X-Detections": str(n_det),
        })  # fmt: skip
    return detect_response(result, detector.metadata, timings)


async def _read_image(
    request: Request, deadline: float | None, hold: BudgetHold
) -> tuple[bytes, int]:
    return await read_image_upload(request, _engine(request).settings.max_upload_bytes, deadline,
                                   hold)  # fmt: skip


def _annotator(
    data: bytes,
    class_names: tuple[str, ...],
    image_format: ImageFormat,
    max_pixels: int,
    deadline: float | None,
    out: list[bytes],
) -> Callable[[DetectionResult], None]:
    """Runs on the inference worker after the detection: draws its boxes onto `data`."""

    def draw(result: DetectionResult) -> None:
        out.append(render(data, result, class_names, image_format, max_pixels, deadline))

    return draw


@router.get("/health/live", response_model=HealthStatus, summary="Liveness: always 200")
async def live() -> HealthStatus:
    return HealthStatus(status="alive")


@router.get(
    "/health/ready",
    response_model=HealthStatus,
    responses={503: _ERROR_RESPONSES[503]},
    summary="Readiness: 200 once the model is loaded and warmed up",
)
async def ready(request: Request) -> HealthStatus:
    _engine(request).require_ready()
    return HealthStatus(status="ready")


@router.get("/model", response_model=ModelInfo, responses={503: _ERROR_RESPONSES[503]})
async def model_info(request: Request) -> ModelInfo:
    engine = _engine(request)
    return ModelInfo.from_metadata(engine.require_ready().metadata, engine.settings.score_threshold)


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
    summary="Prometheus metrics",
)
async def metrics_endpoint(request: Request) -> Response:
    metrics: Metrics = request.app.state.metrics
    return Response(metrics.render(), media_type=metrics.content_type)
