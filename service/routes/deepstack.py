"""DeepStack / CodeProject.AI Server compatible detection, for the clients that speak it (Home
Assistant's DeepStack integrations, Blue Iris, Frigate's `deepstack` detector, Agent DVR, the
`deepstack-python` and `codeproject-ai-api` packages):

  POST /v1/vision/detection        the default model
  POST /v1/vision/custom/{model}   a model of the repository by name (GET /models)

Body: multipart/form-data with the file field `image` and the optional text fields
`min_confidence` (0..1) and `api_key`; other fields are ignored. The body comes in through
service.intake like /detect's (size, memory budget, deadlines, queue slot, parsed off the
event loop), and the API key (a header, or the `api_key` field) is checked once the body is
parsed, before any inference.

The answer is CodeProject.AI Server's, a superset of DeepStack's `{"success", "predictions"}`:
boxes are integer pixels truncated as both servers do (`int(x)` in DeepStack's
intelligencelayer/shared/detection.py and CodeProject.AI's ObjectDetectionYolo
detect_adapter.py), predictions highest confidence first. Errors are
`{"success": false, "error": "<message>", "code": <status>}` with the service's statuses
(service.errors.to_http_error: 400 bad image, 401 key, 404 unknown model, 413, 415, 503 with
Retry-After, 504...); DeepStack's clients treat any status but 200 as an error.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from python_multipart.multipart import parse_options_header

from export.runtime import DetectionResult
from service.errors import (
    BadRequestError,
    InvalidParameterError,
    PayloadTooLargeError,
    UnsupportedMediaTypeError,
    record_outcome,
    to_http_error,
)
from service.intake import Reader, received, request_deadline
from service.routes.common import (
    BINARY,
    Thresholds,
    capture_image,
    check_key,
    engine_of,
    metrics_of,
    object_schema,
    record_image,
    request_body,
    target,
)
from service.settings import Settings
from service.tile_param import resolve_tile
from service.upload import (
    IMAGE_FIELD,
    MULTIPART_OVERHEAD,
    BudgetHold,
    extract_multipart_form,
    parse_off_loop,
    read_bounded,
)

router = APIRouter(prefix="/v1/vision", tags=["DeepStack / CodeProject.AI compatible"])
log = logging.getLogger("service.deepstack")

ROUTE = "deepstack"  # the `route` label of the metrics and of the API key refusals
MODULE_ID = "fcos-detector"
MODULE_NAME = "FCOS object detection"
CONFIDENCE_FIELD, KEY_FIELD = "min_confidence", "api_key"
_MAX_TEXT_FIELD = 1024  # bytes of a text field: a number or a key, never more
# `min_confidence` when the request has none: DETECTOR_SCORE_THRESHOLD, the model's operating
# point (0.4 unless configured). DeepStack's server uses "0.40" (server/server.go, detection())
# and CodeProject.AI's object detection modules "0.4" (data.get_value("min_confidence", "0.4")),
# so by default the answer is theirs; the 0.45 often quoted is the *clients'* default
# (deepstack-python, codeproject-ai-api), which they always send. A model of one's own is tuned
# with DETECTOR_SCORE_THRESHOLD, and a client that omits the field (Frigate's detector plugin)
# gets that operating point rather than a number chosen for another server's YOLO models.


class Prediction(BaseModel):
    label: str
    confidence: float = Field(ge=0.0, le=1.0)
    x_min: int = Field(description="left edge, pixels of the original image (truncated)")
    y_min: int
    x_max: int
    y_max: int


class DeepStackResponse(BaseModel):
    """CodeProject.AI Server's object detection answer (DeepStack's: success + predictions)."""

    model_config = ConfigDict(populate_by_name=True, protected_namespaces=())

    success: bool = True
    message: str = Field(description='"Found cat, dog" or "No objects found"')
    count: int = Field(ge=0, description="number of predictions")
    predictions: list[Prediction]
    inference_ms: int = Field(alias="inferenceMs", description="model time, ms")
    process_ms: int = Field(alias="processMs", description="decode + model + postprocess, ms")
    analysis_round_trip_ms: int = Field(
        alias="analysisRoundTripMs", description="arrival to answer, ms"
    )
    code: int = 200
    command: str = Field(description='"detect" (/v1/vision/detection) or "custom"')
    module_id: str = Field(alias="moduleId")
    module_name: str = Field(alias="moduleName")
    request_id: str = Field(alias="requestId", description="as the X-Request-ID header")
    model: str = Field(description="the model of the repository that answered")
    model_version: str = Field(alias="modelVersion")


class DeepStackError(BaseModel):
    success: bool = False
    error: str
    code: int = Field(description="the HTTP status, repeated")


_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": DeepStackError, "description": text}
    for status, text in (
        (400, "no `image` field, an image that cannot be decoded, a malformed multipart body "
              "or an invalid min_confidence"),
        (401, "DETECTOR_API_KEYS is set and neither a header nor `api_key` holds a valid key"),
        (404, "no model of that name (the message lists the models)"),
        (408, "body not received within DETECTOR_BODY_TIMEOUT_S"),
        (413, "body over DETECTOR_MAX_UPLOAD_BYTES or image over DETECTOR_MAX_PIXELS"),
        (415, "not multipart/form-data, or the image is not an image"),
        (422, "the `image` field sent more than once"),
        (500, "a bug (logged)"),
        (503, "model not ready, shutting down, or overloaded (with Retry-After)"),
        (504, "deadline (DETECTOR_REQUEST_TIMEOUT_S) exceeded"),
    )
}  # fmt: skip
_BODY = request_body({"multipart/form-data": object_schema({
    IMAGE_FIELD: BINARY,
    # Text parts, whatever the client's type: no `type` here, so that a "wrong type" (0.5 for
    # a string) is not taken for invalid input.
    CONFIDENCE_FIELD: {
        "description": "minimum confidence, a number in [0, 1]; absent or empty: "
        "DETECTOR_SCORE_THRESHOLD (0.4, as DeepStack's server)",
        "examples": ["0.45"],
    },
    KEY_FIELD: {"description": "API key, when DETECTOR_API_KEYS is set (or as "
                "`Authorization: Bearer` / `X-API-Key`)"},
}, [IMAGE_FIELD])})  # fmt: skip


@router.post(
    "/detection",
    response_model=DeepStackResponse,
    responses=_ERRORS,
    openapi_extra=_BODY,
    summary="DeepStack / CodeProject.AI object detection with the default model",
)
async def detection(request: Request) -> DeepStackResponse | JSONResponse:
    return await _answer(request, None, "detect")


@router.post(
    "/custom/{model}",
    response_model=DeepStackResponse,
    responses=_ERRORS,
    openapi_extra=_BODY,
    summary="DeepStack / CodeProject.AI custom model detection: a model of the repository",
)
async def custom(request: Request, model: str) -> DeepStackResponse | JSONResponse:
    return await _answer(request, model, "custom")


async def _answer(
    request: Request, name: str | None, command: str
) -> DeepStackResponse | JSONResponse:
    try:
        return await _detect(request, name, command)
    except Exception as exc:  # every failure in DeepStack's error shape, one status mapping
        err = to_http_error(exc)
        if err.status == 500:
            log.error("unhandled error", exc_info=exc,
                      extra={"request_id": getattr(request.state, "request_id", None)})  # fmt: skip
        elif exc.__cause__ is not None:  # the library's own words stay in the log
            log.info("request refused: %s", err.message, extra={
                "request_id": getattr(request.state, "request_id", None), "status": err.status,
                "cause": f"{type(exc.__cause__).__name__}: {exc.__cause__}"})  # fmt: skip
        record_outcome(request, err.outcome)
        body = {"success": False, "error": err.message, "code": err.status}
        return JSONResponse(body, status_code=err.status, headers=err.headers)


async def _detect(request: Request, name: str | None, command: str) -> DeepStackResponse:
    chosen = target(request, name, ROUTE, keyed=False)  # the key is in the body: checked there
    engine = engine_of(request)
    settings = engine.settings
    tiling = resolve_tile(None, settings.tile)
    timings: dict[str, float] = request.state.timings_s
    deadline = request_deadline(request, engine, None)
    async with received(request, engine, _reader(settings)) as (form, slot):
        score = settings.score_threshold if form.min_confidence is None else form.min_confidence
        result, waited = await engine.detect(
            chosen, form.image, score, settings.max_detections, deadline, slot, tile=tiling
        )
    timings.update(queue=waited, **result.timings_s)
    timings["total"] = time.monotonic() - request.state.started_monotonic
    request.state.image_width, request.state.image_height = result.width, result.height
    request.state.detections = len(result.detections)
    record_image(metrics_of(request), chosen.name, result, timings)
    limits = Thresholds(score, settings.max_detections)
    capture_image(request, ROUTE, chosen, form.image, result, limits, tiling)
    record_outcome(request, "ok")
    predictions = predictions_of(result, chosen.metadata.class_names)
    ms = {k: round(1000.0 * v) for k, v in timings.items()}
    return DeepStackResponse(
        message=_message(predictions),
        count=len(predictions),
        predictions=predictions,
        inference_ms=ms.get("inference", 0) + ms.get("tiles", 0),
        process_ms=sum(ms.get(k, 0) for k in
                       ("decode", "preprocess", "inference", "postprocess", "tiles")),
        analysis_round_trip_ms=ms["total"],
        command=command,
        module_id=MODULE_ID,
        module_name=MODULE_NAME,
        request_id=request.state.request_id,
        model=chosen.name,
        model_version=chosen.version,
    )  # fmt: skip


def predictions_of(result: DetectionResult, names: tuple[str, ...]) -> list[Prediction]:
    """Highest confidence first (Frigate's plugin stops at the first one under its cut), boxes
    truncated to integer pixels as DeepStack and CodeProject.AI do (`int(x)`; boxes are
    clipped to the image, so never negative)."""
    d = result.detections
    order = np.argsort(-d.scores, kind="stable")
    boxes = d.boxes[order].astype(np.float64).astype(np.int64).tolist()
    scores = d.scores[order].astype(np.float64).tolist()
    ids = d.class_ids[order].tolist()
    return [
        Prediction(label=names[c] if 0 <= c < len(names) else str(c), confidence=s,
                   x_min=b[0], y_min=b[1], x_max=b[2], y_max=b[3])
        for b, s, c in zip(boxes, scores, ids, strict=True)
    ]  # fmt: skip


def _message(predictions: list[Prediction]) -> str:
    """CodeProject.AI's summary line: the first three labels."""
    if not predictions:
        return "No objects found"
    labels = ", ".join(p.label for p in predictions[:3])
    return f"Found {labels}" + ("..." if len(predictions) > 3 else "")


# --- the body -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Form:
    image: bytes
    min_confidence: float | None  # None: the field was absent or empty
    api_key: str | None


def _reader(settings: Settings) -> Reader[Form]:
    """The body reader (for service.intake.received): the form parsed off the event loop, then
    the API key checked, all before the request takes a queue slot."""
    max_bytes = settings.max_upload_bytes

    async def read(request: Request, deadline: float | None, hold: BudgetHold) -> tuple[Form, int]:
        content_type = request.headers.get("content-type", "")
        media = parse_options_header(content_type)[0].decode("latin-1").lower()
        if media != "multipart/form-data":
            raise UnsupportedMediaTypeError(
                f"content type {media!r} is not accepted: send multipart/form-data with the "
                f"image in the field '{IMAGE_FIELD}'"
            )
        body = await read_bounded(request, max_bytes + MULTIPART_OVERHEAD, deadline, hold)
        form = await parse_off_loop(parse_form, body, content_type, max_bytes)
        check_key(request, ROUTE, given=form.api_key)
        return form, len(body)

    return read


def parse_form(body: bytes, content_type: str, max_image_bytes: int) -> Form:
    """The DeepStack form of a complete multipart body (runs on the body-parser thread)."""
    fields = extract_multipart_form(body, content_type,
                                    (IMAGE_FIELD, CONFIDENCE_FIELD, KEY_FIELD))  # fmt: skip
    images = fields.get(IMAGE_FIELD, [])
    if not images:
        raise BadRequestError(f"no image: send the image file in the field '{IMAGE_FIELD}'")
    if len(images) > 1:
        raise InvalidParameterError(
            f"field '{IMAGE_FIELD}' was sent {len(images)} times; this route takes one image"
        )
    if len(images[0]) > max_image_bytes:
        raise PayloadTooLargeError(f"image is larger than the limit of {max_image_bytes} bytes")
    confidence = _text(fields, CONFIDENCE_FIELD)
    key = _text(fields, KEY_FIELD)
    return Form(images[0], _confidence(confidence), key or None)


def _text(fields: dict[str, list[bytes]], name: str) -> str:
    """The one value of a text field ("" when absent); BadRequestError when repeated or long."""
    values = fields.get(name, [])
    if len(values) > 1:
        raise BadRequestError(f"field '{name}' was sent {len(values)} times")
    if not values:
        return ""
    if len(values[0]) > _MAX_TEXT_FIELD:
        raise BadRequestError(f"field '{name}' is longer than {_MAX_TEXT_FIELD} bytes")
    # surrogateescape: any bytes survive to the key comparison (service.api_keys hashes them
    # back the same way), and never raise here
    return values[0].decode("utf-8", "surrogateescape").strip()


def _confidence(text: str) -> float | None:
    """`min_confidence`: None when absent or empty (as DeepStack), else a number in [0, 1]."""
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0.0 <= value <= 1.0:  # NaN fails too
        raise BadRequestError("min_confidence must be a number in [0, 1]")
    return value
