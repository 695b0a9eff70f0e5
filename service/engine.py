"""The model's lifecycle (load -> warm up -> ready, or failed) and the detect call.

Loading runs on an inference worker thread in the background, so the process answers
liveness at once; readiness turns 200 only after the model is loaded and dummy inferences
have run. A missing or unreadable model leaves the service alive and not ready, with one clear
log line saying why.
"""

from __future__ import annotations

import logging
import stat
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from PIL import Image

from export.backends import load_detector
from export.decode_budget import check_deadline
from export.errors import DeadlinePassedError, DetectorError
from export.metadata import ModelMetadata
from export.model_check import ModelCheck, ModelRefusedError, describe_failure, warmup_sizes
from export.postprocess import PostprocessConfig, candidate_config
from export.runtime import DetectionResult
from service.errors import NotReadyError
from service.metrics import Metrics
from service.settings import Settings, model_display_path
from service.upload import MemoryBudget
from service.worker import InferenceWorker, Reservation

log = logging.getLogger("service.engine")


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
class ModelStatus:
    state: str = "loading"  # "loading" | "ready" | "failed"
    reason: str = "model is loading"


class Engine:
    def __init__(
        self, settings: Settings, metrics: Metrics, loader: Loader | None = None
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.loader = loader or self.load_model_file
        self.detector: Detector | None = None
        self.status = ModelStatus()
        self.worker = InferenceWorker(
            settings.max_queue, settings.retry_after_s, on_depth=metrics.queue_depth.set,
            workers=settings.workers,
        )  # fmt: skip
        self.upload_budget = MemoryBudget(settings.max_upload_memory_bytes, settings.retry_after_s)
        self.model_check = ModelCheck(
            settings.model_load_timeout_s, settings.model_load_memory_bytes
        )
        metrics.model_ready.set(0)

    def load_model_file(self, path: Path, threads: int) -> Detector:
        """The default loader: the ONNX file on DETECTOR_BACKEND's runtime, once a child process
        has loaded and warmed it up within the time and memory budgets (export.model_check)."""
        s = self.settings
        self.model_check.run(path, s.backend, threads)  # ModelRefusedError: not loaded here
        # Alone, a request's model call gets every thread; beside others, its share of them.
        shared = max(1, threads // s.workers) if s.workers > 1 else None
        return load_detector(path, s.backend, threads, s.spinning, s.openvino_precision, shared)

    @property
    def ready(self) -> bool:
        return self.status.state == "ready"

    def require_ready(self) -> Detector:
        if not self.ready or self.detector is None:
            raise NotReadyError(f"model not ready: {self.status.reason}")
        return self.detector

    async def load(self) -> None:
        """Load and warm up on the worker thread; never raises (failure -> not ready)."""
        await self.worker.call(self._load_blocking)

    def load_and_warm_up(self) -> Detector:
        """Load DETECTOR_MODEL_PATH and warm it up (raises on any failure); changes nothing."""
        path = Path(self.settings.model_path)
        shown = model_display_path(path)
        try:
            mode = path.stat().st_mode  # OSError (symlink loop, permission): not readable
        except FileNotFoundError:
            raise FileNotFoundError(
                f"model file not found: {shown} (set DETECTOR_MODEL_PATH)"
            ) from None
        if not stat.S_ISREG(mode):
            raise ModelRefusedError("not a regular file", f"{shown} is not a regular file")
        detector = self.loader(path, self.settings.threads)
        if self.settings.warmup:  # square, 4:3 and 3:4 photos: the common letterbox shapes
            for w, h in warmup_sizes(detector.metadata.input_size):
                detector.detect_image(Image.new("RGB", (w, h)), PostprocessConfig())
        return detector

    def install(self, detector: Detector) -> None:
        """Make `detector` the one that serves (one assignment: requests that already hold the
        previous one finish on it)."""
        self.detector = detector
        self.metrics.set_model(detector.metadata)
        self.metrics.model_ready.set(1)
        self.status = ModelStatus("ready", "ok")

    def _load_blocking(self) -> None:
        path = Path(self.settings.model_path)
        shown = model_display_path(path)
        t0 = time.perf_counter()
        try:
            detector = self.load_and_warm_up()
        except Exception as exc:  # any failure leaves the service alive and not ready
            # Clients (GET /health/ready) see the file name and the kind of failure in our
            # words; the log has the path and the library's own message.
            kind, detail = describe_failure(exc)
            found = not isinstance(exc, FileNotFoundError)
            public = f"cannot load model {path.name}: {kind}" if found else (
                f"model file not found: {path.name} (set DETECTOR_MODEL_PATH)")  # fmt: skip
            self.status = ModelStatus("failed", public)
            detail = f"cannot load model {shown}: {detail}" if found else str(exc)
            log.error("model not loaded, service stays not ready: %s", detail)
            return
        self.install(detector)
        m = detector.metadata
        load_ms = round(1000 * (time.perf_counter() - t0), 1)
        log.info(
            "model ready",
            extra={"model_path": shown, "model_name": m.name, "model_version": m.version,
                   "preset": m.preset, "precision": m.precision, "load_ms": load_ms,
                   "backend": getattr(detector, "backend", "custom"),
                   "threads": self.settings.threads, "workers": self.settings.workers,
                   "spinning": self.settings.spinning},
        )  # fmt: skip

    def check_capacity(self) -> None:
        """At arrival: NotReadyError / OverloadedError now, before the body is read."""
        self.require_ready()
        self.worker.check()

    def admit(self) -> Reservation:
        """A queue slot for a request whose body is complete (OverloadedError when full)."""
        self.require_ready()
        return self.worker.admit()

    async def detect(
        self,
        data: bytes,
        score_threshold: float,
        max_detections: int,
        deadline: float | None,
        slot: Reservation | None = None,
        then: Callable[[DetectionResult], None] | None = None,
        classes: tuple[int, ...] | None = None,
        tile: str | int = "off",
    ) -> tuple[DetectionResult, float]:
        """Run the whole pipeline (decode included) on the worker: (result, queue wait in s).

        Decoding happens on the worker too, so at most `max_queue` compressed bodies (never
        decoded images) wait in memory. Only detections scoring >= score_threshold are kept.
        `then(result)`, if given, runs on the worker right after (e.g. drawing the boxes).
        Past `deadline` the job stops at its next cancellation point (the client has had its
        504 already), so the worker is free again soon after.
        `classes`: keep only these class ids (None = all). `tile`: tiled inference (off, auto
        or an N x N grid; export/tiling.py), at most DETECTOR_MAX_TILES tiles.
        """
        detector = self.require_ready()
        cfg = candidate_config(score_threshold, max_detections, self.settings.nms_iou, classes)
        max_pixels = self.settings.max_pixels

        def job() -> DetectionResult:
            # scores >= score_threshold only; past the deadline the job stops (DeadlinePassedError)
            result = detector.detect_bytes(data, cfg, max_pixels, deadline=deadline,
                                           **self._tiling(tile))  # fmt: skip
            if then is not None:
                then(result)
            return result

        return await self.worker.run(job, deadline, slot)

    async def detect_many(
        self,
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
        detector = self.require_ready()
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

        return await self.worker.run(job, deadline, slot)

    def _tiling(self, tile: str | int) -> dict[str, str | int]:
        """detect_bytes' tiling arguments (none when off: the untiled call as it always was)."""
        return {} if tile == "off" else {"tile": tile, "max_tiles": self.settings.max_tiles}

    def close(self) -> None:
        """Stop: a model check still running is killed (its load fails at once), so waiting
        for the worker is bounded whatever the file does."""
        self.model_check.cancel()
        self.worker.shutdown(wait=True)
        self.metrics.model_ready.set(0)
