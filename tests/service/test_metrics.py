"""GET /metrics: exact names, types, labels and buckets; values move with traffic."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from bench.attacks.images import jpeg
from service.metrics import STAGE_BUCKETS
from service.stages import STAGES

EXPECTED_TYPES = {
    "detector_requests": "counter",
    "detector_stage_duration_seconds": "histogram",
    "detector_in_flight_requests": "gauge",
    "detector_queue_depth": "gauge",
    "detector_detections_per_image": "histogram",
    "detector_request_size_bytes": "histogram",
    "detector_image_pixels": "histogram",
    "detector_model_info": "gauge",
    "detector_model_ready": "gauge",
}


def scrape(client: TestClient) -> dict[str, Any]:
    r = client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    return {f.name: f for f in text_string_to_metric_families(r.text)}


def value(families: dict[str, Any], sample_name: str, **labels: str) -> float:
    family = families[sample_name.removesuffix("_total").removesuffix("_count")
                      .removesuffix("_sum").removesuffix("_bucket")]  # fmt: skip
    for s in family.samples:
        if s.name == sample_name and all(s.labels.get(k) == v for k, v in labels.items()):
            return float(s.value)
    raise KeyError((sample_name, labels))


def test_names_types_and_buckets(client: TestClient) -> None:
    families = scrape(client)
    for name, kind in EXPECTED_TYPES.items():
        assert families[name].type == kind, name
    stage_les = {
        s.labels["le"] for s in families["detector_stage_duration_seconds"].samples
        if s.name.endswith("_bucket") and s.labels["stage"] == "inference"
    }  # fmt: skip
    assert stage_les == {str(float(b)) for b in STAGE_BUCKETS} | {"+Inf"}
    stages = {s.labels["stage"] for s in families["detector_stage_duration_seconds"].samples}
    assert stages == set(STAGES)
    det_les = {s.labels["le"] for s in families["detector_detections_per_image"].samples
               if s.name.endswith("_bucket")}  # fmt: skip
    assert det_les == {str(float(b)) for b in (0, 1, 2, 5, 10, 20, 50, 100, 300)} | {"+Inf"}


def test_values_move(client: TestClient) -> None:
    before = scrape(client)
    for _ in range(3):
        assert client.post("/detect?score_threshold=0&max_detections=7",
                           content=jpeg(100, 50)).status_code == 200  # fmt: skip
    assert client.post("/detect", content=b"").status_code == 400
    after = scrape(client)
    m = {"model": "fcos-tiny"}
    assert value(after, "detector_requests_total", route="detect", outcome="ok", **m) == 3
    assert value(after, "detector_requests_total", outcome="bad_request", **m) == 1
    for stage in STAGES:
        runs = 0 if stage in ("annotate", "tiles") else 3  # untiled JSON answers
        assert value(after, "detector_stage_duration_seconds_count", stage=stage) == runs
        assert value(before, "detector_stage_duration_seconds_count", stage=stage) == 0
    assert value(after, "detector_detections_per_image_sum") == 21
    assert value(after, "detector_detections_per_image_bucket", le="10.0") == 3
    assert value(after, "detector_image_pixels_sum") == 3 * 5000
    assert value(after, "detector_request_size_bytes_count") == 4
    assert value(after, "detector_in_flight_requests") == 0
    assert value(after, "detector_queue_depth") == 0
    assert value(after, "detector_model_ready", **m) == 1
    assert value(after, "detector_model_info", name="fcos-tiny", preset="tiny", **m) == 1
    assert value(after, "detector_model_memory_bytes", **m) >= 0


def test_health_and_metrics_requests_are_not_counted(client: TestClient) -> None:
    for path in ("/health/live", "/health/ready", "/model", "/metrics"):
        client.get(path)
    families = scrape(client)
    assert sum(s.value for s in families["detector_requests"].samples
               if s.name == "detector_requests_total") == 0  # fmt: skip


def test_each_app_has_its_own_registry(serve: Any) -> None:
    with serve() as (_, a), serve() as (_, b):
        a.post("/detect", content=jpeg())
        ok = {"model": "fcos-tiny", "outcome": "ok"}
        assert value(scrape(a), "detector_requests_total", **ok) == 1
        assert value(scrape(b), "detector_requests_total", **ok) == 0
