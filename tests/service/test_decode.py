"""Safe decoding (export.preprocess as the service uses it): the format allow-list, the
decoded-size limit, block-wise >8-bit conversion against the plain float64 formula, NaN/inf,
reduction before conversion, and error texts free of library internals."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from bench.attacks.images import encode, float_tiff, noise, outside_allow_list, png, png_deep
from export import preprocess
from export.errors import ImageDecodeError, ImageTooLargeError, UnsupportedImageTypeError
from export.preprocess import ALLOWED_FORMATS, decode_image


def reference_l(img: Image.Image) -> np.ndarray:
    """The previous full-size float64 conversion, as the reference."""
    arr = np.asarray(img, dtype=np.float64)
    hi = 65535.0 if img.mode.startswith("I;16") else max(float(arr.max()), 1.0)
    return np.clip(arr / hi * 255.0 + 0.5, 0, 255).astype(np.uint8)


@pytest.mark.parametrize("block_pixels", [1 << 20, 37])  # one block; many (ragged) blocks
@pytest.mark.parametrize(
    "image",
    [
        Image.fromarray(np.random.default_rng(0).integers(0, 65536, (23, 31), dtype=np.uint16)),
        Image.fromarray(np.random.default_rng(1).integers(-5, 70000, (23, 31), dtype=np.int32)),
        Image.fromarray(np.random.default_rng(2).normal(0.5, 2.0, (23, 31)).astype(np.float32)),
        Image.fromarray(np.full((5, 7), 0.25, dtype=np.float32)),  # max < 1: scaled by 1
    ],
    ids=["I;16", "I", "F", "F-dim"],
)
def test_high_bit_conversion_matches_float64_reference(
    image: Image.Image, block_pixels: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(preprocess, "_BLOCK_PIXELS", block_pixels)
    fmt = "PNG" if image.mode == "I;16" else "TIFF"
    decoded, size = decode_image(encode(image, fmt))
    assert size == image.size and decoded.mode == "RGB"
    np.testing.assert_array_equal(np.asarray(decoded)[..., 0], reference_l(image))


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_nan_and_inf_are_a_decode_error(value: float) -> None:
    with pytest.raises(ImageDecodeError, match="NaN or infinite"):
        decode_image(float_tiff(16, 8, value))


def test_decoded_size_counts_bytes_per_sample() -> None:
    limit = 10_000  # pixels -> 30,000 decoded bytes
    decode_image(png_deep(100, 100), limit)  # 16-bit gray: 20,000 bytes
    decode_image(png(100, 100, "RGB"), limit)  # 8-bit RGB: 30,000 bytes
    with pytest.raises(ImageTooLargeError, match="16 bits per sample"):
        decode_image(png_deep(70, 70, 6), limit)  # 16-bit RGBA: 39,200 bytes
    with pytest.raises(ImageTooLargeError, match="decoded-size limit"):
        decode_image(float_tiff(90, 90), limit)  # float: 32,400 bytes
    with pytest.raises(ImageTooLargeError):
        decode_image(png(101, 100), limit)  # pixel count


@pytest.mark.parametrize("fmt", sorted(outside_allow_list()))
def test_formats_outside_the_allow_list(fmt: str) -> None:
    with pytest.raises(UnsupportedImageTypeError) as info:
        decode_image(outside_allow_list()[fmt])
    assert all(name in str(info.value) for name in ALLOWED_FORMATS)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF"])
def test_allowed_formats_decode(fmt: str) -> None:
    assert decode_image(encode(noise(20, 10), fmt))[1] == (20, 10)


def test_reduced_before_conversion_keeps_the_original_size_and_orientation() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 on display
    data = encode(noise(1200, 500, "RGBA"), "PNG", exif=exif.tobytes())
    reduced, size = decode_image(data, draft_size=256)
    assert size == (500, 1200) and reduced.mode == "RGB"
    assert reduced.size == (500 // 4, 1200 // 4)  # 4x box reduction, then rotated
    full, _ = decode_image(data)
    assert full.size == (500, 1200)


def test_error_texts_carry_no_library_internals() -> None:
    truncated = png(200, 200)[:-400]
    with pytest.raises(ImageDecodeError) as info:
        decode_image(truncated)
    assert str(info.value) == "cannot decode the PNG data (corrupt or truncated?)"
    assert info.value.__cause__ is not None  # the library's words, for the log
