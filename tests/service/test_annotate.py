"""POST /detect?annotate=true: the image with the boxes drawn (service/annotate.py)."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from bench.attacks.images import encode, exif_rotated_jpeg, jpeg, noise, png, png_bomb
from export.postprocess import Detections
from export.runtime import DetectionResult
from service.annotate import (
    MAX_SIDE,
    PALETTE,
    class_color,
    draw_detections,
    label_text,
    render,
)

ERROR_KEYS = {"code", "message"}


def decoded(r: Any, fmt: str, size: tuple[int, int]) -> Image.Image:
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == f"image/{fmt.lower()}"
    img = Image.open(io.BytesIO(r.content))
    img.load()
    assert img.format == fmt and img.size == size and img.mode == "RGB"
    return img


def test_jpeg_by_default_with_headers(client: TestClient) -> None:
    r = client.post("/detect?annotate=true&score_threshold=0&max_detections=7",
                    content=jpeg(320, 240), headers={"x-request-id": "annot-1"})  # fmt: skip
    decoded(r, "JPEG", (320, 240))
    assert r.headers["x-request-id"] == "annot-1"
    stages = [part.split(";")[0] for part in r.headers["server-timing"].split(", ")]
    assert stages == ["read", "queue", "decode", "preprocess", "inference", "postprocess",
                      "annotate", "total"]  # fmt: skip
    assert r.headers["x-detections"] == "7"
    assert r.headers["content-disposition"] == 'inline; filename="detections.jpg"'


def test_png_is_the_original_plus_the_boxes(client: TestClient) -> None:
    original = noise(200, 150, seed=3)
    data = encode(original, "PNG")
    none = client.post("/detect?annotate=true&format=png&score_threshold=1", content=data)
    assert none.headers["x-detections"] == "0"
    assert np.array_equal(np.asarray(decoded(none, "PNG", (200, 150))), np.asarray(original))

    params = "score_threshold=0&max_detections=5"
    body = client.post(f"/detect?{params}", content=data).json()
    r = client.post(f"/detect?annotate=true&format=png&{params}", content=data)
    drawn = np.asarray(decoded(r, "PNG", (200, 150)))
    assert r.headers["x-detections"] == str(len(body["detections"])) == "5"
    changed = np.any(drawn != np.asarray(original), axis=-1)
    assert changed.sum() > 100  # boxes and labels
    found = {tuple(int(v) for v in px) for px in drawn[changed]}
    assert class_color(body["detections"][0]["class_id"]) in found  # the best: drawn last


@pytest.mark.parametrize(
    ("data", "size"),
    [(jpeg(1024, 768), (1024, 768)),  # decoded at 1/4 (draft) for detection: drawn full size
     (exif_rotated_jpeg(64, 48, orientation=6), (48, 64)),  # EXIF-oriented, like the boxes
     (png(40, 30, mode="L"), (40, 30))],
    ids=["large-jpeg", "exif-rotated", "grayscale-png"],
)  # fmt: skip
def test_annotated_image_has_the_original_size(
    client: TestClient, data: bytes, size: tuple[int, int]
) -> None:
    body = client.post("/detect?score_threshold=0", content=data).json()
    assert (body["image"]["width"], body["image"]["height"]) == size
    decoded(client.post("/detect?annotate=true&score_threshold=0", content=data), "JPEG", size)


def test_multipart_upload(client: TestClient) -> None:
    r = client.post("/detect?annotate=1&format=png",
                    files={"image": ("a.jpg", jpeg(120, 90), "image/jpeg")})  # fmt: skip
    decoded(r, "PNG", (120, 90))


@pytest.mark.parametrize(
    ("query", "kwargs", "status", "code"),
    [("annotate=true", {"content": b""}, 400, "empty_input"),
     ("annotate=true&format=png", {"content": b"hello world"}, 415, "unsupported_media_type"),
     ("annotate=true", {"content": png_bomb()}, 413, "image_too_large"),
     ("annotate=true&format=gif", {"content": jpeg()}, 422, "invalid_parameter"),
     ("annotate=maybe", {"content": jpeg()}, 422, "invalid_parameter"),
     ("annotate=true&score_threshold=2", {"content": jpeg()}, 422, "invalid_parameter"),
     ("annotate=true", {"content": b"{}", "headers": {"content-type": "application/json"}}, 422,
      "invalid_parameter")],
)  # fmt: skip
def test_errors_are_still_json(
    client: TestClient, query: str, kwargs: dict[str, Any], status: int, code: str
) -> None:
    r = client.post(f"/detect?{query}", **kwargs)
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/json"
    assert set(r.json()["error"]) == ERROR_KEYS and r.json()["error"]["code"] == code
    assert "x-request-id" in r.headers and "server-timing" in r.headers


def test_limits_apply(serve: Any) -> None:
    with serve(max_upload_bytes=1000, max_pixels=100 * 100) as (_, c):
        big = c.post("/detect?annotate=true", content=jpeg(200, 200))
        assert big.status_code == 413 and big.json()["error"]["code"] == "payload_too_large"
        many_pixels = c.post("/detect?annotate=true", content=png(101, 100, mode="L"))
        assert many_pixels.status_code == 413, many_pixels.text


def test_not_ready_is_json(serve: Any, tmp_path: Any) -> None:
    with serve(ready=False, model_path=tmp_path / "missing.onnx") as (_, c):
        r = c.post("/detect?annotate=true", content=jpeg())
        assert r.status_code == 503 and r.json()["error"]["code"] == "not_ready"


def test_json_default_is_unchanged(client: TestClient) -> None:
    data = jpeg(160, 120)
    default = client.post("/detect?score_threshold=0", content=data)
    for query in ("annotate=false", "annotate=false&format=png", "format=png"):
        r = client.post(f"/detect?score_threshold=0&{query}", content=data)
        assert r.headers["content-type"] == "application/json", query
        assert r.json()["detections"] == default.json()["detections"]
    assert "x-detections" not in default.headers


def test_openapi_documents_the_image_responses(client: TestClient) -> None:
    op = client.get("/openapi.json").json()["paths"]["/detect"]["post"]
    assert set(op["responses"]["200"]["content"]) == {"application/json", "image/jpeg",
                                                      "image/png"}  # fmt: skip
    params = {p["name"]: p for p in op["parameters"]}
    assert params["annotate"]["schema"]["type"] == "boolean"
    assert params["format"]["schema"]["enum"] == ["jpeg", "png"]


# --- service.annotate units ------------------------------------------------------------------


def dets(boxes: list[list[float]], scores: list[float], classes: list[int]) -> Detections:
    return Detections(np.asarray(boxes, np.float32).reshape(-1, 4),
                      np.asarray(scores, np.float32), np.asarray(classes, np.int64))  # fmt: skip


def test_draw_detections_outlines_in_class_colours() -> None:
    img = Image.new("RGB", (300, 200), (40, 40, 40))
    draw_detections(img, dets([[50, 80, 150, 180], [200, 100, 290, 190]], [0.9, 0.4], [0, 1]),
                    ("cat", "dog"))  # fmt: skip
    px = img.load()
    assert px[100, 180] == class_color(0) and px[50, 130] == class_color(0)  # bottom, left
    assert px[245, 190] == class_color(1) and px[290, 150] == class_color(1)
    assert px[100, 130] == (40, 40, 40)  # inside untouched
    assert px[52, 70] == class_color(0)  # the label's background, above the box


def test_draw_detections_odd_boxes_and_labels() -> None:
    img = Image.new("RGB", (64, 48))
    out = draw_detections(img, dets([[-20, -5, 500, 400], [10, 10, 10, 10], [63, 47, 64, 48]],
                                    [0.5, 0.3, 0.2], [2, 25, 0]), ("a", "b", "c"))  # fmt: skip
    assert out is img and out.size == (64, 48)
    assert draw_detections(Image.new("RGB", (8, 8)), dets([], [], []), ()).getbbox() is None
    assert label_text(7, 0.456, ("a",)) == "7 0.46" and label_text(0, 1.0, ("a",)) == "a 1.00"
    assert class_color(len(PALETTE) + 1) == class_color(1)


def test_render_scales_boxes_and_records_its_time() -> None:
    data = encode(Image.new("RGB", (200, 100), (0, 0, 0)), "PNG")
    half = DetectionResult(dets([[10, 10, 40, 40]], [0.9], [0]), 100, 50, {"decode": 0.1})
    img = Image.open(io.BytesIO(render(data, half, ("cat",), "png")))
    assert img.size == (200, 100) and img.getpixel((50, 80)) == class_color(0)  # y2 40 -> 80
    assert half.timings_s["annotate"] > 0 and half.timings_s["decode"] == 0.1


def test_render_reduces_large_images_and_their_boxes() -> None:
    """Longer side over MAX_SIDE: reduced by the smallest integer factor that fits (4100 px
    -> /3), the boxes with it."""
    data = encode(Image.new("RGB", (4100, 300), (0, 0, 0)), "PNG")
    result = DetectionResult(dets([[300, 30, 900, 240]], [0.9], [0]), 4100, 300)
    img = Image.open(io.BytesIO(render(data, result, ("cat",), "png")))
    assert img.size == (1367, 100) and max(img.size) <= MAX_SIDE  # reduce() rounds up
    assert img.getpixel((100, 50)) == class_color(0)  # x1 300 -> 100
