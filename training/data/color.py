"""HSV colour jitter, as in YOLOX/YOLOv5, done with one Pillow 3D lookup table.

Converting a 512x512 image to HSV and back with Pillow costs ~20 ms; instead the exact HSV
transform is evaluated on a 17^3 RGB grid and applied with `ImageFilter.Color3DLUT`
(trilinear interpolation in C, ~6 ms). Boxes are unaffected. The loader can also only draw
the jitter (`draw_hsv`) and leave applying it to the GPU (training/data/hsv_device.py), where
it is exact and nearly free: this table is a third to a half of a worker's time per sample.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageFilter

LUT_SIZE = 17


def _rgb_to_hsv(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r, g, b = rgb[:, 0], rgb[:, 1], rgb[:, 2]
    mx, mn = rgb.max(axis=1), rgb.min(axis=1)
    d = mx - mn
    safe = np.where(d > 0, d, 1.0)
    h = np.where(
        mx == r,
        ((g - b) / safe) % 6.0,
        np.where(mx == g, (b - r) / safe + 2.0, (r - g) / safe + 4.0),
    )
    h = np.where(d > 0, h / 6.0, 0.0)
    s = np.where(mx > 0, d / np.where(mx > 0, mx, 1.0), 0.0)
    return h, s, mx


def _hsv_to_rgb(h: np.ndarray, s: np.ndarray, v: np.ndarray) -> np.ndarray:
    h6 = (h % 1.0) * 6.0
    i = np.floor(h6).astype(np.int64) % 6
    f = h6 - np.floor(h6)
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    table = np.stack([
        np.stack([v, t, p], 1), np.stack([q, v, p], 1), np.stack([p, v, t], 1),
        np.stack([p, q, v], 1), np.stack([t, p, v], 1), np.stack([v, p, q], 1),
    ])  # fmt: skip
    return table[i, np.arange(len(i))]


def hsv_lut(hue_shift: float, sat_gain: float, val_gain: float) -> ImageFilter.Color3DLUT:
    """Lookup table for: hue += hue_shift (fraction of the circle), S *= sat_gain,
    V *= val_gain (S and V clipped to [0, 1])."""
    g = np.linspace(0.0, 1.0, LUT_SIZE)
    b, gg, r = np.meshgrid(g, g, g, indexing="ij")  # red varies fastest, as Pillow expects
    rgb = np.stack([r.ravel(), gg.ravel(), b.ravel()], axis=1)
    h, s, v = _rgb_to_hsv(rgb)
    out = _hsv_to_rgb(h + hue_shift, np.clip(s * sat_gain, 0, 1), np.clip(v * val_gain, 0, 1))
    return ImageFilter.Color3DLUT(LUT_SIZE, out.astype(np.float32), channels=3)


IDENTITY_HSV = np.asarray([0.0, 1.0, 1.0])  # no hue shift, unit gains


def draw_hsv(
    rng: np.random.Generator, hue: float = 0.015, sat: float = 0.7, val: float = 0.4
) -> np.ndarray:
    """(3,) float64 [hue shift, saturation gain, value gain]: the shift ~ U(-hue, hue) of the
    circle, the gains ~ U(1 - sat, 1 + sat) and U(1 - val, 1 + val). All three zero: the
    identity, and nothing is drawn from `rng`."""
    if hue <= 0 and sat <= 0 and val <= 0:
        return IDENTITY_HSV.copy()
    dh, ds, dv = rng.uniform(-1.0, 1.0, 3) * np.asarray([hue, sat, val])
    return np.asarray([dh, 1.0 + ds, 1.0 + dv])


def apply_hsv(image: np.ndarray, gains: np.ndarray) -> np.ndarray:
    """HxWx3 uint8 image, (3,) `draw_hsv` gains -> a new HxWx3 uint8 image (the image itself
    for the identity)."""
    if np.array_equal(gains, IDENTITY_HSV):
        return image
    lut = hsv_lut(float(gains[0]), float(gains[1]), float(gains[2]))
    return np.asarray(Image.fromarray(np.ascontiguousarray(image)).filter(lut))
