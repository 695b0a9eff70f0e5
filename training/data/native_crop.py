"""Native-resolution crops (`--crop-scale native`): an input-sized window cut from the photo at
about its own scale, instead of the whole photo shrunk to the input.

With photos much larger than the input (1280 px photos, a 384 px input) the fit scale shrinks
every object 3.3x and small ones fall below what the stride-8 level resolves; a native crop
keeps objects near the size they have in the photo and shows a part of it instead. Tiled
inference at serve time (export/tiling.py) looks at photos the same way.

Same conventions as transforms.py: (image HxWx3 uint8, boxes (N,4) float32 xyxy px, labels (N,)
int64), valid boxes out, randomness from a `numpy.random.Generator` argument.
"""

from __future__ import annotations

import math

import numpy as np

from training.data.transforms import (
    MIN_BOX_SIZE,
    MIN_VISIBLE,
    Item,
    PadValue,
    filter_boxes,
    jittered_size,
    new_canvas,
    place,
    random_offset,
)

# How a training view is scaled: fit = the whole photo letterboxed to the input, times the
# scale jitter (transforms.random_scale_letterbox); native = the photo's own pixels times the
# jitter, an input-sized window cut out (native_crop). training/config.py lists the same names.
CROP_SCALES: tuple[str, ...] = ("fit", "native")
# Odds that a window is placed around a random box rather than anywhere: a random window of a
# large sparse photo is mostly background (a 384 px window covers 9% of a 1280 px square
# photo), which teaches little; the other half, placed anywhere, keeps background and photo
# edges in the data.
OBJECT_BIAS = 0.5


def native_scale(
    w: int, h: int, size: int, rng: np.random.Generator, scale_range: tuple[float, float]
) -> float:
    """Output px per photo px: s ~ U(scale_range) around 1:1, never below the whole-image fit
    (size / longer side: a smaller photo would only leave more of the canvas empty)."""
    return max(float(rng.uniform(*scale_range)), size / max(w, h))


def object_centre(
    boxes: np.ndarray, rng: np.random.Generator, bias: float = OBJECT_BIAS
) -> np.ndarray | None:
    """(2,) xy centre of a random box, with odds `bias` (when there are boxes); else None."""
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)  # (N, 4) xyxy
    if len(boxes) == 0 or bias <= 0 or rng.random() >= bias:
        return None
    x1, y1, x2, y2 = boxes[int(rng.integers(0, len(boxes)))]
    return np.asarray([(x1 + x2) / 2.0, (y1 + y2) / 2.0], dtype=np.float64)


def window_start(
    extent: int, window: int, rng: np.random.Generator, centre: float | None = None
) -> int:
    """Where a `window`-px window starts on an `extent`-px axis: 0 when it spans the axis;
    with `centre` (px on the axis) such that the centre lands at a uniform place inside it
    (so objects are not always in the middle), else anywhere."""
    if extent <= window:
        return 0
    if centre is None:
        return int(rng.integers(0, extent - window + 1))
    start = math.ceil(centre - rng.uniform(0.0, window))
    return min(max(start, 0), extent - window)


def crop_at(
    image: np.ndarray,
    boxes: np.ndarray,
    labels: np.ndarray,
    size: int,
    out_w: int,
    out_h: int,
    x0: int,
    y0: int,
    pad_value: PadValue,
    min_size: float = MIN_BOX_SIZE,
    min_visible: float = MIN_VISIBLE,
) -> Item:
    """The photo resized to out_w x out_h with its top-left at canvas (x0, y0) (negative: the
    window starts inside the photo) on a size x size canvas; boxes mapped, clipped, and dropped
    below `min_size` px or `min_visible` of their area (`filter_boxes`)."""
    canvas = new_canvas(size, pad_value)
    mapped = place(image, boxes, out_w, out_h, x0, y0, canvas)  # (N, 4) xyxy canvas px
    out_boxes, out_labels = filter_boxes(mapped, labels, size, size, min_size, min_visible)
    return canvas, out_boxes, out_labels


def _offset(extent: int, size: int, rng: np.random.Generator, centre: float | None) -> int:
    """Canvas offset of an `extent`-px axis: a random pad if it is shorter than the canvas (as
    `random_offset`), else minus a window start (`window_start`)."""
    if extent <= size:
        return random_offset(extent, size, rng)
    return -window_start(extent, size, rng, centre)


def native_crop(
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
    object_bias: float = OBJECT_BIAS,
) -> Item:
    """A single view at native scale: the photo scaled by `native_scale` (aspect jitter as
    `jittered_size`), a size x size window cut out, placed around a random box with odds
    `object_bias`; an axis shorter than the canvas is padded at a random offset.

    The arguments of `transforms.random_scale_letterbox`, which it replaces (crop_scale
    "native"), with the scale range read against the photo's pixels, not the whole-image fit.
    """
    h, w = image.shape[:2]
    s = native_scale(w, h, size, rng, scale_range)
    tw, th = jittered_size(w, h, s, rng, aspect_jitter)
    centre = object_centre(boxes, rng, object_bias)
    cx = None if centre is None else float(centre[0]) * tw / w  # output px
    cy = None if centre is None else float(centre[1]) * th / h
    x0, y0 = _offset(tw, size, rng, cx), _offset(th, size, rng, cy)
    return crop_at(image, boxes, labels, size, tw, th, x0, y0, pad_value, min_size, min_visible)


def native_tile(
    image: np.ndarray,
    boxes: np.ndarray,
    labels: np.ndarray,
    size: int,
    rng: np.random.Generator,
    min_visible: float = MIN_VISIBLE,
    object_bias: float = OBJECT_BIAS,
) -> Item:
    """A Mosaic tile at native scale: a window of at most size x size px cut from the photo at
    1:1 (no resampling; around a random box with odds `object_bias`); a photo within size x
    size is returned whole. Mosaic then resizes the tile to a longer side of size x g, g ~
    U(scale_range), so its objects end at g x their photo size: the single view's jitter
    around 1:1, never smaller than a fit-mode tile shows them. Boxes are clipped to the window
    and dropped below `min_visible` of their area (Mosaic's own cut applies the rule again, to
    what is left); the size filter is left to Mosaic, which measures boxes after its resize."""
    h, w = image.shape[:2]
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)  # (N, 4) xyxy photo px
    if max(w, h) <= size:
        return image, boxes, np.asarray(labels, dtype=np.int64)
    cw, ch = min(w, size), min(h, size)
    centre = object_centre(boxes, rng, object_bias)
    x = window_start(w, cw, rng, None if centre is None else float(centre[0]))
    y = window_start(h, ch, rng, None if centre is None else float(centre[1]))
    tile = np.ascontiguousarray(image[y : y + ch, x : x + cw])  # Pillow wants contiguous
    shifted = boxes - np.asarray([x, y, x, y], dtype=np.float32)  # (N, 4) xyxy tile px
    out_boxes, out_labels = filter_boxes(shifted, labels, cw, ch, 0.0, min_visible)
    return tile, out_boxes, out_labels
