"""Tiled ("full + slices", SAHI-style) inference for small objects. NumPy + Pillow only.

The model sees a whole photo letterboxed to its `metadata.input_size` (384 px for the bundled
model), so on a large photo an object under ~20 px shrinks below what the FCOS levels resolve.
Tiling cuts the image into overlapping windows (`auto`: ~1.85x the input size), runs each window
through the same letterbox + model + decode as the whole image, maps the boxes back to
original pixels and merges them with the whole image's boxes (`merge`): boxes cut by an inner
tile edge are dropped where another box holds the object, then class-wise NMS whose kept boxes
take the score-weighted mean of the boxes each suppressed (`fuse_clusters`).

    plan_tiles(w, h, input_size, tile)  -> windows, [] = no tiling
    run_tiles(image, windows, infer, metadata, cfg)  -> [(window, Detections)] in original px
    merge(full, tiles, nms_iou, max_detections, image_size)  -> Detections
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Sequence

import numpy as np
from PIL import Image

from export.boxes import batched_nms, box_iou
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
# How `merge` combines the boxes left after the cut rule: "fusion" = class-wise NMS, each kept box
# moved to the score-weighted mean of the boxes it suppressed (weighted box fusion of NMS's own
# clusters; the kept set, scores and classes are NMS's); "nms" = plain class-wise NMS. Paired
# (training.compare --tile T --tile-merge fusion --against-tile-merge nms, 2000 draws),
# fusion - nms in mAP@0.5: 2x2 mosaics of val, `auto` (2 x 2 tiles) +0.006 (95%:
# -0.002..+0.015, higher in 89% of draws), grid 3 +0.005 (+0.000..+0.013); val photos, grid 2
# +0.003 (+0.000..+0.007): never worse, so it is the default. SAHI's greedy NMM (the union of
# boxes with IoS >= 0.5) scored 0.056 on the mosaics with 2 x 2 tiles against NMS's 0.356: at
# the 0.05 candidate threshold a confident box swallows every faint box over it.
MERGE_RULES = ("fusion", "nms")
DEFAULT_MERGE = "fusion"
# At most this many tile runs per image (plus the whole-image run): a 40 MP photo under `auto`
# would otherwise need ~170 tiles at 384 px. 16 = a 4 x 4 grid, i.e. ~17x the untiled cost.
DEFAULT_MAX_TILES = 16
# `auto`'s tiles are about this x input_size a side (710 px for the bundled 384 px model), the
# grid then follows from the image size (`_auto_count`). On the 118 2x2 mosaics of val (1280
# px; models/TRAINING_LOG.md "Tiled inference"), mAP@0.5 with tiles of 1.28 / 1.50 / 1.85 /
# 2.00 / 2.22 x 384 px: 0.323 / 0.343 / 0.362 / 0.354 / 0.335 (untiled 0.290-0.294). The model
# learnt VOC photos of ~500 px letterboxed to 384, so it knows objects at the scale a tile of
# ~1.7-1.9x its input gives a photo-sized region; smaller tiles enlarge objects past that
# scale and cut more of them. A 1280 px image gets 2 x 2 tiles; 2 tiles along a side start at
# 1.4 x 710.4 = 995 px, 3 at 2.2 x 710.4 = 1563 px.
AUTO_TILE_RATIO = 1.85
# ... and only when the short side is above this x input_size (576 px at 384). Tiling pays by
# content, not by pixel count: 2 x 2 tiles gain +0.068 mAP@0.5 on 2x2 mosaics of val at 1280 px
# and the same +0.067 at 768 px, and lose 0.034 on the 640 px val photos (and lose as much on
# them upscaled), so no image size is a break-even; `auto` bets that images with a side of
# ~1000 px or more (above) and a short side above 1.5x the input hold smaller objects than the
# ~500-640 px photos the model was trained on, and leaves those photos untiled (identical
# boxes, one model run). Ask for `tile=2` for smaller collages.
AUTO_MIN_SHORT_SIDE_RATIO = 1.5
# A tile box whose side lies within this many *model-input* pixels of an inner tile edge is
# "cut" by it (the network's boxes end a pixel or two short of the border they touch); in
# original pixels the margin is scaled by the tile's letterbox scale.
EDGE_MARGIN_INPUT_PX = 2.0
# A cut box is dropped when another box of its class (whole image, or a tile where it is not
# cut) covers at least this fraction of its area: that box holds the object. A cut box alone
# (no such holder) is kept: a partial box beats a missed object.
HOLDER_COVERAGE = 0.6


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


def plan_tiles(
    width: int,
    height: int,
    input_size: int,
    tile: Tile,
    overlap: float = DEFAULT_OVERLAP,
    max_tiles: int = DEFAULT_MAX_TILES,
) -> list[Window]:
    """Tile windows (x0, y0, x1, y1) in original pixels, row-major; [] = no tiling.

    "off", grid 1, `max_tiles` < 2 or an image whose long side is <= input_size (the whole-image
    pass already sees every pixel): []. "auto": tiles only when the short side is above
    AUTO_MIN_SHORT_SIDE_RATIO x input_size, with per-axis counts so each tile is about
    AUTO_TILE_RATIO x input_size px (one along a side shorter than 1.4x that: [] when both
    are); an int N: an N x N grid. Counts are reduced (the larger
    first) until nx * ny <= max_tiles. Symmetric in (width, height), so the header size decides
    whether an image is tiled before the EXIF orientation is known.
    """
    tile = parse_tile(tile)
    if not 0.0 <= overlap < 1.0:
        raise ValueError(f"overlap must be in [0, 1), not {overlap}")
    if tile == "off" or tile == 1 or max_tiles < 2 or max(width, height) <= input_size:
        return []
    if tile == "auto":
        if min(width, height) <= AUTO_MIN_SHORT_SIDE_RATIO * input_size:
            return []
        target = AUTO_TILE_RATIO * input_size
        nx, ny = _auto_count(width, target, overlap), _auto_count(height, target, overlap)
    else:
        nx = ny = int(tile)
    while nx * ny > max_tiles:
        if nx >= ny:
            nx -= 1
        else:
            ny -= 1
    if nx * ny < 2:
        return []
    tw, xs = _axis_starts(width, nx, overlap)
    th, ys = _axis_starts(height, ny, overlap)
    return [(x, y, x + tw, y + th) for y in ys for x in xs]


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
    pipeline) -> [(window, detections in original pixels)]. `deadline` is checked before each
    model call. `batch`: one model call for all tiles (they share one tensor shape when their
    crops have the same size, which plan_tiles' windows do)."""
    m = metadata
    prepared = []
    for window in windows:
        check_deadline(deadline)
        prepared.append(preprocess(image.crop(window), m.input_size, m.mean, m.std))
    out: list[tuple[Window, Detections]] = []
    same_shape = len({t.shape for t, _ in prepared}) == 1
    if batch and same_shape and prepared:
        check_deadline(deadline)
        tensor = np.concatenate([t for t, _ in prepared])  # (T, 3, H, W)
        cls, box, ctr = infer(tensor)
        for i, (window, (_, lb)) in enumerate(zip(windows, prepared, strict=True)):
            dets = postprocess(cls[i], box[i], ctr[i], tensor.shape[2:], m.strides, lb, cfg)
            out.append((window, shift(dets, window)))
        return out
    for window, (tensor, lb) in zip(windows, prepared, strict=True):
        check_deadline(deadline)
        cls, box, ctr = infer(tensor)
        dets = postprocess(cls[0], box[0], ctr[0], tensor.shape[2:], m.strides, lb, cfg)
        out.append((window, shift(dets, window)))
    return out


def cut_by_inner_edge(
    boxes: np.ndarray, window: Window, image_size: tuple[int, int], margin: float
) -> np.ndarray:
    """(K, 4) xyxy original pixels -> (K,) bool: the box reaches within `margin` px of a side
    of `window` that is not on the image border."""
    x0, y0, x1, y1 = window
    width, height = image_size
    cut = np.zeros(boxes.shape[0], dtype=bool)
    if x0 > 0:
        cut |= boxes[:, 0] <= x0 + margin
    if y0 > 0:
        cut |= boxes[:, 1] <= y0 + margin
    if x1 < width:
        cut |= boxes[:, 2] >= x1 - margin
    if y1 < height:
        cut |= boxes[:, 3] >= y1 - margin
    return cut


def _edge_margin(window: Window, input_size: int | None) -> float:
    """EDGE_MARGIN_INPUT_PX in the original pixels of `window` (letterboxed to input_size)."""
    if input_size is None:
        return EDGE_MARGIN_INPUT_PX
    long_side = max(window[2] - window[0], window[3] - window[1])
    return EDGE_MARGIN_INPUT_PX * long_side / input_size


def fuse_clusters(
    boxes: np.ndarray,
    scores: np.ndarray,
    class_ids: np.ndarray,
    kept: np.ndarray,
    iou_threshold: float,
) -> np.ndarray:
    """Weighted box fusion of class-wise NMS clusters: (N, 4) xyxy, (N,), (N,), the kept
    indices `batched_nms` returned (by decreasing score) -> (K, 4) the kept boxes' new
    coordinates. Each kept box's cluster is itself plus the boxes of its class it suppressed
    (IoU > iou_threshold, not taken by an earlier kept box: NMS's own assignment); its box
    becomes the score-weighted mean of the cluster. Scores, classes and the kept set are NMS's.
    """
    out = boxes[kept].astype(np.float32, copy=True)
    boxes = boxes.astype(np.float64, copy=False)  # IoU in float64, as `nms` computes it
    free = np.ones(boxes.shape[0], dtype=bool)
    free[kept] = False
    for r, i in enumerate(kept):
        cand = np.flatnonzero(free & (class_ids == class_ids[i]))
        if cand.size == 0:
            continue
        members = cand[box_iou(boxes[i : i + 1], boxes[cand])[0] > iou_threshold]
        if members.size == 0:
            continue
        free[members] = False
        group = np.concatenate([[i], members])
        w = scores[group].astype(np.float64)
        fused = (boxes[group] * w[:, None]).sum(axis=0) / max(w.sum(), 1e-12)
        out[r] = fused.astype(np.float32)
    return out


def merge(
    full: Detections,
    tiles: Sequence[tuple[Window, Detections]],
    nms_iou: float,
    max_detections: int,
    image_size: tuple[int, int],
    input_size: int | None = None,
    rule: str = DEFAULT_MERGE,
) -> Detections:
    """The whole image's detections and each tile's (already in original pixels) -> one set.

    A tile box cut by an inner tile edge (within EDGE_MARGIN_INPUT_PX model-input pixels; the
    margin is 2 original px without `input_size`) is dropped when another uncut box of its
    class covers >= HOLDER_COVERAGE of it (a neighbouring tile or the whole image holds the
    object). Then class-wise NMS at `nms_iou` over everything left, by decreasing score, at
    most `max_detections`; boxes clipped to `image_size` (width, height). `rule` "fusion" (the
    default; MERGE_RULES): each kept box becomes the score-weighted mean of its NMS cluster
    (`fuse_clusters`); "nms": the kept boxes as they are.
    """
    if rule not in MERGE_RULES:
        raise ValueError(f"merge rule must be one of {', '.join(MERGE_RULES)}, not {rule!r}")
    boxes = [full.boxes]  # each (K_i, 4) xyxy
    scores, classes = [full.scores], [full.class_ids]
    cut = [np.zeros(len(full), dtype=bool)]
    for window, dets in tiles:
        boxes.append(dets.boxes)
        scores.append(dets.scores)
        classes.append(dets.class_ids)
        cut.append(cut_by_inner_edge(dets.boxes, window, image_size,
                                     _edge_margin(window, input_size)))  # fmt: skip
    all_boxes = np.concatenate(boxes).astype(np.float32).reshape(-1, 4)  # (N, 4) xyxy
    all_scores = np.concatenate(scores).astype(np.float32)  # (N,)
    all_classes = np.concatenate(classes).astype(np.int64)  # (N,)
    is_cut = np.concatenate(cut)  # (N,)
    keep = np.ones(all_scores.shape[0], dtype=bool)
    cut_idx, holder_idx = np.flatnonzero(is_cut), np.flatnonzero(~is_cut)
    if cut_idx.size and holder_idx.size:
        a, b = all_boxes[cut_idx], all_boxes[holder_idx]  # (C, 4), (H, 4)
        lt = np.maximum(a[:, None, :2], b[None, :, :2])
        rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
        inter = np.prod(np.clip(rb - lt, 0, None), axis=2)  # (C, H)
        area = np.prod(np.clip(a[:, 2:] - a[:, :2], 0, None), axis=1)  # (C,)
        same = all_classes[cut_idx][:, None] == all_classes[holder_idx][None, :]  # (C, H)
        covered = same & (inter >= HOLDER_COVERAGE * np.maximum(area, 1e-6)[:, None])
        keep[cut_idx[covered.any(axis=1)]] = False
    all_boxes, all_scores, all_classes = all_boxes[keep], all_scores[keep], all_classes[keep]
    width, height = image_size
    all_boxes[:, 0::2] = np.clip(all_boxes[:, 0::2], 0, width)
    all_boxes[:, 1::2] = np.clip(all_boxes[:, 1::2], 0, height)
    order = batched_nms(all_boxes, all_scores, all_classes, nms_iou, max_detections)
    kept = all_boxes[order]
    if rule == "fusion":
        kept = fuse_clusters(all_boxes, all_scores, all_classes, order, nms_iou)
    return Detections(kept, all_scores[order], all_classes[order])
