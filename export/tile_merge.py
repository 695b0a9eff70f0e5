"""Merging the boxes of a tiled run (export.tiling): the whole image's and every tile's, all in
original pixels, into one set. NumPy only.

    merge(full, tiles, nms_iou, max_detections, image_size, input_size, rule) -> Detections

Three rules, in order:
1. A tile box inside a confident whole-image box that no tile contains is a part of a large
   object the tiles cut (a dog's head seen by one tile): dropped (`parts_of_large_objects`).
2. A tile box cut by an inner tile edge is dropped when another uncut box of its class holds
   the object (`cut_by_inner_edge`).
3. Class-wise NMS over what is left; with "fusion" each kept box takes the score-weighted
   mean of its cluster (`fuse_clusters`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from export.boxes import batched_nms, box_iou
from export.postprocess import Detections
from export.tiling import Window

# How `merge` combines the boxes left after the cut rule: "fusion" = class-wise NMS, each kept box
# moved to the score-weighted mean of the boxes it suppressed (weighted box fusion of NMS's own
# clusters; the kept set, scores and classes are NMS's); "nms" = plain class-wise NMS. Paired
# (training.compare --tile T --tile-merge fusion --against-tile-merge nms, 2000 draws),
# fusion - nms in mAP@0.5: 2x2 mosaics of val, 2 x 2 tiles +0.006 (95%: -0.002..+0.015,
# higher in 89% of draws), grid 3 +0.005 (+0.000..+0.013); val photos, grid 2 +0.003
# (+0.000..+0.007): never worse, so it is the default. SAHI's greedy NMM (the union of boxes
# with IoS >= 0.5) scored 0.056 on the mosaics with 2 x 2 tiles against NMS's 0.356: at the
# 0.05 candidate threshold a confident box swallows every faint box over it.
MERGE_RULES = ("fusion", "nms")
DEFAULT_MERGE = "fusion"
# A tile box whose side lies within this many *model-input* pixels of an inner tile edge is
# "cut" by it (the network's boxes end a pixel or two short of the border they touch); in
# original pixels the margin is scaled by the tile's letterbox scale.
EDGE_MARGIN_INPUT_PX = 2.0
# A cut box is dropped when another box of its class (whole image, or a tile where it is not
# cut) covers at least this fraction of its area: that box holds the object. A cut box alone
# (no such holder) is kept: a partial box beats a missed object.
HOLDER_COVERAGE = 0.6
# Parts of large objects. A whole-image box that no tile window contains spans tiles: each
# tile saw a piece of that object, enlarged, and boxes the piece (often as the object's class,
# sometimes as another: a wheel as a bicycle, a face as a person) without touching an inner
# edge, so rule 2 keeps it. A tile box is such a part when it lies inside a spanning box
# (at least PART_INSIDE of its area) that scores >= PART_HOLDER_SCORE, and is smaller than
# PART_MAX_AREA of it (a second, whole object of about the same size stays). Any class: the
# parts are often named otherwise. On the 236 val photos upscaled to 1280 px (2 x 2 tiles)
# the rule took mAP@0.5 from 0.381 to 0.404 (untiled 0.415); on the 2x2 mosaics of val it
# changed nothing (0.362 both), since there a spanning box is rare and seldom confident.
# Neighbours measured on the upscaled photos: holder score 0.3 / 0.4 / 0.5: 0.400 / 0.402 /
# 0.404 (and the mosaics lose 0.016 at 0.3); the same class only: 0.386.
PART_HOLDER_SCORE = 0.5
PART_INSIDE = 0.8
PART_MAX_AREA = 0.7


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


def _intersection(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(A, 4), (B, 4) xyxy -> (A, B) intersection areas."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    return np.prod(np.clip(rb - lt, 0, None), axis=2)


def _area(boxes: np.ndarray) -> np.ndarray:
    """(N, 4) xyxy -> (N,) areas (0 for an inverted box)."""
    return np.prod(np.clip(boxes[:, 2:] - boxes[:, :2], 0, None), axis=1)


def spans_tiles(boxes: np.ndarray, windows: Sequence[Window]) -> np.ndarray:
    """(N, 4) xyxy original pixels -> (N,) bool: no window contains the box whole."""
    out = np.ones(boxes.shape[0], dtype=bool)
    for x0, y0, x1, y1 in windows:
        out &= ~((boxes[:, 0] >= x0) & (boxes[:, 1] >= y0) & (boxes[:, 2] <= x1)
                 & (boxes[:, 3] <= y1))  # fmt: skip
    return out


def parts_of_large_objects(
    full: Detections, windows: Sequence[Window], boxes: np.ndarray
) -> np.ndarray:
    """Tile boxes (N, 4) xyxy -> (N,) bool: the box is a part of a large object, i.e. it lies
    (>= PART_INSIDE of its area) inside a whole-image box that spans tiles (`spans_tiles`) and
    scores >= PART_HOLDER_SCORE, and is under PART_MAX_AREA of that box's area. Any class."""
    holders = full.boxes[(full.scores >= PART_HOLDER_SCORE) & spans_tiles(full.boxes, windows)]
    if holders.shape[0] == 0 or boxes.shape[0] == 0:
        return np.zeros(boxes.shape[0], dtype=bool)
    inter = _intersection(boxes, holders)  # (N, H)
    area, holder_area = _area(boxes)[:, None], _area(holders)[None, :]
    return ((inter >= PART_INSIDE * area) & (area < PART_MAX_AREA * holder_area)).any(axis=1)


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

    Tile boxes that are parts of a large object (`parts_of_large_objects`) are dropped. A tile
    box cut by an inner tile edge (within EDGE_MARGIN_INPUT_PX model-input pixels; the margin
    is 2 original px without `input_size`) is dropped when another uncut box of its class
    covers >= HOLDER_COVERAGE of it (a neighbouring tile or the whole image holds the object).
    Then class-wise NMS at `nms_iou` over everything left, by decreasing score, at most
    `max_detections`; boxes clipped to `image_size` (width, height). `rule` "fusion" (the
    default; MERGE_RULES): each kept box becomes the score-weighted mean of its NMS cluster
    (`fuse_clusters`); "nms": the kept boxes as they are.
    """
    if rule not in MERGE_RULES:
        raise ValueError(f"merge rule must be one of {', '.join(MERGE_RULES)}, not {rule!r}")
    windows = [window for window, _ in tiles]
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
    keep = np.ones(all_scores.shape[0], dtype=bool)  # (N,)
    keep[len(full):] = ~parts_of_large_objects(full, windows, all_boxes[len(full):])
    is_cut = np.concatenate(cut) & keep  # (N,)
    cut_idx, holder_idx = np.flatnonzero(is_cut), np.flatnonzero(keep & ~is_cut)
    if cut_idx.size and holder_idx.size:
        a = all_boxes[cut_idx]  # (C, 4)
        inter = _intersection(a, all_boxes[holder_idx])  # (C, H)
        same = all_classes[cut_idx][:, None] == all_classes[holder_idx][None, :]  # (C, H)
        covered = same & (inter >= HOLDER_COVERAGE * np.maximum(_area(a), 1e-6)[:, None])
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
