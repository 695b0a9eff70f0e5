"""Decode FCOS outputs into detections: NumPy only. Used by evaluation, parity and the service."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from export.boxes import batched_nms
from export.preprocess import Letterbox


@dataclass(frozen=True)
class Detections:
    boxes: np.ndarray  # (K, 4) float32 xyxy, original-image pixels
    scores: np.ndarray  # (K,) float32
    class_ids: np.ndarray  # (K,) int64

    @staticmethod
    def empty() -> Detections:
        return Detections(
            np.zeros((0, 4), np.float32), np.zeros((0,), np.float32), np.zeros((0,), np.int64)
        )

    def __len__(self) -> int:
        return int(self.scores.shape[0])


@dataclass(frozen=True)
class PostprocessConfig:
    # Candidate cut on the class probability, before top-n and NMS (the final score is cut by
    # `score_threshold` below, the same threshold as the API's).
    candidate_threshold: float = 0.05
    pre_nms_top_n: int = 1000  # per level
    # Class-wise NMS IoU. 0.5 (mmdetection's FCOS test setting; FCOS's own code uses 0.6): on
    # the shipped VOC model it beats 0.6 in 99.8% of paired bootstrap draws of the val images
    # (`python -m training.compare`, models/MODEL_CARD.md), on 15 of 20 classes.
    nms_iou: float = 0.5
    max_detections: int = 100
    min_size: float = 0.0  # boxes with width or height <= min_size are dropped
    # Final-score cut (the API's score_threshold) applied before NMS. Exactly the same result
    # as cutting after NMS (a box can only suppress lower-scoring ones, so dropping those below
    # the cut first changes nothing above it), but NMS then sorts and compares far fewer boxes.
    score_threshold: float = 0.0
    # False: score = class probability alone, centre-ness unused (an ablation of FCOS's
    # centre-ness at inference; `python -m training.evaluate --no-centerness`).
    centerness: bool = True
    # Class filter: only these class ids become candidates (None = all). Applied first, so
    # other classes never take a place in pre_nms_top_n, NMS or max_detections.
    classes: tuple[int, ...] | None = None


MIN_CANDIDATE_THRESHOLD = 1e-4  # so an API score_threshold < 0.01 behaves as 0.01
MAX_CANDIDATE_THRESHOLD = 0.999  # t = 1 still keeps scores that round to 1.0 in float32


def candidate_config(
    score_threshold: float,
    max_detections: int,
    nms_iou: float,
    classes: tuple[int, ...] | None = None,
) -> PostprocessConfig:
    """Postprocess settings for an API threshold t on the final score sqrt(p_cls * ctr).

    Both cuts are exact (the same detections as the evaluation settings, candidate 0.05,
    followed by a filter at t, whenever t >= sqrt(0.05)): a score >= t needs p_cls >= t**2,
    so candidates below t**2 never reach the answer, and `score_threshold` drops the rest below t
    before NMS, which then has far fewer boxes to sort (a weak or busy image has thousands).
    """
    return PostprocessConfig(
        candidate_threshold=min(
            max(score_threshold**2, MIN_CANDIDATE_THRESHOLD), MAX_CANDIDATE_THRESHOLD
        ),
        nms_iou=nms_iou,
        max_detections=max_detections,
        score_threshold=score_threshold,
        classes=classes,
    )


def level_sizes(height: int, width: int, strides: tuple[int, ...]) -> list[tuple[int, int]]:
    """Feature map (h, w) per level for an input of (height, width): ceil(size / stride)."""
    return [(-(-height // s), -(-width // s)) for s in strides]


@lru_cache(maxsize=64)
def _locations_cached(height: int, width: int, strides: tuple[int, ...]) -> tuple[np.ndarray, ...]:
    out = []
    for (h, w), s in zip(level_sizes(height, width, strides), strides, strict=True):
        xs = np.arange(w, dtype=np.float32) * s + s // 2
        ys = np.arange(h, dtype=np.float32) * s + s // 2
        yy, xx = np.meshgrid(ys, xs, indexing="ij")
        loc = np.stack([xx.ravel(), yy.ravel()], axis=1)
        loc.setflags(write=False)
        out.append(loc)
    return tuple(out)


def locations(height: int, width: int, strides: tuple[int, ...]) -> list[np.ndarray]:
    """Per level (h*w, 2) (x, y) centres in input pixels, row-major; cached per input shape."""
    return list(_locations_cached(int(height), int(width), tuple(int(s) for s in strides)))


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (np.tanh(0.5 * x) + 1.0)  # overflow-free


def _logit(p: float) -> float:
    """The logit of a probability threshold; -inf / +inf at 0 / 1 (keep all / none)."""
    if p <= 0.0:
        return -np.inf
    if p >= 1.0:
        return np.inf
    return float(np.log(p / (1.0 - p)))


def decode_boxes(points: np.ndarray, distances: np.ndarray) -> np.ndarray:
    """(N, 2) xy, (N, 4) ltrb -> (N, 4) xyxy."""
    return np.concatenate([points - distances[:, :2], points + distances[:, 2:]], axis=1)


def postprocess(
    cls_logits: np.ndarray,
    box_distances: np.ndarray,
    centerness_logits: np.ndarray,
    input_hw: tuple[int, int],
    strides: tuple[int, ...],
    letterbox: Letterbox | None = None,
    cfg: PostprocessConfig = PostprocessConfig(),
) -> Detections:
    """One image's outputs (P, C), (P, 4), (P, 1) -> Detections in original pixels.

    Per level: sigmoid class scores, keep (location, class) pairs above `candidate_threshold`
    (only classes in `cfg.classes`, if set), top `pre_nms_top_n` of those by score;
    score = sqrt(cls * centre-ness) (cls alone if not `cfg.centerness`);
    clip; drop empty boxes and scores below `score_threshold`; class-wise NMS that stops at
    `max_detections`; map back.
    """
    locs = locations(input_hw[0], input_hw[1], strides)
    total = sum(loc.shape[0] for loc in locs)
    if cls_logits.shape[0] != total:
        raise ValueError(f"{cls_logits.shape[0]} locations, expected {total} for {input_hw}")
    # (K,) class ids kept by the filter; their logit columns only are searched.
    columns = None if cfg.classes is None else np.asarray(cfg.classes, dtype=np.int64)
    all_boxes, all_scores, all_cls = [], [], []
    start = 0
    for loc in locs:
        end = start + loc.shape[0]
        logits = cls_logits[start:end] if columns is None else cls_logits[start:end][:, columns]
        # Threshold on logits first: sigmoid is monotone, so this avoids (P, C) sigmoids.
        logit_thr = _logit(cfg.candidate_threshold)
        flat = np.flatnonzero(logits.ravel() > logit_thr)
        if flat.size:
            cand_logits = logits.ravel()[flat]
            if flat.size > cfg.pre_nms_top_n:
                top = np.argpartition(-cand_logits, cfg.pre_nms_top_n - 1)[: cfg.pre_nms_top_n]
                flat, cand_logits = flat[top], cand_logits[top]
            idx, cls = np.divmod(flat, logits.shape[1])
            if columns is not None:
                cls = columns[cls]
            scores = sigmoid(cand_logits.astype(np.float32))
            if cfg.centerness:
                ctr = sigmoid(centerness_logits[start:end][idx, 0].astype(np.float32))
                scores = np.sqrt(scores * ctr)
            all_boxes.append(decode_boxes(loc[idx], box_distances[start:end][idx]))
            all_scores.append(scores)
            all_cls.append(cls)
        start = end
    if not all_boxes:
        return Detections.empty()
    boxes = np.concatenate(all_boxes).astype(np.float32)
    scores = np.concatenate(all_scores).astype(np.float32)
    class_ids = np.concatenate(all_cls).astype(np.int64)
    # Clip to the valid (unpadded) image area in input pixels before NMS.
    if letterbox is not None:
        valid_w = letterbox.orig_width * letterbox.scale_x
        valid_h = letterbox.orig_height * letterbox.scale_y
    else:
        valid_h, valid_w = float(input_hw[0]), float(input_hw[1])
    boxes[:, 0::2] = np.clip(boxes[:, 0::2], 0, valid_w)
    boxes[:, 1::2] = np.clip(boxes[:, 1::2], 0, valid_h)
    wh = boxes[:, 2:] - boxes[:, :2]
    ok = (wh[:, 0] > cfg.min_size) & (wh[:, 1] > cfg.min_size) & (scores >= cfg.score_threshold)
    boxes, scores, class_ids = boxes[ok], scores[ok], class_ids[ok]
    keep = batched_nms(boxes, scores, class_ids, cfg.nms_iou, cfg.max_detections)
    boxes, scores, class_ids = boxes[keep], scores[keep], class_ids[keep]
    if letterbox is not None:
        boxes = letterbox.to_original(boxes)
    return Detections(boxes.astype(np.float32), scores, class_ids)

