"""Prometheus metrics: one `CollectorRegistry` per app, so several apps (tests) never collide."""

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
            "detector_requests", "Detection requests (/detect, /detect/batch, v2 infer) by outcome",
            ["outcome"], registry=r,
        )  # fmt: skip
        for outcome in OUTCOMES:
            self.requests.labels(outcome=outcome)
        self.stage_duration = Histogram(
            "detector_stage_duration_seconds", "Time per pipeline stage of successful requests",
            ["stage"], buckets=STAGE_BUCKETS, registry=r,
        )  # fmt: skip
        for stage in STAGES:
            self.stage_duration.labels(stage=stage)
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
            buckets=DETECTION_BUCKETS, registry=r,
        )  # fmt: skip
        self.request_size = Histogram(
            "detector_request_size_bytes", "Bytes of the uploaded request body",
            buckets=SIZE_BUCKETS, registry=r,
        )  # fmt: skip
        self.image_pixels = Histogram(
            "detector_image_pixels", "Decoded image width x height",
            buckets=PIXEL_BUCKETS, registry=r,
        )  # fmt: skip
        self.model_info = Gauge(
            "detector_model_info", "The loaded model (value is always 1)",
            ["name", "version", "preset", "precision"], registry=r,
        )  # fmt: skip
        self.tiles = Counter(
            "detector_tiles", "Tiles run through the model by tiled inference (tile=auto or N)",
            registry=r,
        )  # fmt: skip
        self.model_ready = Gauge(
            "detector_model_ready", "1 when the model is loaded and warmed up", registry=r
        )

    def observe_stages(self, timings_s: dict[str, float]) -> None:
        for stage, seconds in timings_s.items():
            if stage in STAGES:
                self.stage_duration.labels(stage=stage).observe(seconds)

    def set_model(self, meta: ModelMetadata) -> None:
        self.model_info.clear()
        self.model_info.labels(
            name=meta.name, version=meta.version, preset=meta.preset, precision=meta.precision
        ).set(1)

    def render(self) -> bytes:
        return generate_latest(self.registry)
