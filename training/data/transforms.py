"""Geometric transforms on (image HxWx3 uint8, boxes (N,4) float32 xyxy px, labels (N,) int64).

NumPy + Pillow only. Every function returns valid boxes: inside the image, x2 > x1, y2 > y1.
Randomness always comes from a `numpy.random.Generator` argument.
Colour jitter lives in `color.py`; Mosaic and MixUp in `mosaic.py`.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import numpy as np
from PIL import Image

from export.preprocess import letterbox_size

Item = tuple[np.ndarray, np.ndarray, np.ndarray]  # (image HxWx3 uint8, boxes (N,4), labels (N,))
PadValue = tuple[int, int, int]

MIN_BOX_SIZE = 2.0  # px: narrower or shorter boxes are dropped after augmentation
MIN_VISIBLE = 0.25  # fraction of a box's area that must stay inside the image to keep it


def mean_color(mean: Sequence[float]) -> PadValue:
    """The uint8 RGB colour that normalises to ~0 (mean on a 0..1 scale -> 0..255)."""
    r, g, b = (round(float(m) * 255.0) for m in mean)
    return r, g, b


def box_area(boxes: np.ndarray) -> np.ndarray:
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def filter_boxes(
    boxes: np.ndarray,
    labels: np.ndarray,
    width: int,
    height: int,
    min_size: float = MIN_BOX_SIZE,
    min_visible: float = MIN_VISIBLE,
) -> tuple[np.ndarray, np.ndarray]:
    """Clip boxes to the width x height image, then drop those narrower or shorter than
    `min_size` px, or keeping less than `min_visible` of their area (before clipping)."""
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    before = box_area(boxes)
    out = np.empty_like(boxes)
    np.clip(boxes[:, 0::2], 0.0, float(width), out=out[:, 0::2])
    np.clip(boxes[:, 1::2], 0.0, float(height), out=out[:, 1::2])
    w = out[:, 2] - out[:, 0]
    h = out[:, 3] - out[:, 1]
    keep = (w > 0) & (h > 0) & (w >= min_size) & (h >= min_size)
    keep &= w * h >= min_visible * before
    return out[keep], np.asarray(labels, dtype=np.int64)[keep]


def paste_resized(
    canvas: np.ndarray, image: np.ndarray, out_w: int, out_h: int, x0: int, y0: int
) -> None:
    """Resize `image` (bilinear) to out_w x out_h and paste it with its top-left at (x0, y0).

    Only the part that lands inside the canvas is resampled (Pillow's `box` argument), which
    gives the same pixels as resizing everything and cropping, at a fraction of the cost.
    """
    ch, cw = canvas.shape[:2]
    vx0, vy0 = max(x0, 0), max(y0, 0)
    vx1, vy1 = min(x0 + out_w, cw), min(y0 + out_h, ch)
    if vx1 <= vx0 or vy1 <= vy0:
        return
    h, w = image.shape[:2]
    if (out_w, out_h) == (w, h):
        canvas[vy0:vy1, vx0:vx1] = image[vy0 - y0 : vy1 - y0, vx0 - x0 : vx1 - x0]
        return
    pil = Image.fromarray(image)
    if (vx0, vy0, vx1, vy1) == (x0, y0, x0 + out_w, y0 + out_h):
        resized = pil.resize((out_w, out_h), Image.Resampling.BILINEAR)
    else:
        sx, sy = w / out_w, h / out_h
        box = ((vx0 - x0) * sx, (vy0 - y0) * sy, (vx1 - x0) * sx, (vy1 - y0) * sy)
        resized = pil.resize((vx1 - vx0, vy1 - vy0), Image.Resampling.BILINEAR, box=box)
    canvas[vy0:vy1, vx0:vx1] = np.asarray(resized)


def place(
    image: np.ndarray,
    boxes: np.ndarray,
    out_w: int,
    out_h: int,
    x0: int,
    y0: int,
    canvas: np.ndarray,
) -> np.ndarray:
    """Paste `image` resized to out_w x out_h at (x0, y0); returns its boxes mapped the same
    way (not clipped: `filter_boxes` does that, knowing the area before clipping)."""
    h, w = image.shape[:2]
    paste_resized(canvas, image, out_w, out_h, x0, y0)
    scale = np.asarray([out_w / w, out_h / h, out_w / w, out_h / h], dtype=np.float32)
    offset = np.asarray([x0, y0, x0, y0], dtype=np.float32)
    return np.asarray(boxes, dtype=np.float32).reshape(-1, 4) * scale + offset


@functools.lru_cache(maxsize=8)
def _blank(size: int, pad_value: PadValue) -> np.ndarray:
    canvas = np.empty((size, size, 3), dtype=np.uint8)
    canvas[...] = np.asarray(pad_value, dtype=np.uint8)
    canvas.flags.writeable = False
    return canvas


def new_canvas(size: int, pad_value: PadValue) -> np.ndarray:
    """A size x size x 3 uint8 canvas filled with `pad_value` (a copy of a cached template)."""
    return _blank(size, tuple(pad_value)).copy()


def letterbox(
    image: np.ndarray, boxes: np.ndarray, labels: np.ndarray, size: int, pad_value: PadValue
) -> Item:
    """Eval: resize so the longer side is `size` (same sizes and resampling as
    `export.preprocess.preprocess`), place top-left on a size x size canvas, pad the rest."""
    h, w = image.shape[:2]
    _, rw, rh, _, _ = letterbox_size(w, h, size)
    canvas = new_canvas(size, pad_value)
    out = place(image, boxes, rw, rh, 0, 0, canvas)
    out_boxes, out_labels = filter_boxes(out, labels, size, size, min_size=0.0, min_visible=0.0)
    return canvas, out_boxes, out_labels


def random_offset(extent: int, size: int, rng: np.random.Generator) -> int:
    """Where a span of `extent` px starts on a `size` px axis: a random pad if it is shorter,
    a random crop (negative offset) if it is longer."""
    if extent <= size:
        return int(rng.integers(0, size - extent + 1))
    return -int(rng.integers(0, extent - size + 1))


def jittered_size(
    w: int, h: int, r: float, rng: np.random.Generator, aspect_jitter: float = 0.0
) -> tuple[int, int]:
    """w x h scaled by r, then (aspect_jitter j > 0) stretched: the width/height ratio is
    multiplied by a log-uniform factor in [1/(1+j), 1+j], the area kept. j = 0 draws nothing."""
    rx = ry = r
    if aspect_jitter > 0:
        half = 0.5 * math.log1p(aspect_jitter)
        stretch = math.exp(float(rng.uniform(-half, half)))  # sqrt of the ratio factor
        rx, ry = r * stretch, r / stretch
    return max(1, round(w * rx)), max(1, round(h * ry))


def random_scale_letterbox(
    image: np.ndarray,
    boxes: np.ndarray,
    labels: np.ndarray,
    size: int,
    rng: np.random.Generator,
    scale_range: tuple[float, float] = (0.5, 1.5),
    pad_value: PadValue = (124, 116, 104),
    min_size: float = MIN_BOX_SIZE,
    min_visible: float = MIN_VISIBLE,
    aspect_jitter: float = 0.0,
) -> Item:
    """Scale jitter + letterbox to a size x size canvas.

    The image is resized so its longer side is size * s, s ~ U(scale_range) (aspect ratio
    kept, unless `aspect_jitter` stretches it: `jittered_size`); an axis shorter than the
    canvas is placed at a random offset and padded with `pad_value`, a longer one is randomly
    cropped.
    """
    h, w = image.shape[:2]
    s = rng.uniform(*scale_range)
    tw, th = jittered_size(w, h, size * s / max(w, h), rng, aspect_jitter)
    x0, y0 = random_offset(tw, size, rng), random_offset(th, size, rng)
    canvas = new_canvas(size, pad_value)
    out = place(image, boxes, tw, th, x0, y0, canvas)
    out_boxes, out_labels = filter_boxes(out, labels, size, size, min_size, min_visible)
    return canvas, out_boxes, out_labels


def hflip(image: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mirror left-right: x -> W - x (boxes stay valid: x1' = W - x2 < x2' = W - x1).

    The image is returned as a view (negative stride, no copy); `np.ascontiguousarray` it
    before handing it to Pillow or torch.
    """
    w = image.shape[1]
    flipped = image[:, ::-1]
    b = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    out = np.stack([w - b[:, 2], b[:, 1], w - b[:, 0], b[:, 3]], axis=1).astype(np.float32)
    return flipped, out


def random_hflip(
    image: np.ndarray, boxes: np.ndarray, rng: np.random.Generator, prob: float = 0.5
) -> tuple[np.ndarray, np.ndarray]:
    if prob > 0 and rng.random() < prob:
        return hflip(image, boxes)
    return image, boxes
