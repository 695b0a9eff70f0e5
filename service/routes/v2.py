"""The Open Inference Protocol (KServe v2 REST), so that KServe's and Triton's clients
(`tritonclient.http`) can call the service: the model takes the encoded image files as a BYTES
tensor `image` of shape [N] and answers, per image, padded detection tensors:

  num_detections INT32 [N]     boxes FP32 [N, K, 4] (xyxy, original pixels)
  scores FP32 [N, K]           class_ids INT64 [N, K] (-1 = padding)
  class_names BYTES [N, K] ("" = padding)            K = the most detections of any image

Request `parameters` (optional): score_threshold, max_detections, classes ("person,car"), tile
(off, auto or N: tiled inference, service/tile_param.py). Every model of the repository is
served under its name (`/v2/models/{name}/...`); the version is the served one.
Errors follow the protocol: `{"error": "<message>"}` with the same statuses as /detect.
"""

from __future__ import annotations

import json
import time
from typing import Any

import numpy as np
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel

from export.runtime import DetectionResult
from service.class_filter import parse_classes
from service.engine import Engine, ModelEntry
from service.errors import (
    HttpError,
    InvalidParameterError,
    NotFoundError,
    ServiceError,
    record_outcome,
    to_http_error,
)
from service.intake import Reader, received, request_deadline
from service.json_input import json_batch_limit
from service.oip import (
    HEADER_LENGTH,
    OIP_INPUT,
    OIP_OUTPUTS,
    InferRequest,
    encode_outputs,
    parse_infer_request,
)
from service.routes.common import (
    Thresholds,
    capture_image,
    check_key,
    engine_of,
    metrics_of,
    record_image,
)
from service.settings import Settings
from service.stages import REQUEST_STAGES
from service.tile_param import resolve_tile
from service.upload import BudgetHold, parse_off_loop, read_bounded

router = APIRouter(prefix="/v2", tags=["Open Inference Protocol (KServe v2)"])
SERVER_NAME = "fcos-detector"


class OipError(BaseModel):
    error: str


class ServerMetadata(BaseModel):
    name: str
    version: str
    extensions: list[str]


class Live(BaseModel):
    live: bool


class Ready(BaseModel):
    ready: bool


class TensorMetadata(BaseModel):
    name: str
    datatype: str
    shape: list[int]


class ModelMetadataResponse(BaseModel):
    name: str
    versions: list[str]
    platform: str
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]


_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": OipError, "description": text}
    for status, text in (
        (400, "malformed inference request, or an image that cannot be decoded"),
        (404, "no such model or version"),
        (408, "body not received within DETECTOR_BODY_TIMEOUT_S"),
        (413, "body, image or image count over the limits"),
        (415, "an input element is not an image"),
        (422, "invalid parameter (e.g. unknown class)"),
        (503, "model not ready, shutting down, or overloaded (with Retry-After)"),
        (504, "deadline (DETECTOR_REQUEST_TIMEOUT_S) exceeded"),
    )
}
_INFER_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "an inference request; BYTES elements as base64 strings in JSON, or raw "
        "with Triton's binary data extension (header Inference-Header-Content-Length)",
        "content": {
            "application/json": {"schema": {"type": "object", "required": ["inputs"],
                                            "properties": {"inputs": {"type": "array"}}}},
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        },
    }
}  # fmt: skip


def _error(request: Request, exc: Exception) -> JSONResponse:
    err = to_http_error(exc)
    record_outcome(request, err.outcome)
    return JSONResponse({"error": err.message}, status_code=err.status, headers=err.headers)


def _model(engine: Engine, name: str, version: str | None) -> ModelEntry:
    """The model by its repository name, or by the name in its file's metadata when exactly
    one served model has it (what this route took before models had repository names)."""
    if name not in engine.models:
        named = [n for n, e in engine.models.items()
                 if e.detector is not None and e.metadata.name == name]  # fmt: skip
        name = named[0] if len(named) == 1 else name
    entry = engine.resolve(name)
    if version is not None and version != entry.version:
        raise NotFoundError(f"unknown model {name!r} version {version!r}: it serves version "
                            f"{entry.version!r}")  # fmt: skip
    return entry


@router.get("", response_model=ServerMetadata, summary="Server metadata")
async def server_metadata(request: Request) -> ServerMetadata:
    return ServerMetadata(name=SERVER_NAME, version=request.app.version,
                          extensions=["binary_tensor_data", "model_repository"])  # fmt: skip


@router.get("/health/live", response_model=Live, summary="Server liveness")
async def server_live() -> Live:
    return Live(live=True)


@router.get("/health/ready", response_model=Ready, responses={503: {"model": Ready}},
            summary="Server readiness: 200 once the model is loaded and warmed up")  # fmt: skip
async def server_ready(request: Request) -> Ready | JSONResponse:
    engine = getattr(request.app.state, "engine", None)
    if engine is None or not engine.ready:
        return JSONResponse({"ready": False}, status_code=503)
    return Ready(ready=True)


class RepositoryEntry(BaseModel):
    name: str
    version: str
    state: str  # Triton's: READY | LOADING | UNAVAILABLE
    reason: str = ""


_TRITON_STATES = {"ready": "READY", "loading": "LOADING"}  # failed, refused: UNAVAILABLE


@router.post("/repository/index", response_model=list[RepositoryEntry],
             summary="The models and their states (Triton's repository extension)")  # fmt: skip
async def repository_index(request: Request) -> list[RepositoryEntry]:
    """What `tritonclient`'s `get_model_repository_index()` reads."""
    return [
        RepositoryEntry(name=e.name, version=e.version, state=_TRITON_STATES.get(
            e.state, "UNAVAILABLE"), reason="" if e.state == "ready" else e.reason)
        for e in engine_of(request).models.values()
    ]  # fmt: skip


@router.get("/models/{name}", response_model=ModelMetadataResponse, responses=_ERRORS,
            summary="Model metadata: inputs and outputs")  # fmt: skip
@router.get("/models/{name}/versions/{version}", response_model=ModelMetadataResponse,
            responses=_ERRORS, summary="Model metadata (one version)")  # fmt: skip
async def model_metadata(
    request: Request, name: str, version: str | None = None
) -> ModelMetadataResponse | JSONResponse:
    try:
        entry = _model(engine_of(request), name, version)
    except ServiceError as exc:
        return _error(request, exc)
    return ModelMetadataResponse(
        name=entry.name, versions=[entry.version], platform="onnxruntime_onnx",
        inputs=[TensorMetadata(name=OIP_INPUT, datatype="BYTES", shape=[-1])],
        outputs=[TensorMetadata(name=n, datatype=d, shape=s) for n, d, s in OIP_OUTPUTS],
    )  # fmt: skip


@router.get("/models/{name}/ready", response_model=Ready, responses=_ERRORS,
            summary="Model readiness")  # fmt: skip
@router.get("/models/{name}/versions/{version}/ready", response_model=Ready, responses=_ERRORS,
            summary="Model readiness (one version)")  # fmt: skip
async def model_ready(request: Request, name: str, version: str | None = None) -> Any:
    try:
        _model(engine_of(request), name, version)
    except ServiceError as exc:
        return _error(request, exc)
    return Ready(ready=True)


@router.post("/models/{name}/infer", responses={200: {"description": "inference response "
             "(JSON, or JSON + binary tensors)"}, **_ERRORS}, openapi_extra=_INFER_BODY,
             summary="Detect objects in N encoded images (BYTES tensor 'image')")  # fmt: skip
@router.post("/models/{name}/versions/{version}/infer", responses=_ERRORS,
             openapi_extra=_INFER_BODY, summary="Inference (one version)")  # fmt: skip
async def infer(request: Request, name: str, version: str | None = None) -> Response:
    try:
        return await _infer(request, name, version)
    except Exception as exc:  # expected failures in the protocol's error shape
        if to_http_error(exc).status == 500:
            raise  # a bug: RequestContextMiddleware answers and logs it
        return _error(request, exc)


async def _infer(request: Request, name: str, version: str | None) -> Response:
    check_key(request, "v2")
    engine = engine_of(request)
    settings = engine.settings
    model = _model(engine, name, version)
    request.state.model = model.name
    meta = model.metadata
    metrics = metrics_of(request)
    timings: dict[str, float] = request.state.timings_s
    async with received(request, engine, _reader(settings)) as (req, slot):
        p = req.parameters
        limits = Thresholds(
            _number(p, "score_threshold", settings.score_threshold, 0.0, 1.0),
            int(_number(p, "max_detections", settings.max_detections, 1, 1000, integer=True)),
        )
        class_ids = parse_classes(_classes(p), meta.class_names)
        tiling = resolve_tile(p.get("tile"), settings.tile)
        outcomes, timings["queue"] = await engine.detect_many(
            model,
            req.images,
            limits.score_threshold,
            limits.max_detections,
            request_deadline(request, engine, None),
            slot,
            class_ids,
            tiling,
        )
    results: list[DetectionResult] = []
    for i, outcome in enumerate(outcomes):
        if isinstance(outcome, Exception):
            raise _ImageError(to_http_error(outcome), i)
        record_image(metrics, model.name, outcome, None)
        results.append(outcome)
    for image, result in zip(req.images, results, strict=True):  # answered: every image
        capture_image(request, "v2", model, image, result, limits, tiling, class_ids)
    timings["total"] = time.monotonic() - request.state.started_monotonic
    metrics.observe_stages(model.name, {k: timings[k] for k in REQUEST_STAGES})
    request.state.detections = sum(len(r.detections) for r in results)
    record_outcome(request, "ok")
    # Built on the body-parser thread, not the event loop: the response is up to N x K x 4
    # floats as JSON (16 x 1,000 x 4 at the limits), GIL-bound work like parsing, and one
    # thread for both bounds how much of it competes with the loop and how many transient
    # copies exist at once; asyncio.to_thread's pool would run several at a time.
    return await parse_off_loop(_response, results, model, req)


def _response(results: list[DetectionResult], model: ModelEntry, req: InferRequest) -> Response:
    """The inference response: JSON, or JSON + the outputs asked for as binary."""
    entries, chunks = encode_outputs(output_tensors(results, model.metadata.class_names), req)
    doc: dict[str, Any] = {"model_name": model.name, "model_version": model.version,
                           "outputs": entries}  # fmt: skip
    if req.request_id is not None:
        doc["id"] = req.request_id
    header = json.dumps(doc).encode()
    if not chunks:
        return Response(header, media_type="application/json")
    return Response(header + b"".join(chunks), media_type="application/octet-stream",
                    headers={"Inference-Header-Content-Length": str(len(header))})  # fmt: skip


def _reader(settings: Settings) -> Reader[InferRequest]:
    """The body reader of the infer route (for service.intake.received): the request parsed
    and checked against the limits off the event loop."""

    async def read(
        request: Request, deadline: float | None, hold: BudgetHold
    ) -> tuple[InferRequest, int]:
        limit = json_batch_limit(settings.max_batch_bytes, settings.max_batch_images)
        body = await read_bounded(request, limit, deadline, hold)
        header_length = request.headers.get(HEADER_LENGTH)
        limits = settings.max_upload_bytes, settings.max_batch_images
        req = await parse_off_loop(parse_infer_request, body, header_length, *limits)
        return req, len(body)

    return read


class _ImageError(ServiceError):
    """The error of one image of the request, named by its index."""

    def __init__(self, err: HttpError, index: int) -> None:
        super().__init__(f"{OIP_INPUT}[{index}]: {err.message}")
        self.status, self.code, self.outcome = err.status, err.code, err.outcome


def _number(params: dict[str, Any], key: str, default: float, lo: float, hi: float,
            integer: bool = False) -> float:  # fmt: skip
    value = params.get(key, default)
    ok = isinstance(value, int if integer else (int, float)) and not isinstance(value, bool)
    if not ok or not lo <= value <= hi:
        kind = "an integer" if integer else "a number"
        raise InvalidParameterError(f"parameter {key}: must be {kind} in [{lo}, {hi}]")
    return float(value)


def _classes(params: dict[str, Any]) -> list[str] | None:
    value = params.get("classes")
    if value is None:
        return None
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return value
    raise InvalidParameterError("parameter classes: a string 'a,b' or a list of strings")


def output_tensors(
    results: list[DetectionResult], class_names: tuple[str, ...]
) -> dict[str, np.ndarray]:
    """Per-image detections -> the padded output tensors (see the module docstring)."""
    n, k = len(results), max((len(r.detections) for r in results), default=0)
    counts = np.zeros((n,), np.int32)
    boxes = np.zeros((n, k, 4), np.float32)
    scores = np.zeros((n, k), np.float32)
    class_ids = np.full((n, k), -1, np.int64)
    names = np.full((n, k), "", dtype=object)
    for i, r in enumerate(results):
        d, m = r.detections, len(r.detections)
        counts[i] = m
        boxes[i, :m], scores[i, :m], class_ids[i, :m] = d.boxes, d.scores, d.class_ids
        names[i, :m] = [class_names[c] if 0 <= c < len(class_names) else str(c)
                        for c in d.class_ids.tolist()]  # fmt: skip
    return {"num_detections": counts, "boxes": boxes, "scores": scores,
            "class_ids": class_ids, "class_names": names}  # fmt: skip
