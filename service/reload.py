"""Model reload without downtime: SIGHUP, or POST /admin/reload (opt-in: DETECTOR_ADMIN_RELOAD).

The file at DETECTOR_MODEL_PATH is loaded and warmed up off the inference worker, then swapped
in with one assignment: requests that already hold the previous model finish on it, later ones
get the new one, and none waits for the load. A file that fails to load (missing, corrupt, no
metadata) is refused with a log line and the previous model keeps serving. One reload at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from fastapi import APIRouter, Request
from prometheus_client import Counter
from pydantic import BaseModel

from service.engine import Engine
from service.errors import NotFoundError, ReloadFailedError, UnauthorizedError
from service.metrics import Metrics
from service.schemas import ErrorResponse, ModelRef
from service.settings import model_display_path

log = logging.getLogger("service.reload")
router = APIRouter()


class ReloadResponse(BaseModel):
    status: str
    model: ModelRef
    previous: ModelRef | None
    load_ms: float


@dataclass
class Reloader:
    engine: Engine
    reloads: Counter
    startup: asyncio.Task[None] | None = None

    def __post_init__(self) -> None:
        self._lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[ReloadResponse]] = set()

    async def reload(self, trigger: str) -> ReloadResponse:
        """Load, warm up and swap in the model file; ReloadFailedError keeps the old one."""
        async with self._lock:
            if self.startup is not None and not self.startup.done():
                await asyncio.shield(self.startup)  # never race the initial load
            engine = self.engine
            shown = model_display_path(engine.settings.model_path)
            old = engine.detector.metadata if engine.detector is not None else None
            t0 = time.perf_counter()
            try:
                detector = await asyncio.to_thread(engine.load_detector)
            except Exception as exc:
                self.reloads.labels(result="failed").inc()
                reason = f"{type(exc).__name__}: {exc}"
                kept = f"{old.name} {old.version}" if old else "no model"
                log.error("model reload refused, still serving %s: cannot load %s: %s",
                          kept, shown, reason, extra={"trigger": trigger})  # fmt: skip
                # the client gets the file name and the kind of failure; the log has the rest
                name = Path(engine.settings.model_path).name
                message = f"cannot load {name}: {type(exc).__name__}; still serving {kept}"
                raise ReloadFailedError(message) from None
            engine.install(detector)
            self.reloads.labels(result="ok").inc()
            new = detector.metadata
            load_ms = round(1000 * (time.perf_counter() - t0), 1)
            log.info("model reloaded", extra={
                "trigger": trigger, "model_path": shown, "model_name": new.name,
                "model_version": new.version, "previous_version": old.version if old else None,
                "load_ms": load_ms,
            })  # fmt: skip
            return ReloadResponse(
                status="reloaded", model=ModelRef(name=new.name, version=new.version),
                previous=ModelRef(name=old.name, version=old.version) if old else None,
                load_ms=load_ms,
            )  # fmt: skip

    def on_sighup(self) -> None:
        task = asyncio.ensure_future(self.reload("SIGHUP"))
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[ReloadResponse]) -> None:
        self._tasks.discard(task)
        if not task.cancelled():
            task.exception()  # already logged by reload(); keep asyncio quiet


def reload_counter(metrics: Metrics) -> Counter:
    counter = Counter("detector_model_reloads", "Model reloads (SIGHUP or /admin/reload)",
                      ["result"], registry=metrics.registry)  # fmt: skip
    for result in ("ok", "failed"):
        counter.labels(result=result)
    return counter


def install_sighup(reloader: Reloader) -> bool:
    """Reload on SIGHUP (main thread's event loop only: False elsewhere, e.g. TestClient)."""
    try:
        asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, reloader.on_sighup)
    except (ValueError, RuntimeError, NotImplementedError, AttributeError):
        return False
    return True


def remove_sighup() -> None:
    with contextlib.suppress(ValueError, RuntimeError, NotImplementedError, AttributeError):
        asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)


_RELOAD_ERRORS: dict[int | str, dict[str, object]] = {
    code: {"model": ErrorResponse, "description": text}
    for code, text in (
        (401, "DETECTOR_ADMIN_TOKEN is set and the bearer token is missing or wrong"),
        (404, "admin reload is disabled (DETECTOR_ADMIN_RELOAD=false, the default)"),
        (409, "the new file could not be loaded: the previous model keeps serving"),
    )
}


@router.post(
    "/admin/reload",
    response_model=ReloadResponse,
    responses=_RELOAD_ERRORS,
    summary="Reload DETECTOR_MODEL_PATH without downtime (opt-in, like SIGHUP)",
)
async def admin_reload(request: Request) -> ReloadResponse:
    settings = request.app.state.settings
    if not settings.admin_reload:
        raise NotFoundError("not found: admin reload is disabled (DETECTOR_ADMIN_RELOAD)")
    if settings.admin_token is not None:
        given = request.headers.get("authorization", "")
        expected = f"Bearer {settings.admin_token.get_secret_value()}"
        if not hmac.compare_digest(given.encode(), expected.encode()):
            raise UnauthorizedError("a valid 'Authorization: Bearer <token>' header is required",
                                    headers={"WWW-Authenticate": "Bearer"})  # fmt: skip
    reloader: Reloader = request.app.state.reloader
    return await reloader.reload("admin")
