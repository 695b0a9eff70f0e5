"""GET /models (every model of the repository and its state), /models/{name}, and /model (the
default model, as before there were several)."""

from __future__ import annotations

from fastapi import APIRouter, Request

from service.engine import ModelEntry
from service.errors import NotFoundError
from service.routes.common import ERROR_RESPONSES, engine_of
from service.schemas import ModelInfo, ModelList, ModelStatus, RuntimeInfo

router = APIRouter()


def _status(entry: ModelEntry, score_threshold: float) -> ModelStatus:
    status = ModelStatus(
        name=entry.name, version=entry.version or None, state=entry.state,
        score_threshold=score_threshold,
        reason=None if entry.state == "ready" else entry.reason, last_error=entry.last_error,
        file=entry.source.path.name, memory_bytes=entry.memory_bytes, load_ms=entry.load_ms,
    )  # fmt: skip
    if entry.detector is not None:
        m = entry.metadata
        status.backend = getattr(entry.detector, "backend", "custom")
        status.precision, status.preset, status.exported_name = m.precision, m.preset, m.name
        status.classes, status.input_size = list(m.class_names), m.input_size
        status.runtime = _runtime(entry)
    return status


def _runtime(entry: ModelEntry) -> RuntimeInfo | None:
    choice = entry.runtime
    return RuntimeInfo(**choice.summary()) if choice is not None else None


@router.get("/models", response_model=ModelList, summary="The models of the repository")
async def list_models(request: Request) -> ModelList:
    engine = engine_of(request)
    threshold = engine.settings.score_threshold
    return ModelList(default=engine.default_name,
                     models=[_status(e, threshold) for e in engine.models.values()])  # fmt: skip


@router.get("/models/{name}", response_model=ModelStatus, responses={404: ERROR_RESPONSES[404]},
            summary="One model of the repository")  # fmt: skip
async def get_model(request: Request, name: str) -> ModelStatus:
    engine = engine_of(request)
    entry = engine.models.get(name)
    if entry is None:
        names = ", ".join(engine.models) or "none"
        raise NotFoundError(f"unknown model {name[:64]!r}; models: {names}")
    return _status(entry, engine.settings.score_threshold)


@router.get("/model", response_model=ModelInfo, responses={503: ERROR_RESPONSES[503]},
            summary="The default model")  # fmt: skip
async def model_info(request: Request) -> ModelInfo:
    engine = engine_of(request)
    entry = engine.require_ready()
    info = ModelInfo.from_metadata(entry.name, entry.version, entry.metadata,
                                   engine.settings.score_threshold)  # fmt: skip
    info.runtime = _runtime(entry)
    return info
