"""Response bodies (pydantic models): they also make the OpenAPI spec precise."""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import BaseModel, Field, create_model

from export.metadata import ModelMetadata
from export.runtime import DetectionResult
from service.stages import STAGES


class Detection(BaseModel):
    label: str
    class_id: int = Field(ge=0)
    score: float = Field(ge=0.0, le=1.0)
    box: list[float] = Field(
        min_length=4, max_length=4, description="[x1, y1, x2, y2] in original-image pixels"
    )


class ImageInfo(BaseModel):
    width: int = Field(ge=1)
    height: int = Field(ge=1)
    tiles: int = Field(0, ge=0, description="tiles run through the model (0: untiled)")


class ModelRef(BaseModel):
    name: str = Field(description="the model's name in the repository (`?model=`)")
    version: str


_STAGE_FIELDS: dict[str, Any] = {
    stage: (float, Field(0.0, ge=0.0, description="milliseconds; 0 when the stage did not run"))
    for stage in STAGES
}
Timings = create_model("Timings", **_STAGE_FIELDS)  # one field per stage, in STAGES order


class DetectResponse(BaseModel):
    detections: list[Detection]
    image: ImageInfo
    model: ModelRef
    timings_ms: Timings  # type: ignore[valid-type]


class RuntimeInfo(BaseModel):
    """How the runtime serving a model was chosen (export.runtime_choice)."""

    config: str = Field(description="the configuration served: onnxruntime, openvino-f32, ...")
    backend: str
    precision: str = Field(description="precision of the floating-point layers (bf16, f32)")
    chosen_by: str = Field(
        description="auto (DETECTOR_BACKEND=auto: timed at load) or setting (forced)"
    )
    reason: str
    timings_ms: dict[str, float] = Field(
        default_factory=dict,
        description="ms per image of each candidate timed at load (empty: nothing to compare)",
    )
    skipped: dict[str, str] = Field(
        default_factory=dict, description="configurations not timed, and why"
    )
    validation: dict[str, Any] | None = Field(
        None,
        description="the file's runtime_validation record: data, split, images, cpu, and each "
        "configuration's mAP@0.5 delta against the reference (null: the file has none)",
    )


class ModelInfo(BaseModel):
    name: str = Field(description="the model's name in the repository (`?model=`)")
    version: str
    exported_name: str = Field(description="the name written into the ONNX file at export")
    preset: str
    precision: str
    classes: list[str]
    input_size: int
    strides: list[int]
    mean: list[float]
    std: list[float]
    score_threshold: float = Field(
        description="the service's default score threshold (DETECTOR_SCORE_THRESHOLD): the "
        "operating point a request gets without `score_threshold`"
    )
    runtime: RuntimeInfo | None = Field(None, description="the runtime serving it")

    @classmethod
    def from_metadata(
        cls, name: str, version: str, m: ModelMetadata, score_threshold: float
    ) -> ModelInfo:
        return cls(
            name=name, version=version, exported_name=m.name, preset=m.preset,
            precision=m.precision,
            classes=list(m.class_names), input_size=m.input_size, strides=list(m.strides),
            mean=list(m.mean), std=list(m.std), score_threshold=score_threshold,
        )  # fmt: skip


class ModelStatus(BaseModel):
    name: str
    version: str | None
    state: str = Field(description="loading | ready | failed | refused (DETECTOR_MAX_MODELS)")
    reason: str | None = Field(None, description="why it is not ready")
    last_error: str | None = Field(
        None, description="the latest reload that failed (this version serves on)"
    )
    file: str
    backend: str | None = Field(None, description="the runtime serving it (once loaded)")
    precision: str | None = None
    preset: str | None = None
    exported_name: str | None = None
    classes: list[str] = Field(default_factory=list)
    input_size: int | None = None
    score_threshold: float = Field(
        description="the default score threshold of requests that give none "
        "(DETECTOR_SCORE_THRESHOLD)"
    )
    memory_bytes: int = Field(description="resident memory the process grew by to load it")
    load_ms: float
    runtime: RuntimeInfo | None = Field(None, description="the runtime serving it (once loaded)")


class ModelList(BaseModel):
    default: str | None = Field(description="the model of requests that name none")
    models: list[ModelStatus]


class HealthStatus(BaseModel):
    status: str


class ErrorBody(BaseModel):
    code: str
    message: str


class ErrorResponse(BaseModel):
    error: ErrorBody


def detect_response(
    result: DetectionResult,
    model: ModelRef,
    names: tuple[str, ...],
    timings_s: dict[str, float],
) -> DetectResponse:
    """Build the response; boxes rounded to 0.1 px, scores to 4 decimals, times to 0.01 ms."""
    d = result.detections
    boxes = np.round(d.boxes.astype(np.float64), 1).tolist()
    scores = np.round(d.scores.astype(np.float64), 4).tolist()
    detections = [
        Detection(label=names[c] if 0 <= c < len(names) else str(c), class_id=c, score=s, box=b)
        for b, s, c in zip(boxes, scores, (int(c) for c in d.class_ids), strict=True)
    ]
    timings = {k: round(1000.0 * timings_s.get(k, 0.0), 2) for k in STAGES}
    return DetectResponse(
        detections=detections,
        image=ImageInfo(width=result.width, height=result.height, tiles=result.tiles),
        model=model,
        timings_ms=Timings(**timings),
    )
