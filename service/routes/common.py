"""What every detection route shares: finding the engine and the model a request names, the API
key check, the request options and their defaults, and recording a result in the metrics and
in capture.

A route is then: `model = target(request, name, route)`, read its body with
`service.intake.received`, call `Engine.detect` / `detect_many`, `record_image` and
`capture_image` per result, and shape its own response. Errors are raised as service errors;
the route's error shape is the route's (service.errors for /detect, `{"error": "..."}` for
/v2, DeepStack's for /v1).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import Query, Request

from export.runtime import DetectionResult
from service.api_keys import ApiKeys, key_from_headers
from service.capture import Capture
from service.engine import Engine, ModelEntry
from service.errors import NotReadyError
from service.metrics import Metrics
from service.schemas import ErrorResponse, ModelRef
from service.settings import Settings
from service.stages import IMAGE_STAGES

ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse, "description": text}
    for status, text in (
        (
            400,
            "empty, truncated or undecodable image (NaN/inf pixels included); malformed "
            "multipart body or more than 16 parts (JSON: malformed JSON or base64)",
        ),
        (401, "DETECTOR_API_KEYS is set and the request has no valid key"),
        (404, "no model of that name (the message lists the models)"),
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

# OpenAPI request bodies: the routes read their bodies themselves (service.intake), so they
# describe them with these.
BINARY: dict[str, Any] = {"type": "string", "format": "binary"}


def object_schema(properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    """A media type entry: an object with `properties`, `required` ones."""
    return {"schema": {"type": "object", "properties": properties, "required": required}}


def request_body(content: dict[str, Any]) -> dict[str, Any]:
    """`openapi_extra` for a route whose body is one of `content` (media type -> entry)."""
    return {"requestBody": {"required": True, "content": content}}


# Query parameters of POST /detect and /detect/batch.
MODEL = Query(
    None, max_length=64,
    description="the model to use, by its name in the repository (GET /models); default: "
    "DETECTOR_DEFAULT_MODEL, else `default`, else the only model",
)  # fmt: skip
SCORE_THRESHOLD = Query(
    None, ge=0.0, le=1.0, description="minimum score (default DETECTOR_SCORE_THRESHOLD)"
)
MAX_DETECTIONS = Query(
    None, ge=1, le=1000, description="at most this many per image (default DETECTOR_MAX_DETECTIONS)"
)
TIMEOUT_MS = Query(
    None, ge=1, le=600_000, description="deadline for this request -> 504 when exceeded"
)


def engine_of(request: Request) -> Engine:
    engine: Engine | None = getattr(request.app.state, "engine", None)
    if engine is None:
        raise NotReadyError("model not ready: the service is starting")
    return engine


def metrics_of(request: Request) -> Metrics:
    metrics: Metrics = request.app.state.metrics
    return metrics


def check_key(request: Request, route: str, given: str | None = None) -> None:
    """401 (UnauthorizedError) when DETECTOR_API_KEYS is set and neither the headers nor
    `given` (DeepStack's `api_key` form field) hold a key; nothing when keys are off."""
    keys: ApiKeys | None = getattr(request.app.state, "api_keys", None)
    if keys is not None:
        keys.check(key_from_headers(request.headers) or given, route, metrics_of(request))


def target(request: Request, name: str | None, route: str, keyed: bool = True) -> ModelEntry:
    """The model this request uses (404 unknown name, 503 not ready), after the API key check
    (`keyed=False`: the route checks the key itself, later). From here on the request counts
    under the model's name in `detector_requests_total{model}`."""
    if keyed:
        check_key(request, route)
    model = engine_of(request).resolve(name)
    request.state.model = model.name
    return model


def ref(model: ModelEntry) -> ModelRef:
    return ModelRef(name=model.name, version=model.version)


@dataclass(frozen=True)
class Thresholds:
    score_threshold: float
    max_detections: int


def thresholds(settings: Settings, score: float | None, most: int | None) -> Thresholds:
    """The request's values, or the service's defaults where it gives none."""
    return Thresholds(
        settings.score_threshold if score is None else score,
        settings.max_detections if most is None else most,
    )


def record_image(
    metrics: Metrics, model: str, result: DetectionResult, timings_s: dict[str, float] | None
) -> dict[str, float]:
    """Record one image's stages (its own, or `timings_s` for a one-image request: those of
    the whole request), detections, pixels and tiles; returns the stages it recorded."""
    timings = timings_s if timings_s is not None else {
        k: result.timings_s.get(k, 0.0) for k in IMAGE_STAGES}  # fmt: skip
    metrics.observe_stages(model, timings)
    metrics.detections.labels(model=model).observe(len(result.detections))
    metrics.image_pixels.labels(model=model).observe(result.width * result.height)
    metrics.tiles.labels(model=model).inc(result.tiles)
    return timings


def capture_image(
    request: Request,
    route: str,
    model: ModelEntry,
    data: bytes,
    result: DetectionResult,
    limits: Thresholds,
    tile: str | int = "off",
    classes: tuple[int, ...] | None = None,
) -> None:
    """Offer one answered image (`data`: the uploaded bytes, as they came) to capture
    (service.capture; nothing unless DETECTOR_CAPTURE_DIR is set). Every detection route calls
    it for each image it answered; it copies nothing, decodes nothing and never raises."""
    capture: Capture | None = getattr(request.app.state, "capture", None)
    if capture is not None and capture.captures(model.name):
        capture.offer(
            model.name, model.version, model.metadata.class_names, route, data, result,
            limits.score_threshold, limits.max_detections, tile, classes,
            getattr(request.state, "request_id", None),
        )  # fmt: skip
