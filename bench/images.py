"""Benchmark images: deterministic synthetic "photos" or a real image resized, as JPEG bytes."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

# name -> (width, height): a typical VOC photo, a Full-HD frame, and a square for the 4:3 ratio.
SIZES: dict[str, tuple[int, int]] = {
    "500x375": (500, 375),
    "1920x1080": (1920, 1080),
    "500x500": (500, 500),
}
JPEG_QUALITY = 90


def _smooth_noise(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """(height, width, 3) float in [0, 1]: octaves of upsampled random fields (1/f-like)."""
    out = np.zeros((height, width, 3), np.float32)
    for octave in range(6):
        cells = 2 ** (octave + 1)
        field = rng.random((cells, cells * width // height + 1, 3)).astype(np.float32)
        img = Image.fromarray((field * 255).astype(np.uint8), "RGB")
        up = np.asarray(img.resize((width, height), Image.Resampling.BICUBIC), np.float32)
        out += up / 255.0 / 2**octave
    out -= out.min()
    return out / max(float(out.max()), 1e-6)


def synthetic_photo(width: int = 1920, height: int = 1080, seed: int = 0) -> Image.Image:
    """A deterministic natural-looking RGB image: smooth colour noise (sky/ground-like
    gradients and texture), a few dozen soft-edged shapes, mild blur and sensor noise. Its JPEG
    size and decode cost are close to a real photo's, unlike flat colour or white noise."""
    rng = np.random.default_rng(seed)
    base = _smooth_noise(rng, width, height)
    vertical = np.linspace(0.2, -0.2, height, dtype=np.float32)[:, None, None]
    base = np.clip(base * 0.8 + vertical + 0.1, 0, 1)
    img = Image.fromarray((base * 255).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(img)
    scale = min(width, height)
    for _ in range(40):
        cx, cy = rng.integers(0, width), rng.integers(0, height)
        rx, ry = rng.integers(scale // 40, scale // 6, size=2)
        colour = tuple(int(c) for c in rng.integers(0, 256, size=3))
        box = (int(cx - rx), int(cy - ry), int(cx + rx), int(cy + ry))
        if rng.random() < 0.5:
            draw.ellipse(box, fill=colour)
        else:
            draw.rectangle(box, fill=colour)
    img = img.filter(ImageFilter.GaussianBlur(radius=max(1.0, scale / 600)))
    arr = np.asarray(img, np.float32) + rng.normal(0.0, 4.0, size=(height, width, 3))
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")


def encode_jpeg(image: Image.Image, quality: int = JPEG_QUALITY) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def bench_images(path: Path | None = None, seed: int = 0) -> tuple[dict[str, bytes], str]:
    """JPEG bytes for every entry of SIZES, and a description of where they came from.

    `path`: a real photo, resized (Lanczos, aspect not preserved) to each size. Default: one
    synthetic 1920x1080 photo (`synthetic_photo(seed)`), resized the same way.
    """
    if path is not None:
        with Image.open(path) as src:
            source = src.convert("RGB")
        origin = f"{path} ({source.width}x{source.height}), resized"
    else:
        source = synthetic_photo(1920, 1080, seed)
        origin = f"synthetic photo (bench.images.synthetic_photo, seed {seed}), resized"
    out = {}
    for name, size in SIZES.items():
        img = source if source.size == size else source.resize(size, Image.Resampling.LANCZOS)
        out[name] = encode_jpeg(img)
    return out, origin


def write_calibration_images(directory: Path, count: int, seed: int = 100) -> list[Path]:
    """`count` synthetic photos (640x480, different seeds) as JPEGs: INT8 calibration for
    speed measurements when no real images are given (not for accuracy)."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        path = directory / f"synthetic_{i:03d}.jpg"
        path.write_bytes(encode_jpeg(synthetic_photo(640, 480, seed + i)))
        paths.append(path)
    return paths
