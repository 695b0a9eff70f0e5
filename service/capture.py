"""Capture: keep some of the images users send, with the model's detections as pre-labels, to
label and train on later (opt-in: DETECTOR_CAPTURE_DIR; off by default). It stores user images.

Which images (per model of the repository; DETECTOR_CAPTURE_MODELS narrows the models):
  unsure  the image's best detection score lies in [CAPTURE_UNSURE_LOW, CAPTURE_UNSURE_HIGH)
  empty   no detection at all (CAPTURE_EMPTY)
  sample  else, a random CAPTURE_SAMPLE_RATE of the requests
The scores are those of the detections the client got: the request's threshold has applied (a
detection under it is never seen), so the unsure band starts at max(threshold, LOW) and an
image whose objects all scored under the threshold counts as empty.
Then at most CAPTURE_MAX_PER_MINUTE captures per model in any 60 s (a sliding window).

The request path only decides and hands references over (`offer`: no copy, no decode, no
hashing, never an exception); one writer thread stores them (service.capture_store: hidden
temporary files renamed into place, the disk budget) in the format of service.capture_layout.
A full queue, the rate cap or a disk error drop the capture, never the request; each capture
counts once in `detector_captures_total{model, result}`, and each capture removed to stay
within DETECTOR_CAPTURE_MAX_BYTES counts as `evicted` under its own model.
"""

from __future__ import annotations

import logging
import queue
import random
import threading
import time
from collections import deque
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from export.runtime import DetectionResult
from service.capture_layout import CaptureItem, capture_files
from service.capture_store import CaptureStore, CaptureTooLargeError
from service.metrics import CAPTURE_RESULTS, Metrics
from service.settings import Settings

log = logging.getLogger("service.capture")

WINDOW_S = 60.0  # the rate cap's window
STOP_TIMEOUT_S = 10.0  # at shutdown, how long the writer may take to store what is queued


def parse_models(value: str) -> frozenset[str] | None:
    """DETECTOR_CAPTURE_MODELS -> the names (None: every model)."""
    names = frozenset(n.strip() for n in value.split(",") if n.strip())
    return names or None


class Capture:
    """The capture policy, its bounded queue and its writer thread (start/stop in the app's
    lifespan). `clock` (monotonic seconds, the rate cap), `rng` (the sample draw) and `now`
    (the captures' time) are injectable for tests."""

    def __init__(
        self,
        settings: Settings,
        metrics: Metrics,
        clock: Callable[[], float] = time.monotonic,
        rng: Callable[[], float] = random.random,
        now: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.clock, self.rng, self.now = clock, rng, now
        self.root = settings.capture_dir
        self.models = parse_models(settings.capture_models)
        self.queue: queue.Queue[CaptureItem | None] = queue.Queue(settings.capture_queue)
        self.store = CaptureStore(self.root, settings.capture_max_bytes) if self.root else None
        self._windows: dict[str, deque[float]] = {}  # per model: times of recent captures
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    @property
    def enabled(self) -> bool:
        return self.root is not None

    def captures(self, model: str) -> bool:
        """Whether requests to `model` may be captured."""
        return self.root is not None and (self.models is None or model in self.models)

    # -- the request path -----------------------------------------------------------------

    def reason(self, result: DetectionResult) -> str | None:
        """Why this result is captured (unsure, empty, sample), or None."""
        s = self.settings
        scores = result.detections.scores
        if len(scores) == 0:
            if s.capture_empty:
                return "empty"
        elif s.capture_unsure_low <= float(scores.max()) < s.capture_unsure_high:
            return "unsure"
        if s.capture_sample_rate > 0.0 and self.rng() < s.capture_sample_rate:
            return "sample"
        return None

    def offer(
        self,
        model: str,
        version: str,
        class_names: tuple[str, ...],
        route: str,
        data: bytes,
        result: DetectionResult,
        score_threshold: float,
        max_detections: int,
        tile: str | int = "off",
        classes: tuple[int, ...] | None = None,
        request_id: str | None = None,
    ) -> None:
        """Capture this image (`data`, as uploaded; `result`, its detections as answered
        with these request options) if the policy says so: queued for the writer, or dropped
        and counted. Cheap, and never raises."""
        try:
            if not self.captures(model):
                return
            why = self.reason(result)
            if why is None:
                return
            thresholds: dict[str, Any] = {
                "score_threshold": score_threshold, "max_detections": max_detections,
                "tile": tile, "nms_iou": self.settings.nms_iou,
                "classes": None if classes is None else [class_names[c] for c in classes],
            }  # fmt: skip
            item = CaptureItem(model, version, class_names, route, self.now(), why, data,
                               result.width, result.height, result.detections, thresholds,
                               request_id)  # fmt: skip
            self._enqueue(item)
        except Exception:  # a bug here must not fail the request
            log.exception("capture failed", extra={"request_id": request_id})
            self._count(model, "error")

    def _enqueue(self, item: CaptureItem) -> None:
        with self._lock:
            window = self._windows.get(item.model)
            if window is None:
                window = self._windows[item.model] = deque()
                self._init_series(item.model)
            cap = self.settings.capture_max_per_minute
            if cap:
                now = self.clock()
                while window and now - window[0] >= WINDOW_S:
                    window.popleft()
                if len(window) >= cap:
                    self._count(item.model, "dropped_rate_limit")
                    return
                window.append(now)
            try:
                self.queue.put_nowait(item)
            except queue.Full:
                if cap:
                    window.pop()  # not captured: it does not use up the rate
                self._count(item.model, "dropped_queue_full")

    # -- the writer -----------------------------------------------------------------------

    def start(self) -> None:
        if self.store is None or self._thread is not None:
            return
        log.warning(
            "capture on: storing user images",
            extra={"capture_dir": str(self.root), "models": sorted(self.models or ()) or "all"},
        )
        self._thread = threading.Thread(target=self._run, name="capture-writer", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> None:
        """Store what is queued (for at most `timeout_s`), then end the writer."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        try:
            self.queue.put(None, timeout=timeout_s)
        except queue.Full:
            log.warning("capture writer stopped with captures still queued")
            return
        thread.join(timeout_s)

    def _run(self) -> None:
        assert self.store is not None
        try:
            self.store.scan()
            log.info("capture folder read", extra={
                "captures": len(self.store), "bytes": self.store.used_bytes})  # fmt: skip
        except OSError as exc:  # every write will then count an error: the service serves on
            log.error("capture folder not usable", extra={"error": str(exc)})
        self.metrics.capture_disk_bytes.set(self.store.used_bytes)
        while (item := self.queue.get()) is not None:
            self.write(item)

    def write(self, item: CaptureItem) -> None:
        """Store one capture (the writer thread; tests may call it or wrap it)."""
        assert self.store is not None
        try:
            evicted = self.store.write(capture_files(item), item.model)
        except (OSError, CaptureTooLargeError) as exc:
            log.warning("capture not stored", extra={"request_id": item.request_id,
                                                     "error": str(exc)})  # fmt: skip
            self._count(item.model, "error")
        except Exception:
            log.exception("capture not stored", extra={"request_id": item.request_id})
            self._count(item.model, "error")
        else:
            self._count(item.model, "saved")
            for model in evicted:
                self._count(model, "evicted")
        self.metrics.capture_disk_bytes.set(self.store.used_bytes)

    # -- metrics --------------------------------------------------------------------------

    def _init_series(self, model: str) -> None:
        for result in CAPTURE_RESULTS:
            self.metrics.captures.labels(model=model, result=result)

    def _count(self, model: str, result: str) -> None:
        self.metrics.captures.labels(model=model, result=result).inc()
