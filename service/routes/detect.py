"""POST /detect: one image -> JSON detections, or the image with the boxes drawn."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Literal

from fastapi import APIRouter, Depends, Query, Request, Response

from export.runtime import DetectionResult
from service.annotate import FORMATS, MAX_SIDE, ImageFormat, render
from service.class_filter import classes_query, parse_classes
from service.errors import record_outcome
from service.intake import received, request_deadline
from service.routes.common import (
    BINARY,
    ERROR_RESPONSES,
    MAX_DETECTIONS,
    MODEL,
    SCORE_THRESHOLD,
    TIMEOUT_MS,
    capture_image,
    engine_of,
    metrics_of,
    object_schema,
    record_image,
    ref,
    request_body,
    target,
    thresholds,
)
from service.schemas import DetectResponse, detect_response
from service.tile_param import TILE, resolve_tile
from service.upload import IMAGE_FIELD, BudgetHold, read_image_upload

router = APIRouter()

_ANNOTATED_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "JSON detections; with `annotate=true`, the image with the boxes drawn "
        f"(original size, longer side at most {MAX_SIDE} px; JPEG, or PNG with `format=png`)",
        "content": {"image/jpeg": {"schema": BINARY}, "image/png": {"schema": BINARY}},
        "headers": {
            "X-Detections": {
                "description": "number of boxes drawn (annotate=true only)",
                "schema": {"type": "integer"},
            }
        },
    }
}
_DETECT_BODY = request_body({
    "multipart/form-data": object_schema({IMAGE_FIELD: BINARY}, [IMAGE_FIELD]),
    "image/*": {"schema": BINARY},
    "application/octet-stream": {"schema": BINARY},
    "application/json": object_schema({IMAGE_FIELD: {"type": "string", "format": "byte"}},
                                      [IMAGE_FIELD]),
})  # fmt: skip


@router.post(
    "/detect",
    response_model=DetectResponse,
    responses={**_ANNOTATED_RESPONSE, **ERROR_RESPONSES},
    openapi_extra=_DETECT_BODY,
    summary="Detect objects in one image (JSON, or the image with the boxes drawn)",
)
async def detect(
    request: Request,
    model: str | None = MODEL,
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
    chosen = target(request, model, "detect")
    engine = engine_of(request)
    settings = engine.settings
    meta = chosen.metadata
    class_ids = parse_classes(classes, meta.class_names)
    tiling = resolve_tile(tile, settings.tile)
    limits = thresholds(settings, score_threshold, max_detections)
    timings: dict[str, float] = request.state.timings_s

    timeout_s = timeout_ms / 1000 if timeout_ms else None
    deadline = request_deadline(request, engine, timeout_s)
    drawn: list[bytes] = []
    async with received(request, engine, _read_image, timeout_s) as (data, slot):
        result, waited = await engine.detect(
            chosen, data, limits.score_threshold, limits.max_detections, deadline, slot,
            then=_annotator(data, meta.class_names, image_format, settings.max_pixels, deadline,
                            drawn) if annotate else None,
            classes=class_ids,
            tile=tiling,
        )  # fmt: skip
    timings.update(queue=waited, **result.timings_s)
    timings["total"] = time.monotonic() - request.state.started_monotonic
    n_det = len(result.detections)
    request.state.image_width, request.state.image_height = result.width, result.height
    request.state.detections = n_det
    record_image(metrics_of(request), chosen.name, result, timings)
    capture_image(request, "detect", chosen, data, result, limits, tiling, class_ids)
    record_outcome(request, "ok")
    if annotate:
        fmt = FORMATS[image_format]
        return Response(drawn[0], media_type=fmt.media_type, headers={
            "Content-Disposition": f'inline; filename="detections.{fmt.extension}"',
            "X-Detections": str(n_det),
        })  # fmt: skip
    return detect_response(result, ref(chosen), meta.class_names, timings)


async def _read_image(
    request: Request, deadline: float | None, hold: BudgetHold
) -> tuple[bytes, int]:
    return await read_image_upload(request, engine_of(request).settings.max_upload_bytes, deadline,
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
