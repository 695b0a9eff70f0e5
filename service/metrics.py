"""Prometheus metrics: one `CollectorRegistry` per app, so several apps (tests) never collide.

Per-model series carry a `model` label: the repository's names (bounded by the folder, and a
removed model's series are removed), or "" for a request refused before its model was known
(an unknown name is never a label value). Queue and connection figures are process-wide.
"""

from __future__ import annotations

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from export.metadata import ModelMetadata
from service.errors import OUTCOMES
from service.stages import STAGES

# the `route` label of detector_requests_total: path -> route (service.middleware)
ROUTES: tuple[str, ...] = ("detect", "batch", "v2", "deepstack")
REFUSAL_REASONS: tuple[str, ...] = ("missing", "wrong")
# the `result` label of detector_captures_total (service.capture)
CAPTURE_RESULTS: tuple[str, ...] = (
    "saved", "dropped_rate_limit", "dropped_queue_full", "error", "evicted",
)  # fmt: skip

STAGE_BUCKETS: tuple[float, ...] = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.75,
    1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
DETECTION_BUCKETS: tuple[float, ...] = (0, 1, 2, 5, 10, 20, 50, 100, 300)
SIZE_BUCKETS: tuple[float, ...] = tuple(float(1024 * 4**i) for i in range(8))  # 1 KiB .. 16 MiB
PIXEL_BUCKETS: tuple[float, ...] = (
    1e4, 1e5, 3e5, 1e6, 2e6, 5e6, 1e7, 2e7, 4e7,
)  # fmt: skip


class Metrics:
    """All service metrics; label values that are known up front are pre-initialised."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "detector_requests",
            "Detection requests (/detect, /detect/batch, v2 infer, DeepStack) by model, route "
            "and outcome", ["model", "route", "outcome"], registry=r,
        )  # fmt: skip
        self.stage_duration = Histogram(
            "detector_stage_duration_seconds", "Time per pipeline stage of successful requests",
            ["model", "stage"], buckets=STAGE_BUCKETS, registry=r,
        )  # fmt: skip
        self.in_flight = Gauge(
            "detector_in_flight_requests", "Detection requests being handled", registry=r
        )
        self.queue_depth = Gauge(
            "detector_queue_depth", "Requests waiting for an inference worker", registry=r
        )
        self.queue_capacity = Gauge(
            "detector_queue_capacity", "Requests that may wait (DETECTOR_MAX_QUEUE); then 503",
            registry=r,
        )  # fmt: skip
        self.detections = Histogram(
            "detector_detections_per_image", "Detections returned per image",
            ["model"], buckets=DETECTION_BUCKETS, registry=r,
        )  # fmt: skip
        self.request_size = Histogram(
            "detector_request_size_bytes", "Bytes of the uploaded request body",
            buckets=SIZE_BUCKETS, registry=r,
        )  # fmt: skip
        self.image_pixels = Histogram(
            "detector_image_pixels", "Decoded image width x height",
            ["model"], buckets=PIXEL_BUCKETS, registry=r,
        )  # fmt: skip
        self.model_info = Gauge(
            "detector_model_info", "The loaded models (value is always 1)",
            ["model", "name", "version", "preset", "precision"], registry=r,
        )  # fmt: skip
        self.tiles = Counter(
            "detector_tiles", "Tiles run through the model by tiled inference (tile=auto or N)",
            ["model"], registry=r,
        )  # fmt: skip
        self.model_ready = Gauge(
            "detector_model_ready", "1 when the model is loaded and warmed up", ["model"],
            registry=r,
        )  # fmt: skip
        self.model_memory = Gauge(
            "detector_model_memory_bytes",
            "Resident memory the process grew by while loading the model", ["model"], registry=r,
        )  # fmt: skip
        self.reloads = Counter(
            "detector_model_reloads", "Model loads on a rescan (SIGHUP or /admin/reload)",
            ["model", "result"], registry=r,
        )  # fmt: skip
        self.runtime_info = Gauge(
            "detector_runtime_info",
            "The runtime configuration serving each model (value is always 1): backend, the "
            "precision of its floating-point layers, and chosen_by auto (DETECTOR_BACKEND=auto, "
            "measured at load) or setting",
            ["model", "backend", "precision", "chosen_by"], registry=r,
        )  # fmt: skip
        self.captures = Counter(
            "detector_captures",
            "Images offered for capture (DETECTOR_CAPTURE_DIR) by model and result: saved, "
            "dropped (rate cap, full queue), error (disk), evicted (removed for the disk budget)",
            ["model", "result"], registry=r,
        )  # fmt: skip
        self.capture_disk_bytes = Gauge(
            "detector_capture_disk_bytes", "Bytes the captures take in DETECTOR_CAPTURE_DIR",
            registry=r,
        )  # fmt: skip
        self.key_refusals = Counter(
            "detector_api_key_refusals",
            "Inference requests refused for a missing or wrong API key (DETECTOR_API_KEYS)",
            ["route", "reason"], registry=r,
        )  # fmt: skip
        for route in ROUTES:
            for reason in REFUSAL_REASONS:
                self.key_refusals.labels(route=route, reason=reason)
        self._init_model("")  # requests refused before their model was known

    def _init_model(self, model: str) -> None:
        for route in ROUTES:
            for outcome in OUTCOMES:
                self.requests.labels(model=model, route=route, outcome=outcome)

    def observe_stages(self, model: str, timings_s: dict[str, float]) -> None:
        for stage, seconds in timings_s.items():
            if stage in STAGES:
                self.stage_duration.labels(model=model, stage=stage).observe(seconds)

    def set_model(self, model: str, meta: ModelMetadata, version: str, memory: int) -> None:
        """`model` serves `meta` now: its info, ready and memory series (pre-initialised)."""
        self._remove(self.model_info, model)
        self.model_info.labels(model=model, name=meta.name, version=version, preset=meta.preset,
                               precision=meta.precision).set(1)  # fmt: skip
        self.model_ready.labels(model=model).set(1)
        self.model_memory.labels(model=model).set(memory)
        self._init_model(model)
        for stage in STAGES:
            self.stage_duration.labels(model=model, stage=stage)
        for metric in (self.detections, self.image_pixels, self.tiles):
            metric.labels(model=model)
        for result in ("ok", "failed"):
            self.reloads.labels(model=model, result=result)

    def set_runtime(self, model: str, backend: str, precision: str, chosen_by: str) -> None:
        """`model` is served on this runtime configuration now (its previous one removed)."""
        self._remove(self.runtime_info, model)
        self.runtime_info.labels(model=model, backend=backend, precision=precision,
                                 chosen_by=chosen_by).set(1)  # fmt: skip

    def clear_runtime(self, model: str) -> None:
        self._remove(self.runtime_info, model)

    def remove_model(self, model: str) -> None:
        """Every series of `model` (removed from the repository)."""
        for metric in (self.requests, self.stage_duration, self.detections, self.image_pixels,
                       self.tiles, self.model_info, self.model_ready, self.model_memory,
                       self.reloads, self.runtime_info):  # fmt: skip
            self._remove(metric, model)
        self._remove(self.captures, model)

    @staticmethod
    def _remove(metric: Counter | Gauge | Histogram, model: str) -> None:
        names = list(metric._labelnames)
        at = names.index("model")
        for values in list(metric._metrics):  # prometheus_client has no remove-by-one-label
            if values[at] == model:
                metric.remove(*values)

    def render(self) -> bytes:
        return generate_latest(self.registry)
