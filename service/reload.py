"""Keeping the served models in step with the repository without downtime: at startup, on
SIGHUP and on POST /admin/reload (opt-in: DETECTOR_ADMIN_RELOAD; service/routes/admin.py).

A rescan reads the repository (export/repository.py) and compares it with what is served:
added files load, removed ones stop serving (their requests in flight finish on the model they
hold), changed ones (another file identity: inode, size or mtime) load anew and swap in with one
assignment. Unchanged models are left alone; one that failed before is tried again. Each file
is first loaded and warmed up in a child process (export.model_check), then here, off the
inference workers, so traffic never waits for a load. A file that fails to load is refused with
a log line, `detector_model_reloads_total{result="failed"}` and its `last_error` in /models; an
older version of it keeps serving. At most DETECTOR_MAX_MODELS are loaded (the default model
first); the rest are listed as refused. One rescan at a time; SIGHUPs that arrive while one is
waiting to start add nothing (at most one more runs after the current one).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from pydantic import BaseModel

from export.model_check import describe_failure
from export.repository import ModelSource
from service.api_keys import ApiKeys
from service.engine import Engine, ModelEntry
from service.errors import ReloadFailedError
from service.settings import model_display_path

log = logging.getLogger("service.reload")
T = TypeVar("T")


class ModelChange(BaseModel):
    name: str
    action: str  # "added" | "changed" | "removed" | "failed" | "refused"
    version: str | None = None
    previous_version: str | None = None
    load_ms: float | None = None
    error: str | None = None


class ReloadResponse(BaseModel):
    status: str  # "reloaded" (every change applied) | "unchanged"
    changes: list[ModelChange]
    models: list[str]


@dataclass
class Reloader:
    engine: Engine
    keys: ApiKeys | None = None  # a keys file is re-read on every rescan
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _tasks: set[asyncio.Task[ReloadResponse]] = field(default_factory=set)
    _sighup_waiting: bool = False  # a SIGHUP rescan is queued and has not started yet

    async def reload(self, trigger: str) -> ReloadResponse:
        """Rescan and apply; ReloadFailedError (409) when a file failed to load (every other
        change is applied, and the failed model's older version keeps serving)."""
        async with self._lock:
            if trigger == "SIGHUP":
                self._sighup_waiting = False  # from now on, a SIGHUP queues one more
            if self.keys is not None and trigger != "startup":
                self.keys.refresh()
            changes = await self._rescan(trigger)
            log.info("model repository rescanned", extra={
                "trigger": trigger, "changes": len(changes), "models": len(self.engine.models)})
        failed = [c for c in changes if c.action == "failed"]
        if failed and trigger != "startup":
            raise ReloadFailedError("; ".join(f"{c.name}: {c.error}" for c in failed))
        return ReloadResponse(status="reloaded" if changes else "unchanged", changes=changes,
                              models=list(self.engine.models))  # fmt: skip

    async def _rescan(self, trigger: str) -> list[ModelChange]:
        engine = self.engine
        try:
            sources = engine.scan()
        except OSError as exc:
            where = model_display_path(engine.settings.model_dir or "")
            engine.empty_reason = f"cannot read the model folder {where}"
            log.error("model folder not readable, models unchanged: %s: %s", where, exc)
            return [ModelChange(name="*", action="failed", error="model folder not readable")]
        engine.empty_reason = "no model in the repository" if not sources else engine.empty_reason
        changes = [self._removed(name) for name in list(engine.models) if name not in sources]
        default = engine.settings.default_model or "default"
        served = {n for n, e in engine.models.items() if e.state == "ready"}
        # the default first, then the models already served (a new file never evicts one)
        order = sorted(sources.values(),
                       key=lambda s: (s.name != default, s.name not in served, s.name))  # fmt: skip
        for source in order[: engine.settings.max_models]:
            if source.name not in engine.models:
                engine.install(ModelEntry(source))  # listed as loading until its turn
        engine.scanned = True
        loaded = 0
        for source in order:
            current = engine.models.get(source.name)
            if loaded >= engine.settings.max_models:
                changes.append(self._refuse(source, current))
                continue
            loaded += 1
            same = current is not None and current.source.identity == source.identity
            if same and current is not None and current.state == "ready":
                continue
            changes.append(await self._load(source, current, trigger))
        return changes

    def _removed(self, name: str) -> ModelChange:
        entry = self.engine.remove(name)
        version = entry.version if entry is not None else None
        log.info("model removed", extra={"model": name, "model_version": version})
        return ModelChange(name=name, action="removed", previous_version=version)

    def _refuse(self, source: ModelSource, current: ModelEntry | None) -> ModelChange:
        limit = self.engine.settings.max_models
        reason = f"not loaded: DETECTOR_MAX_MODELS ({limit}) models are loaded"
        if current is not None and current.state == "refused":
            return ModelChange(name=source.name, action="refused", error=reason)
        if current is not None:
            self.engine.remove(source.name)
        self.engine.install(ModelEntry(source, "refused", reason))
        log.error("model %s refused: %s", source.name, reason)
        return ModelChange(name=source.name, action="refused", error=reason)

    async def _load(
        self, source: ModelSource, current: ModelEntry | None, trigger: str
    ) -> ModelChange:
        engine, name = self.engine, source.name
        shown = model_display_path(source.path)
        serving = current is not None and current.state == "ready"
        t0 = time.perf_counter()
        try:
            detector, memory = await in_daemon_thread(lambda: engine.load_source(source))
        except Exception as exc:  # any failure: refused, the older version (if any) serves on
            kind, detail = describe_failure(exc)
            public = f"cannot load {source.path.name}: {kind}"
            engine.metrics.reloads.labels(model=name, result="failed").inc()
            if serving:
                assert current is not None
                current.last_error = f"{public}; still serving {name} {current.version}"
                log.error("model reload refused, still serving %s %s: cannot load %s: %s",
                          name, current.version, shown, detail,
                          extra={"trigger": trigger})  # fmt: skip
                return ModelChange(name=name, action="failed", error=current.last_error,
                                   version=current.version)  # fmt: skip
            engine.install(ModelEntry(source, "failed", public))
            found = not isinstance(exc, FileNotFoundError)  # its message has path and hint
            detail = f"cannot load model {shown}: {detail}" if found else str(exc)
            log.error("model %s not loaded: %s", name, detail, extra={"trigger": trigger})
            return ModelChange(name=name, action="failed", error=public)
        load_ms = round(1000 * (time.perf_counter() - t0), 1)
        entry = ModelEntry(source, "ready", "ok", detector, memory, load_ms)
        engine.install(entry)
        if trigger != "startup":
            engine.metrics.reloads.labels(model=name, result="ok").inc()
        m = detector.metadata
        previous = current.version if serving and current is not None else None
        runtime = entry.runtime  # DETECTOR_BACKEND=auto: the choice and each candidate's ms
        chosen = {} if runtime is None else {
            "runtime": runtime.config, "runtime_chosen_by": runtime.chosen_by,
            "runtime_reason": runtime.reason, "runtime_timings_ms": runtime.timings_ms,
            "runtime_skipped": runtime.skipped, "runtime_trial_ms": runtime.trial_ms}  # fmt: skip
        log.info("model ready", extra={
            "trigger": trigger, "model": name, "model_path": shown, "model_name": m.name,
            "model_version": entry.version, "previous_version": previous, "preset": m.preset,
            "precision": m.precision, "load_ms": load_ms, "memory_bytes": memory,
            "backend": getattr(detector, "backend", "custom"),
            "threads": engine.settings.threads, "workers": engine.settings.workers,
            "pipelines": engine.pipelines(detector), **chosen,
        })  # fmt: skip
        return ModelChange(name=name, action="changed" if serving else "added",
                           version=entry.version, previous_version=previous,
                           load_ms=load_ms)  # fmt: skip

    def on_sighup(self) -> None:
        if self._sighup_waiting:  # the queued rescan will read the folder as it is then
            log.info("SIGHUP: a reload is already queued")
            return
        self._sighup_waiting = True
        self.start("SIGHUP")

    def start(self, trigger: str) -> asyncio.Task[ReloadResponse]:
        """A rescan in the background (startup, SIGHUP)."""
        task = asyncio.ensure_future(self.reload(trigger))
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

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

    threading.Thread(target=target, name="model-load", daemon=True).start()
    return await done


def _settle(done: asyncio.Future[T], result: T | None, error: BaseException | None) -> None:
    if done.done():  # the awaiting task was cancelled
        return
    if error is not None:
        done.set_exception(error)
    else:
        done.set_result(result)  # type: ignore[arg-type]


def install_sighup(reloader: Reloader) -> bool:
    """Rescan on SIGHUP (main thread's event loop only: False elsewhere, e.g. TestClient)."""
    try:
        asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, reloader.on_sighup)
    except (ValueError, RuntimeError, NotImplementedError, AttributeError):
        return False
    return True


def remove_sighup() -> None:
    with contextlib.suppress(ValueError, RuntimeError, NotImplementedError, AttributeError):
        asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
