"""POST /detect/batch: several images in one request, one result per image, in order.

Bodies: multipart/form-data with several `image` parts, or application/json
`{"images": ["<base64>", ...]}`. Limits: each image DETECTOR_MAX_UPLOAD_BYTES (an image over it
gets its own 413 result), the whole request DETECTOR_MAX_BATCH_IMAGES images and
DETECTOR_MAX_BATCH_BYTES bytes (over either -> the request is refused with 413). An image that
fails (not an image, corrupt, too many pixels) gets its own error result; the others are still
detected. The body comes in through service.intake (deadline, memory budget, parsed off the
event loop, at most `parts_limit(DETECTOR_MAX_BATCH_IMAGES)` multipart parts, the queue slot
only once it is complete). The request takes one queue slot and its images run one after the
other on the inference worker: batching them through the model measured slower for photos of
mixed aspect ratios (padding) and changes the answers (GroupNorm sees the padding): `python -m
bench.batching`, bench/RESULTS.md.
"""

from __future__ import annotations

import time

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field
from python_multipart.multipart import parse_options_header

from service.class_filter import classes_query, parse_classes
from service.errors import (
    PayloadTooLargeError,
    ServiceError,
    UnsupportedMediaTypeError,
    record_outcome,
    to_http_error,
)
from service.intake import Reader, received, request_deadline
from service.json_input import JSON_TYPE, json_batch_limit, json_image_list
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
from service.schemas import DetectResponse, ErrorBody, ModelRef, detect_response
from service.settings import Settings
from service.stages import REQUEST_STAGES
from service.tile_param import TILE, resolve_tile
from service.upload import (
    IMAGE_FIELD,
    MULTIPART_OVERHEAD,
    BudgetHold,
    extract_multipart_fields,
    parse_off_loop,
    parts_limit,
    read_bounded,
)

router = APIRouter()


class BatchItem(BaseModel):
    index: int = Field(ge=0, description="position of the image in the request")
    status: int = Field(description="the HTTP status this image alone would have got")
    result: DetectResponse | None = Field(None, description="when status is 200")
    error: ErrorBody | None = Field(None, description="when status is not 200")


class BatchTimings(BaseModel):
    read: float
    queue: float
    total: float


class BatchResponse(BaseModel):
    results: list[BatchItem]
    model: ModelRef
    timings_ms: BatchTimings


_BATCH_BODY = request_body({
    "multipart/form-data": object_schema({IMAGE_FIELD: {"type": "array", "items": BINARY}},
                                         [IMAGE_FIELD]),
    JSON_TYPE: object_schema({"images": {"type": "array", "minItems": 1,
                                         "items": {"type": "string", "format": "byte"}}},
                             ["images"]),
})  # fmt: skip


def _check_count(n: int, settings: Settings) -> None:
    if n > settings.max_batch_images:
        raise PayloadTooLargeError(
            f"{n} images in one request; the limit is {settings.max_batch_images} "
            "(DETECTOR_MAX_BATCH_IMAGES)"
        )


def batch_reader(settings: Settings) -> Reader[list[bytes | ServiceError]]:
    """The body reader of this route (for service.intake.received): per image its bytes or its
    own error; multipart and JSON parsed off the event loop."""

    async def read(
        request: Request, deadline: float | None, hold: BudgetHold
    ) -> tuple[list[bytes | ServiceError], int]:
        content_type = request.headers.get("content-type", "")
        media = parse_options_header(content_type)[0].decode("latin-1").lower()
        per_image, max_images = settings.max_upload_bytes, settings.max_batch_images
        if media == "multipart/form-data":
            limit = settings.max_batch_bytes + MULTIPART_OVERHEAD
            body = await read_bounded(request, limit, deadline, hold)
            parts = await parse_off_loop(
                extract_multipart_fields, body, content_type, IMAGE_FIELD, parts_limit(max_images)
            )
            _check_count(len(parts), settings)
            too_large = f"image is larger than the limit of {per_image} bytes"
            items = [p if len(p) <= per_image else PayloadTooLargeError(too_large) for p in parts]
            return items, len(body)
        if media == JSON_TYPE:
            limit = json_batch_limit(settings.max_batch_bytes, max_images)
            body = await read_bounded(request, limit, deadline, hold)
            images = await parse_off_loop(json_image_list, body, per_image, max_images)
            return images, len(body)
        raise UnsupportedMediaTypeError(
            f"content type {media!r} is not accepted here: send multipart/form-data with one "
            f"'{IMAGE_FIELD}' part per image, or application/json "
            '{"images": ["<base64>", ...]}'
        )

    return read


@router.post(
    "/detect/batch",
    response_model=BatchResponse,
    responses=ERROR_RESPONSES,
    openapi_extra=_BATCH_BODY,
    summary="Detect objects in several images: one result (or error) per image, in order",
)
async def detect_batch(
    request: Request,
    model: str | None = MODEL,
    score_threshold: float | None = SCORE_THRESHOLD,
    max_detections: int | None = MAX_DETECTIONS,
    timeout_ms: int | None = TIMEOUT_MS,
    classes: list[str] | None = Depends(classes_query),
    tile: str | None = TILE,
) -> BatchResponse:
    chosen = target(request, model, "batch")
    engine = engine_of(request)
    settings = engine.settings
    meta = chosen.metadata
    class_ids = parse_classes(classes, meta.class_names)
    tiling = resolve_tile(tile, settings.tile)
    limits = thresholds(settings, score_threshold, max_detections)
    metrics = metrics_of(request)
    timings: dict[str, float] = request.state.timings_s
    timeout_s = timeout_ms / 1000 if timeout_ms else None
    async with received(request, engine, batch_reader(settings), timeout_s) as (images, slot):
        outcomes, timings["queue"] = await engine.detect_many(
            chosen, images, limits.score_threshold, limits.max_detections,
            request_deadline(request, engine, timeout_s), slot, class_ids, tiling,
        )  # fmt: skip
    model_ref = ref(chosen)
    items = []
    for i, outcome in enumerate(outcomes):
        if isinstance(outcome, Exception):
            err = to_http_error(outcome)
            error = ErrorBody(code=err.code, message=err.message)
            items.append(BatchItem(index=i, status=err.status, error=error))
            continue
        own = record_image(metrics, chosen.name, outcome, None)
        data = images[i]
        if isinstance(data, bytes):  # (it is: its image was answered)
            capture_image(request, "batch", chosen, data, outcome, limits, tiling, class_ids)
        own["total"] = sum(own.values())
        result = detect_response(outcome, model_ref, meta.class_names, own)
        items.append(BatchItem(index=i, status=200, result=result))
    timings["total"] = time.monotonic() - request.state.started_monotonic
    metrics.observe_stages(chosen.name, {k: timings[k] for k in REQUEST_STAGES})
    request.state.detections = sum(len(it.result.detections) for it in items if it.result)
    record_outcome(request, "ok")
    return BatchResponse(
        results=items,
        model=model_ref,
        timings_ms=BatchTimings(**{k: round(1000 * timings[k], 2) for k in REQUEST_STAGES}),
    )
