"""What export.client returns (dataclasses) and how it reads the service's JSON bodies into them.

Parsing is tolerant: fields a newer service adds are ignored, and optional fields an older one
lacks get their defaults. Torch-free; needs httpx only for `error_from`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import httpx

Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class Detection:
    label: str
    class_id: int
    score: float
    box: Box  # x1, y1, x2, y2 in original-image pixels


@dataclass(frozen=True)
class DetectResult:
    detections: list[Detection]
    width: int
    height: int
    model_name: str  # the model's name in the repository (what `model=` picks)
    model_version: str
    timings_ms: dict[str, float] = field(default_factory=dict)
    tiles: int = 0  # tiles run through the model (tiled inference; 0: untiled)


@dataclass(frozen=True)
class ModelInfo:
    """A ready model: `GET /model` (the default model) or a ready entry of `GET /models/{name}`."""

    name: str  # the model's name in the repository (what `model=` picks)
    version: str
    preset: str
    precision: str
    classes: list[str]
    input_size: int
    exported_name: str = ""  # the name written into the ONNX file at export
    # the service's default score threshold (GET /model only; None: not given)
    score_threshold: float | None = None
    # how its runtime was chosen: config, backend, precision, chosen_by, reason, timings_ms,
    # skipped, validation (None: an older service)
    runtime: dict[str, Any] | None = None


@dataclass(frozen=True)
class ModelStatus:
    """One model of the repository as `GET /models` lists it; the fields after `file` are
    known once the model has loaded (None / empty before, or when its load failed)."""

    name: str
    version: str | None
    state: str  # loading | ready | failed | refused
    reason: str | None = None  # why it is not ready
    last_error: str | None = None  # the latest failed reload (the loaded version serves on)
    file: str = ""
    backend: str | None = None
    precision: str | None = None
    preset: str | None = None
    exported_name: str | None = None
    classes: list[str] = field(default_factory=list)
    input_size: int | None = None
    memory_bytes: int = 0
    load_ms: float = 0.0
    runtime: dict[str, Any] | None = None  # as ModelInfo.runtime, once loaded

    @property
    def ready(self) -> bool:
        return self.state == "ready"


class DetectorAPIError(Exception):
    """An error answered by the service: `{"error": {"code", "message"}}` and its status."""

    def __init__(self, status: int, code: str, message: str, retry_after: float | None = None):
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message, self.retry_after = status, code, message, retry_after


def error_from(response: httpx.Response) -> DetectorAPIError:
    try:
        err = response.json()["error"]
        code, message = (err["code"], err["message"]) if isinstance(err, dict) else ("error", err)
    except (ValueError, KeyError, TypeError):
        code, message = "http_error", response.text[:500]
    retry = response.headers.get("retry-after")
    return DetectorAPIError(response.status_code, str(code), str(message),
                            float(retry) if retry and retry.isdigit() else None)  # fmt: skip


def parse_detect(body: dict[str, Any]) -> DetectResult:
    dets = [Detection(d["label"], int(d["class_id"]), float(d["score"]),
                      (d["box"][0], d["box"][1], d["box"][2], d["box"][3]))
            for d in body["detections"]]  # fmt: skip
    return DetectResult(dets, body["image"]["width"], body["image"]["height"],
                        body["model"]["name"], body["model"]["version"],
                        dict(body.get("timings_ms", {})),
                        int(body["image"].get("tiles", 0)))  # fmt: skip


def parse_batch(body: dict[str, Any]) -> list[DetectResult | DetectorAPIError]:
    out: list[DetectResult | DetectorAPIError] = []
    for item in body["results"]:
        if item.get("result") is not None:
            out.append(parse_detect(item["result"]))
        else:
            err = item["error"]
            out.append(DetectorAPIError(item["status"], err["code"], err["message"]))
    return out


def parse_model(body: dict[str, Any]) -> ModelInfo:
    threshold = body.get("score_threshold")
    return ModelInfo(body["name"], body["version"], body["preset"], body["precision"],
                     list(body["classes"]), int(body["input_size"]),
                     str(body.get("exported_name") or ""),
                     None if threshold is None else float(threshold),
                     _runtime(body))  # fmt: skip


def _runtime(body: dict[str, Any]) -> dict[str, Any] | None:
    runtime = body.get("runtime")
    return dict(runtime) if isinstance(runtime, dict) else None


def parse_status(body: dict[str, Any]) -> ModelStatus:
    def opt(key: str) -> str | None:
        value = body.get(key)
        return None if value is None else str(value)

    size = body.get("input_size")
    return ModelStatus(
        name=str(body["name"]), version=opt("version"), state=str(body["state"]),
        reason=opt("reason"), last_error=opt("last_error"), file=str(body.get("file") or ""),
        backend=opt("backend"), precision=opt("precision"), preset=opt("preset"),
        exported_name=opt("exported_name"), classes=list(body.get("classes") or []),
        input_size=None if size is None else int(size),
        memory_bytes=int(body.get("memory_bytes") or 0), load_ms=float(body.get("load_ms") or 0),
        runtime=_runtime(body),
    )  # fmt: skip


def parse_models(body: dict[str, Any]) -> list[ModelStatus]:
    return [parse_status(m) for m in body["models"]]


def ready_model(status: ModelStatus) -> ModelInfo:
    """A `GET /models/{name}` entry as ModelInfo; DetectorAPIError 503 `not_ready` (as the
    service answers a request for it) when the model is not ready."""
    if not status.ready or status.preset is None or status.precision is None:
        raise DetectorAPIError(503, "not_ready", f"model not ready: {status.name} is "
                               f"{status.state}: {status.reason or 'no reason given'}")  # fmt: skip
    return ModelInfo(status.name, status.version or "", status.preset, status.precision,
                     list(status.classes), int(status.input_size or 0),
                     status.exported_name or "", runtime=status.runtime)  # fmt: skip
