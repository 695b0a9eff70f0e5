"""Every error status, in the one error shape, counted under its outcome."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from bench.attacks.images import jpeg, multipart, png_bomb, raw_png
from service.errors import OUTCOMES


def outcome_counts(client: TestClient) -> dict[str, float]:
    """detector_requests_total by outcome, summed over models and routes."""
    counts: dict[str, float] = {}
    for family in text_string_to_metric_families(client.get("/metrics").text):
        for s in family.samples:
            if s.name == "detector_requests_total":
                counts[s.labels["outcome"]] = counts.get(s.labels["outcome"], 0.0) + s.value
    return counts


CASES: list[tuple[str, dict[str, Any], int, str, str]] = [
    # (id, request kwargs, status, error code, outcome)
    ("empty", {"content": b""}, 400, "empty_input", "bad_request"),
    ("truncated", {"content": jpeg()[:300]}, 400, "image_decode_error", "bad_request"),
    ("corrupt-data", {"content": raw_png(8, 8, 8, 0, b"\xff" * 9)}, 400, "image_decode_error",
     "bad_request"),
    ("bad-header", {"content": b"GIF89a? no."}, 415, "unsupported_media_type",
     "unsupported_media_type"),
    ("text-bytes", {"content": b"hello world"}, 415, "unsupported_media_type",
     "unsupported_media_type"),
    ("json-without-image", {"content": b"{}", "headers": {"content-type": "application/json"}},
     422, "invalid_parameter", "invalid_parameter"),
    ("bad-threshold", {"content": jpeg(), "params": {"score_threshold": "1.5"}}, 422,
     "invalid_parameter", "invalid_parameter"),
    ("nan-threshold", {"content": jpeg(), "params": {"score_threshold": "nan"}}, 422,
     "invalid_parameter", "invalid_parameter"),
    ("bad-max", {"content": jpeg(), "params": {"max_detections": "0"}}, 422,
     "invalid_parameter", "invalid_parameter"),
    ("max-not-int", {"content": jpeg(), "params": {"max_detections": "ten"}}, 422,
     "invalid_parameter", "invalid_parameter"),
    ("missing-field", {"content": multipart([("file", jpeg(), "image/jpeg")]),
                       "headers": {"content-type": "multipart/form-data; boundary=b0undary"}},
     422, "invalid_parameter", "invalid_parameter"),
    ("bomb", {"content": png_bomb()}, 413, "image_too_large", "too_large"),
]  # fmt: skip


@pytest.mark.parametrize(("status", "code", "outcome", "kwargs"),
                         [(*c[2:], c[1]) for c in CASES], ids=[c[0] for c in CASES])  # fmt: skip
def test_error_status(
    client: TestClient, kwargs: dict[str, Any], status: int, code: str, outcome: str
) -> None:
    before = outcome_counts(client)
    r = client.post("/detect", **kwargs)
    assert r.status_code == status, r.text
    assert r.json() == {"error": {"code": code, "message": r.json()["error"]["message"]}}
    assert r.json()["error"]["message"]
    after = outcome_counts(client)
    assert after[outcome] == before[outcome] + 1
    assert sum(after.values()) == sum(before.values()) + 1


def test_too_large_body(serve: Any) -> None:
    with serve(max_upload_bytes=1000) as (_, c):
        r = c.post("/detect", content=jpeg(300, 300))
        assert r.status_code == 413 and r.json()["error"]["code"] == "payload_too_large"
        assert outcome_counts(c)["too_large"] == 1


def test_too_many_pixels(serve: Any) -> None:
    with serve(max_pixels=10_000) as (_, c):
        assert c.post("/detect", content=jpeg(100, 100)).status_code == 200
        r = c.post("/detect", content=jpeg(101, 100))
        assert r.status_code == 413 and r.json()["error"]["code"] == "image_too_large"


def test_validation_message_names_the_parameter(client: TestClient) -> None:
    r = client.post("/detect?score_threshold=-1&max_detections=5000", content=jpeg())
    message = r.json()["error"]["message"]
    assert "score_threshold" in message and "max_detections" in message


def test_unknown_route_and_method(client: TestClient) -> None:
    r = client.get("/nope")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    r = client.get("/detect")
    assert r.status_code == 405 and r.json()["error"]["code"] == "method_not_allowed"


def test_internal_error_keeps_shape_and_headers(serve: Any) -> None:
    """A bug (not bad input) is a 500 in the same shape, counted as `error`."""

    class Broken:
        def __init__(self, path: Any, threads: int) -> None:
            from export.runtime import OnnxDetector

            self.inner = OnnxDetector(path, threads)
            self.metadata = self.inner.metadata

        def detect_image(self, *args: Any) -> Any:
            return self.inner.detect_image(*args)

        def detect_bytes(self, *args: Any, **kwargs: Any) -> Any:
            raise RuntimeError("boom")

    with serve(loader=Broken) as (_, c):
        r = c.post("/detect", content=jpeg(), headers={"x-request-id": "r1"})
        assert r.status_code == 500 and r.headers["x-request-id"] == "r1"
        assert r.json() == {"error": {"code": "internal_error", "message": "internal server error"}}
        assert outcome_counts(c)["error"] == 1


def test_all_outcomes_preinitialised(client: TestClient) -> None:
    assert outcome_counts(client) == dict.fromkeys(OUTCOMES, 0.0)
