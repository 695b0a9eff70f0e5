"""Tiled ("full + slices", SAHI-style) inference for small objects. NumPy + Pillow only.

The model sees a whole photo letterboxed to its `metadata.input_size` (384 px for the bundled
model), so on a large photo an object under ~20 px shrinks below what the FCOS levels resolve.
Tiling cuts the image into overlapping windows (`auto`: two levels, ~1.85x and ~1.28x the input
size), runs each window through the same letterbox + model + decode as the whole image, maps
the boxes back to original pixels, and `export.tile_merge.merge` joins them with the whole
image's boxes.

    plan_tiles(w, h, input_size, tile)  -> windows, [] = no tiling
    run_tiles(image, windows, infer, metadata, cfg)  -> [(window, Detections)] in original px
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Sequence

import numpy as np
from PIL import Image

from export.decode_budget import check_deadline
from export.inferer import Outputs
from export.metadata import ModelMetadata
from export.postprocess import Detections, PostprocessConfig, postprocess
from export.preprocess import ALLOWED_FORMATS, preprocess

Window = tuple[int, int, int, int]  # x0, y0, x1, y1 in original pixels (x1, y1 exclusive)
Tile = str | int  # "off", "auto" or a grid size N (N x N tiles)

TILE_MODES = ("off", "auto")  # plus an int grid size 1..MAX_GRID
MAX_GRID = 8  # 8 x 8 = 64 model runs: past that a grid costs seconds per image on the CPU target
# Neighbouring tiles share 20% of a tile side (SAHI's default overlap ratio): an object up to
# ~20% of a tile wide lies whole in at least one tile, so the tile that cuts it can drop it.
DEFAULT_OVERLAP = 0.2
# At most this many tile runs per image (plus the whole-image run): a 40 MP photo under `auto`
# would otherwise need ~170 tiles at 384 px. 16 = a 4 x 4 grid, i.e. ~17x the untiled cost.
DEFAULT_MAX_TILES = 16
# `auto`'s coarse tiles are about this x input_size a side (710 px for the bundled 384 px
# model), the grid then follows from the image size (`_auto_count`). On the 118 2x2 mosaics of
# val (1280 px; models/TRAINING_LOG.md "Tiled inference"), mAP@0.5 with one level of tiles of
# 1.28 / 1.50 / 1.85 / 2.00 / 2.22 x 384 px: 0.323 / 0.343 / 0.362 / 0.354 / 0.335 (untiled
# 0.290-0.294). The model learnt VOC photos of ~500 px letterboxed to 384, so it knows objects
# at the scale a tile of ~1.7-1.9x its input gives a photo-sized region. A 1280 px image gets
# 2 x 2 coarse tiles; 2 tiles along a side start at 1.4 x 710.4 = 995 px, 3 at 2.2 x 710.4 =
# 1563 px.
AUTO_TILE_RATIO = 1.85
# ... plus a fine level of tiles about this x input_size (492 px, a 3 x 3 grid, on 1280 px),
# which sees objects 1.45x larger than the coarse one: small ones the coarse tiles still
# shrink below what the model resolves. Alone the fine level is worse (0.323 above); with the
# coarse one the mosaics score 0.377 against 0.362 (AP_small 0.011 against 0.001), near the
# 0.377-0.379 of tiles laid exactly on the mosaics' four photos. The fine level is added only
# where the coarse one tiles, and only whole within the tile budget: a 1280 px image costs
# 1 + 4 + 9 = 14 model runs, 2.8x coarse tiling alone.
AUTO_FINE_TILE_RATIO = 1.28
# ... and only when the short side is above this x input_size (576 px at 384). Tiling pays by
# content, not by pixel count: 2 x 2 tiles gain +0.068 mAP@0.5 on 2x2 mosaics of val at 1280 px
# and the same +0.067 at 768 px, and lose 0.034 on the 640 px val photos (and lose as much on
# them upscaled), so no image size is a break-even; `auto` bets that images with a side of
# ~1000 px or more (above) and a short side above 1.5x the input hold smaller objects than the
# ~500-640 px photos the model was trained on, and leaves those photos untiled (identical
# boxes, one model run). Ask for `tile=2` for smaller collages.
AUTO_MIN_SHORT_SIDE_RATIO = 1.5


def parse_tile(value: str | int) -> Tile:
    """`"off"`, `"auto"` or a grid size 1..MAX_GRID (an int, or its decimal string) -> the value;
    ValueError otherwise. A grid of 1 is one tile = the whole image, i.e. the same as "off"."""
    message = f"tile must be off, auto or a grid size 1-{MAX_GRID}, not {value!r}"
    if isinstance(value, bool):
        raise ValueError(message)
    if isinstance(value, int):
        n = value
    else:
        text = str(value).strip().lower()
        if text in TILE_MODES:
            return text
        try:
            n = int(text)
        except ValueError:
            raise ValueError(message) from None
    if not 1 <= n <= MAX_GRID:
        raise ValueError(message)
    return n


def _axis_starts(length: int, count: int, overlap: float) -> tuple[int, list[int]]:
    """(tile side, starts) of `count` tiles covering [0, length) with `overlap` between
    neighbours: side = length / (1 + (count - 1)(1 - overlap)), starts evenly spaced so that the
    last tile ends at `length`."""
    side = min(length, math.ceil(length / (1 + (count - 1) * (1.0 - overlap))))
    if count == 1:
        return side, [0]
    return side, [round(i * (length - side) / (count - 1)) for i in range(count)]


def _auto_count(length: int, target: float, overlap: float) -> int:
    """Tiles along one axis so each is about `target` px: solve length = t(1 + (n-1)(1-o))."""
    return max(1, round(1 + (length / target - 1) / (1.0 - overlap)))


def _grid(width: int, height: int, nx: int, ny: int, overlap: float) -> list[Window]:
    """nx x ny windows with `overlap`, row-major."""
    tw, xs = _axis_starts(width, nx, overlap)
    th, ys = _axis_starts(height, ny, overlap)
    return [(x, y, x + tw, y + th) for y in ys for x in xs]


def _fit(nx: int, ny: int, max_tiles: int) -> tuple[int, int]:
    """Reduce the larger count first until nx * ny <= max_tiles."""
    while nx * ny > max_tiles:
        if nx >= ny:
            nx -= 1
        else:
            ny -= 1
    return nx, ny


def plan_tiles(
    width: int,
    height: int,
    input_size: int,
    tile: Tile,
    overlap: float = DEFAULT_OVERLAP,
    max_tiles: int = DEFAULT_MAX_TILES,
) -> list[Window]:
    """Tile windows (x0, y0, x1, y1) in original pixels; [] = no tiling.

    "off", grid 1, `max_tiles` < 2 or an image whose long side is <= input_size (the whole-image
    pass already sees every pixel): []. An int N: an N x N grid, row-major. "auto": only when
    the short side is above AUTO_MIN_SHORT_SIDE_RATIO x input_size, a coarse grid with per-axis
    counts so each tile is about AUTO_TILE_RATIO x input_size px (one along a side shorter
    than 1.4x that: [] when both are), then a fine grid of about AUTO_FINE_TILE_RATIO x
    input_size px when it fits whole in what is left of `max_tiles` (coarse windows first,
    each grid row-major). Counts are reduced (the larger first) until nx * ny <= max_tiles.
    Symmetric in (width, height), so the header size decides whether an image is tiled before
    the EXIF orientation is known.
    """
    tile = parse_tile(tile)
    if not 0.0 <= overlap < 1.0:
        raise ValueError(f"overlap must be in [0, 1), not {overlap}")
    if tile == "off" or tile == 1 or max_tiles < 2 or max(width, height) <= input_size:
        return []
    if tile != "auto":
        nx, ny = _fit(int(tile), int(tile), max_tiles)
        return _grid(width, height, nx, ny, overlap) if nx * ny >= 2 else []
    if min(width, height) <= AUTO_MIN_SHORT_SIDE_RATIO * input_size:
        return []
    levels = []
    for ratio in (AUTO_TILE_RATIO, AUTO_FINE_TILE_RATIO):
        target = ratio * input_size
        levels.append((_auto_count(width, target, overlap), _auto_count(height, target, overlap)))
    nx, ny = _fit(*levels[0], max_tiles)
    if nx * ny < 2:
        return []
    windows = _grid(width, height, nx, ny, overlap)
    fx, fy = levels[1]
    if (fx, fy) != (nx, ny) and len(windows) + fx * fy <= max_tiles:
        windows += _grid(width, height, fx, fy, overlap)
    return windows


def image_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from the image header (no pixel decode), or None if Pillow cannot read
    it (the caller's decode then raises its own, specific error)."""
    try:
        with Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS) as img:  # as decode_image
            return img.size
    except Exception:
        return None


def shift(dets: Detections, window: Window) -> Detections:
    """A tile's detections, (K, 4) xyxy in tile pixels -> (K, 4) xyxy in original pixels."""
    offset = np.asarray([window[0], window[1], window[0], window[1]], dtype=np.float32)
    return Detections((dets.boxes + offset).astype(np.float32), dets.scores, dets.class_ids)


def run_tiles(
    image: Image.Image,
    windows: Sequence[Window],
    infer: Callable[[np.ndarray], Outputs],
    metadata: ModelMetadata,
    cfg: PostprocessConfig = PostprocessConfig(),
    deadline: float | None = None,
    batch: bool = False,
) -> list[tuple[Window, Detections]]:
    """Each window of `image` through letterbox + `infer` + postprocess (the whole image's
    pipeline) -> [(window, detections in original pixels)], in the order of `windows`.
    `deadline` is checked before each model call. `batch`: one model call per tensor shape (the
    windows of one plan_tiles grid share a size, so a grid is one call); else one per tile."""
    m = metadata
    prepared = []
    for window in windows:
        check_deadline(deadline)
        prepared.append(preprocess(image.crop(window), m.input_size, m.mean, m.std))
    groups: dict[tuple[int, ...], list[int]] = {}  # one model call each: indices of windows
    for i, (tensor, _) in enumerate(prepared):
        groups.setdefault(tensor.shape if batch else (i,), []).append(i)
    found: dict[int, Detections] = {}
    for members in groups.values():
        check_deadline(deadline)
        tensor = np.concatenate([prepared[i][0] for i in members])  # (T, 3, H, W)
        cls, box, ctr = infer(tensor)
        for k, i in enumerate(members):
            lb = prepared[i][1]
            dets = postprocess(cls[k], box[k], ctr[k], tensor.shape[2:], m.strides, lb, cfg)
            found[i] = shift(dets, windows[i])
    return [(window, found[i]) for i, window in enumerate(windows)]
