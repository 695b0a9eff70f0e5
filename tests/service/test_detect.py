"""POST /detect happy paths: multipart and raw bodies, schema, parameters, headers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from bench.attacks.images import jpeg, png
from export.postprocess import candidate_config
from export.preprocess import decode_image
from export.runtime import OnnxDetector
from service.schemas import DetectResponse
from service.stages import STAGES
from tests import TINY_CLASSES


def check_schema(body: dict[str, Any], width: int, height: int) -> None:
    DetectResponse.model_validate(body)  # types and ranges
    assert set(body) == {"detections", "image", "model", "timings_ms"}
    assert body["image"] == {"width": width, "height": height, "tiles": 0}
    assert body["model"] == {"name": "fcos-tiny", "version": body["model"]["version"]}
    assert tuple(body["timings_ms"]) == STAGES
    assert body["timings_ms"]["annotate"] == 0  # JSON answers are never annotated
    assert all(v >= 0 for v in body["timings_ms"].values())
    assert body["timings_ms"]["total"] >= body["timings_ms"]["inference"]
    for det in body["detections"]:
        assert set(det) == {"label", "class_id", "score", "box"}
        assert det["label"] == TINY_CLASSES[det["class_id"]]
        x1, y1, x2, y2 = det["box"]
        assert 0 <= x1 <= x2 <= width and 0 <= y1 <= y2 <= height


def test_multipart(client: TestClient) -> None:
    r = client.post("/detect", files={"image": ("a.jpg", jpeg(320, 240), "image/jpeg")})
    assert r.status_code == 200, r.text
    check_schema(r.json(), 320, 240)


@pytest.mark.parametrize("ctype", ["image/jpeg", "image/png", "application/octet-stream", None])
def test_raw_body(client: TestClient, ctype: str | None) -> None:
    headers = {"content-type": ctype} if ctype else {}
    r = client.post("/detect", content=jpeg(200, 100), headers=headers)
    assert r.status_code == 200, r.text
    check_schema(r.json(), 200, 100)


def test_threshold_and_max_detections(client: TestClient) -> None:
    """The untrained tiny model scores ~0.08: nothing at the 0.3 default, many at 0."""
    data = jpeg(256, 192)
    assert client.post("/detect", content=data).json()["detections"] == []
    everything = client.post("/detect?score_threshold=0", content=data).json()
    assert len(everything["detections"]) == 100  # DETECTOR_MAX_DETECTIONS
    check_schema(everything, 256, 192)
    scores = [d["score"] for d in everything["detections"]]
    assert scores == sorted(scores, reverse=True)
    five = client.post("/detect?score_threshold=0&max_detections=5", content=data).json()
    assert five["detections"] == everything["detections"][:5]
    cut = scores[10]
    above = client.post(f"/detect?score_threshold={cut}", content=data).json()["detections"]
    assert above and all(d["score"] >= cut for d in above)
    assert above == [d for d in everything["detections"] if d["score"] >= cut][: len(above)]


def test_settings_defaults_apply(serve: Any) -> None:
    with serve(score_threshold=0.0, max_detections=7) as (_, c):
        assert len(c.post("/detect", content=png(64, 64)).json()["detections"]) == 7


def test_large_jpeg_boxes_are_in_original_pixels(client: TestClient, tiny_onnx_path: Path) -> None:
    """JPEGs are decoded at reduced size (draft); boxes and size refer to the original."""
    data = jpeg(2000, 1000)
    body = client.post("/detect?score_threshold=0", content=data).json()
    check_schema(body, 2000, 1000)
    drafted, full_size = decode_image(data, draft_size=128)
    assert full_size == (2000, 1000) and drafted.size == (500, 250)
    ref = OnnxDetector(tiny_onnx_path, threads=1).detect_image(
        drafted, candidate_config(0.0, 100, 0.6)
    )
    expected = ref.detections.boxes[:5] * 4.0  # the drafted image is 1/4 of the original
    got = np.array([d["box"] for d in body["detections"][:5]])
    np.testing.assert_allclose(got, expected, atol=0.2)


def test_request_id_and_server_timing(client: TestClient) -> None:
    r = client.post("/detect", content=jpeg(64, 64), headers={"x-request-id": "abc-123"})
    assert r.headers["x-request-id"] == "abc-123"
    stages = [part.split(";")[0] for part in r.headers["server-timing"].split(", ")]
    assert stages == ["read", "queue", "decode", "preprocess", "inference", "postprocess", "total"]
    generated = client.get("/health/live")
    assert len(generated.headers["x-request-id"]) == 32
    assert generated.headers["server-timing"].startswith("total;dur=")
    hostile = client.get("/health/live", headers={"x-request-id": "a\tb" + "x" * 300})
    assert hostile.headers["x-request-id"] != "a\tb" + "x" * 300


def test_model_endpoint(client: TestClient) -> None:
    r = client.get("/model")
    assert r.status_code == 200
    body = r.json()
    assert body["name"] == "fcos-tiny" and body["preset"] == "tiny"
    assert body["precision"] == "fp32" and body["classes"] == list(TINY_CLASSES)
    assert body["input_size"] == 128 and body["strides"] == [8, 16, 32, 64, 128]


def test_health(client: TestClient) -> None:
    assert client.get("/health/live").json() == {"status": "alive"}
    assert client.get("/health/ready").json() == {"status": "ready"}
