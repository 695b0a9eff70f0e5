"""Model reload without downtime: SIGHUP, or POST /admin/reload (opt-in: DETECTOR_ADMIN_RELOAD).

The file at DETECTOR_MODEL_PATH is loaded and warmed up off the inference worker, then swapped
in with one assignment: requests that already hold the previous model finish on it, later ones
get the new one, and none waits for the load. A file that fails to load (missing, corrupt, no
metadata, hostile: see export.model_check) is refused with a log line and the previous model
keeps serving. One reload at a time; SIGHUPs that arrive while one is waiting to start add
nothing (at most one more reload runs after the current one: it reads the file anew anyway).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from fastapi import APIRouter, Request
from prometheus_client import Counter
from pydantic import BaseModel

from export.model_check import describe_failure
from service.engine import Engine
from service.errors import NotFoundError, ReloadFailedError, UnauthorizedError
from service.metrics import Metrics
from service.schemas import ErrorResponse, ModelRef
from service.settings import model_display_path

log = logging.getLogger("service.reload")
router = APIRouter()
T = TypeVar("T")


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
        self._sighup_waiting = False  # a SIGHUP reload is queued and has not started yet

    async def reload(self, trigger: str) -> ReloadResponse:
        """Load, warm up and swap in the model file; ReloadFailedError keeps the old one."""
        async with self._lock:
            if trigger == "SIGHUP":
                self._sighup_waiting = False  # from now on, a SIGHUP queues one more
            if self.startup is not None and not self.startup.done():
                await asyncio.shield(self.startup)  # never race the initial load
            engine = self.engine
            shown = model_display_path(engine.settings.model_path)
            old = engine.detector.metadata if engine.detector is not None else None
            t0 = time.perf_counter()
            try:
                detector = await in_daemon_thread(engine.load_and_warm_up)
            except Exception as exc:
                self.reloads.labels(result="failed").inc()
                kind, reason = describe_failure(exc)
                kept = f"{old.name} {old.version}" if old else "no model"
                log.error("model reload refused, still serving %s: cannot load %s: %s",
                          kept, shown, reason, extra={"trigger": trigger})  # fmt: skip
                # the client gets the file name and the kind of failure in our words; the log
                # has the library's message
                name = Path(engine.settings.model_path).name
                message = f"cannot load {name}: {kind}; still serving {kept}"
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
        if self._sighup_waiting:  # the queued reload will read the file as it is now
            log.info("SIGHUP: a reload is already queued")
            return
        self._sighup_waiting = True
        task = asyncio.ensure_future(self.reload("SIGHUP"))
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[ReloadResponse]) -> None:
        self._tasks.discard(task)
        if not task.cancelled():
            task.exception()  # already logged by reload(); keep asyncio quiet


async def in_daemon_thread(fn: Callable[[], T]) -> T:
    """`await fn()` run on a new daemon thread: unlike asyncio.to_thread's pool, nothing waits
    for it when the process stops (asyncio.run joins its default executor, the interpreter
    joins non-daemon threads), so a stuck load can never hold up the exit."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[T] = loop.create_future()

    def target() -> None:
        result: T | None = None
        error: BaseException | None = None
        try:
            result = fn()
        except BaseException as exc:  # handed to the awaiting task
            error = exc
        with contextlib.suppress(RuntimeError):  # the loop has closed: nobody waits
            loop.call_soon_threadsafe(_settle, done, result, error)

    threading.Thread(target=target, name="model-reload", daemon=True).start()
    return await done


def _settle(done: asyncio.Future[T], result: T | None, error: BaseException | None) -> None:
    if done.done():  # the awaiting task was cancelled
        return
    if error is not None:
        done.set_exception(error)
    else:
        done.set_result(result)  # type: ignore[arg-type]


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
        # RFC 7235: the scheme is case-insensitive ("bearer" is as good as "Bearer")
        scheme, _, given = request.headers.get("authorization", "").strip().partition(" ")
        expected = settings.admin_token.get_secret_value()
        token_ok = hmac.compare_digest(given.strip().encode(), expected.encode())
        if not (token_ok and scheme.lower() == "bearer"):
            raise UnauthorizedError("a valid 'Authorization: Bearer <token>' header is required",
                                    headers={"WWW-Authenticate": "Bearer"})  # fmt: skip
    reloader: Reloader = request.app.state.reloader
    return await reloader.reload("admin")
