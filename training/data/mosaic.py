"""Strong augmentation that mixes images: Mosaic (4 images) and MixUp (2 images), as in YOLOX."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image

from training.data.transforms import (
    MIN_BOX_SIZE,
    MIN_VISIBLE,
    Item,
    PadValue,
    filter_boxes,
    jittered_size,
    new_canvas,
    place,
)


def _window_offset(center: float, extent: float, size: int, rng: np.random.Generator) -> float:
    """Offset of the size-px output window on an `extent`-px mosaic axis. A larger mosaic is
    cropped with the window kept around the mosaic centre; a smaller one is padded at random."""
    if extent >= size:
        lo, hi = max(0.0, center - size), min(extent - size, center)
        return float(rng.uniform(lo, hi))
    return float(rng.uniform(extent - size, 0.0))


def mosaic(
    tiles: Sequence[Item],
    size: int,
    rng: np.random.Generator,
    scale_range: tuple[float, float] = (0.5, 1.5),
    center_range: tuple[float, float] = (0.5, 1.5),
    pad_value: PadValue = (124, 116, 104),
    min_size: float = MIN_BOX_SIZE,
    min_visible: float = MIN_VISIBLE,
    aspect_jitter: float = 0.0,
) -> Item:
    """Mosaic of 4 images on a size x size canvas.

    Conceptually (YOLOX): each image is letterboxed to a longer side of `size` and the four
    are placed around a centre (xc, yc) ~ U(center_range) * size of a 2*size canvas (top-left,
    top-right, bottom-left, bottom-right, each touching the centre); the 2*size canvas is then
    scaled by g ~ U(scale_range) and a size x size window containing the centre is cut out
    (or, when 2*size*g < size, the whole mosaic is padded at a random offset). It is computed
    directly: each tile is resized once, only over its visible part; `aspect_jitter` stretches
    each tile on its own (`jittered_size`). Boxes are clipped and
    filtered (`filter_boxes`); labels follow their boxes.
    """
    if len(tiles) != 4:
        raise ValueError(f"mosaic needs 4 images, got {len(tiles)}")
    g = float(rng.uniform(*scale_range))
    xc, yc = rng.uniform(*center_range, size=2) * size
    extent = 2.0 * size * g
    cx = round(xc * g - _window_offset(xc * g, extent, size, rng))
    cy = round(yc * g - _window_offset(yc * g, extent, size, rng))
    canvas = new_canvas(size, pad_value)
    boxes_out: list[np.ndarray] = []
    labels_out: list[np.ndarray] = []
    for k, (image, boxes, labels) in enumerate(tiles):
        h, w = image.shape[:2]
        tw, th = jittered_size(w, h, size * g / max(w, h), rng, aspect_jitter)
        x0 = cx - tw if k in (0, 2) else cx
        y0 = cy - th if k in (0, 1) else cy
        placed = place(image, boxes, tw, th, x0, y0, canvas)
        b, lab = filter_boxes(placed, labels, size, size, min_size, min_visible)
        boxes_out.append(b)
        labels_out.append(lab)
    return canvas, np.concatenate(boxes_out), np.concatenate(labels_out)


def mixup(first: Item, second: Item, rng: np.random.Generator, beta: float = 1.5) -> Item:
    """Blend two same-size images, lambda ~ Beta(beta, beta) for `first`; boxes and labels of
    both are kept (concatenated, `first`'s first)."""
    img_a, boxes_a, labels_a = first
    img_b, boxes_b, labels_b = second
    if img_a.shape != img_b.shape:
        raise ValueError(f"mixup needs images of one shape, got {img_a.shape} and {img_b.shape}")
    lam = float(rng.beta(beta, beta))
    # Image.blend: a * (1 - alpha) + b * alpha, in C.
    blended = Image.blend(Image.fromarray(img_a), Image.fromarray(img_b), 1.0 - lam)
    boxes = np.concatenate([boxes_a, boxes_b]).astype(np.float32)
    labels = np.concatenate([labels_a, labels_b]).astype(np.int64)
    return np.asarray(blended), boxes, labels
