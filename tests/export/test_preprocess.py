"""Pre-processing: modes, EXIF, letterbox geometry and a box round trip."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from export.errors import (
    EmptyInputError,
    ImageDecodeError,
    ImageTooLargeError,
    UnsupportedImageTypeError,
)
from export.postprocess import Detections
from export.preprocess import letterbox_size, load_image, preprocess


def encode(img: Image.Image, fmt: str = "PNG", **kw: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def test_box_round_trip_600x400() -> None:
    """A box drawn on a 600x400 image comes back where it was after letterboxing."""
    img = Image.new("RGB", (600, 400), (0, 0, 0))
    img.paste((255, 255, 255), (150, 100, 330, 280))  # box x1=150 y1=100 x2=330 y2=280
    tensor, lb = preprocess(load_image(encode(img)), 512)
    assert tensor.shape == (1, 3, 352, 512) and tensor.dtype == np.float32  # 341 -> 352
    bright = tensor[0, 0] > 1.0
    ys, xs = np.nonzero(bright)
    input_box = np.array([[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]], np.float32)
    back = lb.to_original(input_box)
    np.testing.assert_allclose(back[0], [150, 100, 330, 280], atol=1.5)


def test_letterbox_pads_to_multiple_of_32_not_square() -> None:
    assert letterbox_size(500, 375, 512) == (512 / 500, 512, 384, 512, 384)
    _, rw, rh, pw, ph = letterbox_size(1920, 1080, 512)
    assert (rw, rh, pw, ph) == (512, 288, 512, 288)
    _, rw, rh, pw, ph = letterbox_size(4000, 10, 512)
    assert (rw, rh, pw, ph) == (512, 1, 512, 32)


def test_normalisation_and_padding() -> None:
    img = Image.new("RGB", (64, 32), (124, 116, 104))
    tensor, _ = preprocess(img, 64, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    expected = (np.array([124, 116, 104]) / 255 - 0.5) / 0.25
    np.testing.assert_allclose(tensor[0, :, 0, 0], expected, rtol=1e-5)
    assert tensor.shape == (1, 3, 32, 64)


@pytest.mark.parametrize("mode", ["L", "LA", "P", "RGBA", "CMYK", "I;16", "I", "1"])
def test_any_mode_becomes_rgb(mode: str) -> None:
    img = Image.new("RGB", (40, 30), (200, 100, 50)).convert(mode)
    fmt = "TIFF" if mode in ("CMYK", "I;16", "I") else "PNG"
    out = load_image(encode(img, fmt))
    assert out.mode == "RGB" and out.size == (40, 30)


def test_exif_orientation_is_applied() -> None:
    img = Image.new("RGB", (60, 20), (255, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW on display
    out = load_image(encode(img, "JPEG", exif=exif.tobytes()))
    assert out.size == (20, 60)


def test_errors() -> None:
    with pytest.raises(EmptyInputError):
        load_image(b"")
    with pytest.raises(UnsupportedImageTypeError):
        load_image(b"hello, this is not an image at all")
    data = encode(Image.new("RGB", (200, 200), (1, 2, 3)), "JPEG")
    with pytest.raises(ImageDecodeError):
        load_image(data[: len(data) // 3])
    with pytest.raises(ImageTooLargeError):
        load_image(encode(Image.new("L", (100, 100))), max_pixels=5000)


def test_detections_empty_helper() -> None:
    d = Detections.empty()
    assert len(d) == 0 and d.boxes.shape == (0, 4)
