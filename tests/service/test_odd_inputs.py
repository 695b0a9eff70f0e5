"""A battery of odd and hostile inputs, each with the status (and size) it must get."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from bench.attacks.images import (
    animated,
    encode,
    exif_rotated_jpeg,
    gif_bomb,
    jpeg,
    multipart,
    noise,
    palette_with_transparency,
    png,
    png_bomb,
    png_rgb16,
    raw_png,
)
from service.app import create_app
from service.settings import Settings
from tests.service.conftest import wait_ready

Size = tuple[int, int] | None
# (id, body builder, content type, expected status, expected (width, height) for 200)
BATTERY: list[tuple[str, Callable[[], bytes], str, int, Size]] = [
    ("1x1", lambda: png(1, 1), "image/png", 200, (1, 1)),
    ("1x1-jpeg", lambda: jpeg(1, 1), "image/jpeg", 200, (1, 1)),
    ("wide-4000x10", lambda: png(4000, 10), "image/png", 200, (4000, 10)),
    ("tall-10x4000", lambda: png(10, 4000), "image/png", 200, (10, 4000)),
    ("wide-jpeg-8000x3", lambda: jpeg(8000, 3), "image/jpeg", 200, (8000, 3)),
    ("grayscale-L", lambda: encode(noise(50, 40, "L"), "JPEG"), "image/jpeg", 200, (50, 40)),
    ("gray16-I;16", lambda: encode(Image.new("I;16", (33, 22), 40000), "PNG"), "image/png", 200,
     (33, 22)),
    ("rgb-48bit-png", lambda: png_rgb16(40, 30), "image/png", 200, (40, 30)),
    ("palette", lambda: png(40, 30, "P"), "image/png", 200, (40, 30)),
    ("palette-transparency", palette_with_transparency, "image/png", 200, (40, 30)),
    ("cmyk-jpeg", lambda: encode(noise(48, 36).convert("CMYK"), "JPEG"), "image/jpeg", 200,
     (48, 36)),
    ("cmyk-tiff", lambda: encode(noise(48, 36).convert("CMYK"), "TIFF"), "image/tiff", 200,
     (48, 36)),
    ("rgba", lambda: png(40, 30, "RGBA"), "image/png", 200, (40, 30)),
    ("la", lambda: encode(noise(40, 30, "L").convert("LA"), "PNG"), "image/png", 200, (40, 30)),
    ("1-bit", lambda: encode(noise(40, 30).convert("1"), "PNG"), "image/png", 200, (40, 30)),
    ("float-tiff", lambda: encode(Image.new("F", (20, 10), 3.5), "TIFF"), "image/tiff", 200,
     (20, 10)),
    ("exif-rotate-90", lambda: exif_rotated_jpeg(60, 20, 6), "image/jpeg", 200, (20, 60)),
    ("exif-rotate-270-large", lambda: exif_rotated_jpeg(1200, 400, 8), "image/jpeg", 200,
     (400, 1200)),
    ("exif-mirror", lambda: exif_rotated_jpeg(60, 20, 2), "image/jpeg", 200, (60, 20)),
    ("exif-invalid-orientation", lambda: exif_rotated_jpeg(60, 20, 99), "image/jpeg", 200,
     (60, 20)),
    ("animated-gif", lambda: animated("GIF"), "image/gif", 200, (48, 32)),
    ("animated-png", lambda: animated("PNG"), "image/png", 200, (48, 32)),
    ("animated-webp", lambda: animated("WEBP"), "image/webp", 200, (48, 32)),
    ("progressive-jpeg", lambda: jpeg(640, 480, progressive=True), "image/jpeg", 200, (640, 480)),
    ("large-jpeg-draft", lambda: jpeg(3000, 2000), "image/jpeg", 200, (3000, 2000)),
    ("bmp", lambda: encode(noise(30, 20), "BMP"), "image/bmp", 200, (30, 20)),
    ("webp", lambda: encode(noise(30, 20), "WEBP"), "image/webp", 200, (30, 20)),
    ("wrong-content-type", lambda: png(30, 20), "image/jpeg", 200, (30, 20)),
    ("octet-stream", lambda: jpeg(30, 20), "application/octet-stream", 200, (30, 20)),
    ("multipart-extra-fields", lambda: multipart([("x", b"1", "text/plain"),
                                                  ("image", jpeg(30, 20), "image/jpeg")]),
     "multipart/form-data; boundary=b0undary", 200, (30, 20)),
    # bad input
    ("empty", lambda: b"", "image/jpeg", 400, None),
    ("truncated-jpeg", lambda: jpeg(200, 200)[:500], "image/jpeg", 400, None),
    ("truncated-png", lambda: png(200, 200)[:-400], "image/png", 400, None),
    ("truncated-gif", lambda: animated("GIF")[:100], "image/gif", 400, None),
    ("corrupt-png-data", lambda: raw_png(8, 8, 8, 0, b"\xff" * 9), "image/png", 400, None),
    ("zeros", lambda: b"\x00" * 1000, "application/octet-stream", 415, None),
    ("text", lambda: b"just some text", "image/png", 415, None),
    ("html", lambda: b"<html><body>hi</body></html>", "image/png", 415, None),
    ("svg", lambda: b'<svg xmlns="http://www.w3.org/2000/svg" width="9" height="9"/>',
     "image/svg+xml", 415, None),
    ("pdf", lambda: b"%PDF-1.4\n1 0 obj<<>>endobj\n%%EOF", "application/octet-stream", 415, None),
    ("json-content-type", lambda: jpeg(30, 20), "application/json", 400, None),  # not JSON
    ("text-content-type", lambda: jpeg(30, 20), "text/plain", 415, None),
    ("png-bomb-50000x50000", png_bomb, "image/png", 413, None),
    ("png-bomb-just-over", lambda: png_bomb(8000, 5001), "image/png", 413, None),
    ("gif-bomb-65535x65535", gif_bomb, "image/gif", 413, None),
    ("multipart-no-boundary", lambda: multipart([("image", jpeg(), "image/jpeg")]),
     "multipart/form-data", 400, None),
    ("multipart-truncated", lambda: multipart([("image", jpeg(), "image/jpeg")])[:-60],
     "multipart/form-data; boundary=b0undary", 400, None),
    ("multipart-wrong-field", lambda: multipart([("file", jpeg(), "image/jpeg")]),
     "multipart/form-data; boundary=b0undary", 422, None),
]  # fmt: skip


@pytest.fixture(scope="module")
def battery_client(tiny_onnx_path: Path) -> Iterator[TestClient]:
    app = create_app(Settings(model_path=tiny_onnx_path, threads=1))
    with TestClient(app, raise_server_exceptions=False) as client:
        wait_ready(client)
        yield client


@pytest.mark.parametrize(
    ("build", "ctype", "status", "size"), [c[1:] for c in BATTERY], ids=[c[0] for c in BATTERY]
)
def test_battery(
    battery_client: TestClient, build: Callable[[], bytes], ctype: str, status: int, size: Size
) -> None:
    r = battery_client.post(
        "/detect?score_threshold=0", content=build(), headers={"content-type": ctype}
    )
    assert r.status_code == status, r.text
    body = r.json()
    if status == 200:
        assert (body["image"]["width"], body["image"]["height"]) == size
        for det in body["detections"]:
            x1, y1, x2, y2 = det["box"]
            assert 0 <= x1 <= x2 <= size[0] and 0 <= y1 <= y2 <= size[1]
    else:
        assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}
