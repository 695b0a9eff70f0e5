"""The served models and the detect calls: one inference queue and worker pool for the process,
shared by every model of the repository (export/repository.py).

Each model has an entry (loading -> ready, or failed / refused) in `Engine.models`; loading is
`load_source` (a child-process check, then the load and warm-up in this process), driven by
`service.reload.Reloader` at startup and on every rescan. The process is live at once and ready
when the default model is (DETECTOR_DEFAULT_MODEL, else "default", else the only model). A
request resolves its model once (`resolve`) and keeps that detector to the end, so a reload or
removal never changes the model under a request in flight; a removed model's memory is freed
when its last request finishes. Jobs of different models take turns in the queue (round robin,
service.thread_pool), so a flood of requests for one model does not starve the others.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from PIL import Image

from export.decode_budget import check_deadline
from export.errors import DeadlinePassedError, DetectorError
from export.metadata import ModelMetadata
from export.model_check import ModelCheck, ModelRefusedError, rss_bytes, warmup_sizes
from export.postprocess import PostprocessConfig, candidate_config
from export.repository import ModelSource, parse_pins, scan_folder, single_source
from export.runtime import DetectionResult
from export.runtime_choice import LoadOptions, RuntimeChoice, choose_runtime, warm_up
from service.errors import NotFoundError, NotReadyError
from service.metrics import Metrics
from service.settings import Settings, model_display_path
from service.upload import MemoryBudget
from service.worker import InferenceWorker, Reservation


class Detector(Protocol):
    metadata: ModelMetadata

    def detect_image(self, image: Image.Image, cfg: PostprocessConfig) -> DetectionResult: ...

    def detect_bytes(
        self,
        data: bytes,
        cfg: PostprocessConfig,
        max_pixels: int | None,
        deadline: float | None = None,
        tile: str | int = "off",
        max_tiles: int = 16,
    ) -> DetectionResult: ...


Loader = Callable[[Path, int], Detector]  # (model path, threads) -> detector


@dataclass
class ModelEntry:
    """One model of the repository as the service holds it now."""

    source: ModelSource
    state: str = "loading"  # "loading" | "ready" | "failed" | "refused" (DETECTOR_MAX_MODELS)
    reason: str = "model is loading"
    detector: Detector | None = None
    memory_bytes: int = 0  # resident memory the process grew by while loading it
    load_ms: float = 0.0
    last_error: str | None = None  # the latest failed reload (the loaded version serves on)

    @property
    def name(self) -> str:
        return self.source.name

    @property
    def metadata(self) -> ModelMetadata:
        assert self.detector is not None, "a ready model has a detector"
        return self.detector.metadata

    @property
    def runtime(self) -> RuntimeChoice | None:
        """How its runtime configuration was chosen (None: a custom loader's detector)."""
        return getattr(self.detector, "runtime_choice", None)

    @property
    def version(self) -> str:
        """The served version: the version folder (Triton layout), else the file's metadata."""
        if self.source.version is not None:
            return self.source.version
        return self.detector.metadata.version if self.detector is not None else ""


class Engine:
    def __init__(
        self, settings: Settings, metrics: Metrics, loader: Loader | None = None
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.loader = loader or self.load_model_file
        self.models: dict[str, ModelEntry] = {}  # replaced or changed on the event loop only
        self.empty_reason = "the service is starting"  # why there is no model at all
        self.scanned = False  # the repository has been read once
        self.pins = parse_pins(settings.model_versions)
        self.worker = InferenceWorker(
            settings.max_queue, settings.retry_after_s, on_depth=metrics.queue_depth.set,
            workers=settings.workers,
        )  # fmt: skip
        self.upload_budget = MemoryBudget(settings.max_upload_memory_bytes, settings.retry_after_s)
        self.model_check = ModelCheck(
            settings.model_load_timeout_s, settings.model_load_memory_bytes
        )

    # -- the repository -------------------------------------------------------------------

    def scan(self) -> dict[str, ModelSource]:
        """The models the repository holds now (OSError: the folder cannot be listed)."""
        if self.settings.model_dir is None:
            source = single_source(self.settings.model_path)
            return {source.name: source}
        return scan_folder(self.settings.model_dir, self.pins)

    @property
    def default_name(self) -> str | None:
        """DETECTOR_DEFAULT_MODEL, else "default" when served, else the only model."""
        if self.settings.default_model:
            return self.settings.default_model
        if "default" in self.models or len(self.models) != 1:
            return "default"
        return next(iter(self.models))

    def resolve(self, name: str | None = None) -> ModelEntry:
        """The ready model `name` (None: the default): NotFoundError (404, naming the models)
        when the repository has no such model, NotReadyError (503) when it is not ready."""
        wanted = name if name is not None else self.default_name
        entry = self.models.get(wanted) if wanted is not None else None
        if entry is None and (not self.scanned or (name is None and not self.models)):
            raise NotReadyError(f"model not ready: {self.empty_reason}")
        if entry is None:
            names = ", ".join(sorted(self.models)) or "none"
            what = f"unknown model {wanted!r}" if name is not None else (
                f"the default model {wanted!r} is not in the repository")  # fmt: skip
            raise NotFoundError(f"{what}; models: {names}")
        if entry.state != "ready" or entry.detector is None:
            raise NotReadyError(f"model not ready: {entry.name}: {entry.reason}")
        return entry

    def state(self, name: str | None = None) -> str:
        """The state of model `name` (None: the default): "loading" until it is listed."""
        wanted = name if name is not None else self.default_name
        entry = self.models.get(wanted) if wanted is not None else None
        return entry.state if entry is not None else "loading"

    @property
    def ready(self) -> bool:
        """The default model is ready; with no default (several models, none named "default"
        and no DETECTOR_DEFAULT_MODEL): every model has loaded or failed and one is ready."""
        if self.default_name in self.models or self.settings.default_model:
            try:
                self.resolve()
            except (NotFoundError, NotReadyError):
                return False
            return True
        states = [e.state for e in self.models.values()]
        return "ready" in states and "loading" not in states

    def require_ready(self) -> ModelEntry:
        """The default model (NotReadyError when it is not ready, or not in the repository)."""
        try:
            return self.resolve()
        except NotFoundError as exc:
            raise NotReadyError(f"model not ready: {exc.message}") from None

    # -- loading one model ----------------------------------------------------------------

    def load_model_file(self, path: Path, threads: int) -> Detector:
        """The default loader: the ONNX file on DETECTOR_BACKEND's runtime, once a child process
        has loaded and warmed it up within the time and memory budgets (export.model_check)."""
        s = self.settings
        self.model_check.run(path, s.backend, threads)  # ModelRefusedError: not loaded here
        # Alone, a request's model call gets every thread; beside others, its share of them.
        shared = max(1, threads // s.workers) if s.workers > 1 else None
        # DETECTOR_BACKEND=auto: the fastest configuration the file is validated on, timed
        # here with the service's thread layout (export.runtime_choice); the detector carries
        # the choice (`runtime_choice`) to its ModelEntry, /models and the metrics.
        options = LoadOptions(threads, s.spinning, shared)
        detector, choice = choose_runtime(path, s.backend, options, s.openvino_precision,
                                          s.workers, s.backend_trial_s)  # fmt: skip
        detector.runtime_choice = choice  # type: ignore[attr-defined]
        return detector

    def load_source(self, source: ModelSource) -> tuple[Detector, int]:
        """Load and warm up one model file (raises on any failure): (detector, the resident
        memory the process grew by). Changes nothing; loads are run one at a time."""
        path = source.path
        shown = model_display_path(path)
        try:
            mode = path.stat().st_mode  # OSError (symlink loop, permission): not readable
        except FileNotFoundError:
            hint = "DETECTOR_MODEL_DIR" if self.settings.model_dir else "DETECTOR_MODEL_PATH"
            raise FileNotFoundError(f"model file not found: {shown} (set {hint})") from None
        if not stat.S_ISREG(mode):
            raise ModelRefusedError("not a regular file", f"{shown} is not a regular file")
        before = rss_bytes(os.getpid())
        detector = self.loader(path, self.settings.threads)
        if self.settings.warmup:  # square, 4:3 and 3:4 photos: the common letterbox shapes
            sizes = warmup_sizes(detector.metadata.input_size)
            warm_up(detector, sizes, self.settings.workers)  # type: ignore[arg-type]
        return detector, max(0, rss_bytes(os.getpid()) - before)

    def install(self, entry: ModelEntry) -> None:
        """Serve `entry` under its name (one assignment: requests that hold the previous
        detector finish on it)."""
        self.models[entry.name] = entry
        self.models = dict(sorted(self.models.items()))
        if entry.detector is not None and entry.state == "ready":
            self.metrics.set_model(entry.name, entry.detector.metadata, entry.version,
                                   entry.memory_bytes)  # fmt: skip
            runtime = entry.runtime
            if runtime is not None:
                self.metrics.set_runtime(entry.name, runtime.backend, runtime.precision,
                                         runtime.chosen_by)  # fmt: skip
            else:
                self.metrics.clear_runtime(entry.name)
        else:
            self.metrics.model_ready.labels(model=entry.name).set(0)

    def remove(self, name: str) -> ModelEntry | None:
        """Stop serving `name`; its requests in flight finish on the detector they hold."""
        entry = self.models.pop(name, None)
        self.metrics.remove_model(name)
        return entry

    # -- requests -------------------------------------------------------------------------

    def check_capacity(self) -> None:
        """At arrival: OverloadedError now, before the body is read."""
        self.worker.check()

    def admit(self) -> Reservation:
        """A queue slot for a request whose body is complete (OverloadedError when full)."""
        return self.worker.admit()

    async def detect(
        self,
        model: ModelEntry,
        data: bytes,
        score_threshold: float,
        max_detections: int,
        deadline: float | None,
        slot: Reservation | None = None,
        then: Callable[[DetectionResult], None] | None = None,
        classes: tuple[int, ...] | None = None,
        tile: str | int = "off",
    ) -> tuple[DetectionResult, float]:
        """Run the whole pipeline (decode included) on a worker: (result, queue wait in s).

        Decoding happens on the worker too, so at most `max_queue` compressed bodies (never
        decoded images) wait in memory. Only detections scoring >= score_threshold are kept.
        `then(result)`, if given, runs on the worker right after (e.g. drawing the boxes).
        Past `deadline` the job stops at its next cancellation point (the client has had its
        504 already), so the worker is free again soon after.
        `classes`: keep only these class ids (None = all). `tile`: tiled inference (off, auto
        or an N x N grid; export/tiling.py), at most DETECTOR_MAX_TILES tiles.
        """
        detector = model.detector
        assert detector is not None, "resolve() hands out ready models only"
        cfg = candidate_config(score_threshold, max_detections, self.settings.nms_iou, classes)
        max_pixels = self.settings.max_pixels

        def job() -> DetectionResult:
            result = detector.detect_bytes(data, cfg, max_pixels, deadline=deadline,
                                           **self._tiling(tile))  # fmt: skip
            if then is not None:
                then(result)
            return result

        return await self.worker.run(job, deadline, slot, key=model.name,
                                     limit=self.pipelines(detector))

    async def detect_many(
        self,
        model: ModelEntry,
        images: Sequence[bytes | Exception],
        score_threshold: float,
        max_detections: int,
        deadline: float | None,
        slot: Reservation | None = None,
        classes: tuple[int, ...] | None = None,
        tile: str | int = "off",
    ) -> tuple[list[DetectionResult | Exception], float]:
        """Several images, one after the other in one worker job, as `detect` does one: (each
        image's result or its error, queue wait in s). An item that is already an error (it
        failed while reading) stays that error; a failing image does not stop the others."""
        detector = model.detector
        assert detector is not None, "resolve() hands out ready models only"
        cfg = candidate_config(score_threshold, max_detections, self.settings.nms_iou, classes)
        max_pixels = self.settings.max_pixels

        def job() -> list[DetectionResult | Exception]:
            out: list[DetectionResult | Exception] = []
            for item in images:
                check_deadline(deadline)  # the request is answered 504: no more images
                if isinstance(item, Exception):
                    out.append(item)
                    continue
                try:
                    out.append(detector.detect_bytes(item, cfg, max_pixels, deadline=deadline,
                                                     **self._tiling(tile)))  # fmt: skip
                except DeadlinePassedError:
                    raise
                except DetectorError as exc:
                    out.append(exc)
            return out

        return await self.worker.run(job, deadline, slot, key=model.name,
                                     limit=self.pipelines(detector))

    def pipelines(self, detector: Detector) -> int:
        """The jobs of `detector`'s model that run at once: its runtime's choice for
        DETECTOR_WORKERS (export.runtime.ImageDetector.pipelines), at most the worker's threads;
        `workers` for a detector that does not say."""
        workers = self.settings.workers
        choose = getattr(detector, "pipelines", None)
        return workers if choose is None else min(self.worker.threads, choose(workers))

    def _tiling(self, tile: str | int) -> dict[str, str | int]:
        """detect_bytes' tiling arguments (none when off: the untiled call as it always was)."""
        return {} if tile == "off" else {"tile": tile, "max_tiles": self.settings.max_tiles}

    def close(self) -> None:
        """Stop: a model check still running is killed (its load fails at once), so waiting
        for the worker is bounded whatever the file does."""
        self.model_check.cancel()
        self.worker.shutdown(wait=True)
        for name in list(self.models):
            self.metrics.model_ready.labels(model=name).set(0)
