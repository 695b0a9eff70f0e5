"""COCO-style box AP (AP@[.5:.95], AP50, AP75, APs/APm/APl), NumPy only.

An independent re-implementation of pycocotools' COCOeval (iouType "bbox") that agrees with it
to floating-point precision (tests/training/metrics/test_coco.py):
- IoU thresholds .50:.05:.95, 101 recall points, at most `max_dets` detections per image and
  class (highest scores first, stable sort), area ranges all / small (area <= 32²) / medium
  (32² <= area <= 96²) / large (area >= 96²) on the ground truth's box area; both ends of a
  range are inclusive, exactly as in pycocotools.
- Greedy matching per threshold in descending score order: a detection takes the available
  non-ignored object of highest IoU (>= threshold); only if there is none, an ignored one.
  A detection matched to an ignored object, or unmatched with its own area outside the range,
  is ignored. Precision is made monotone and sampled at the recall points.
- VOC "difficult" objects are mapped to COCO crowd regions (iscrowd=1): they never count as
  positives, IoU with them is intersection / detection area, and they can absorb any number of
  detections, which are then ignored. Use the same mapping when feeding pycocotools.
- Boxes are xyxy in continuous coordinates (area = w * h, no "+1").
- A class (or class x area range) without non-ignored ground truth is left out of the mean;
  when nothing is left the value is nan (pycocotools reports -1).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from training.metrics.common import GroundTruth, Predictions, check_inputs, pairwise_iou

IOU_THRESHOLDS = np.linspace(0.5, 0.95, int(np.round((0.95 - 0.5) / 0.05)) + 1, endpoint=True)
RECALL_THRESHOLDS = np.linspace(0.0, 1.0, int(np.round(1.0 / 0.01)) + 1, endpoint=True)
AREA_RANGES: dict[str, tuple[float, float]] = {
    "all": (0.0, 1e5**2),
    "small": (0.0, 32.0**2),
    "medium": (32.0**2, 96.0**2),
    "large": (96.0**2, 1e5**2),
}


@dataclass(frozen=True)
class CocoResult:
    ap: float  # AP@[.5:.95], area all
    ap50: float
    ap75: float
    ap_small: float
    ap_medium: float
    ap_large: float
    per_class_ap: np.ndarray  # (C,) AP@[.5:.95] per class, nan where no ground truth
    precision: np.ndarray  # (T, R, C, A) interpolated precision, nan where undefined

    def as_dict(self) -> dict[str, float]:
        return {"ap": self.ap, "ap50": self.ap50, "ap75": self.ap75, "ap_small": self.ap_small,
                "ap_medium": self.ap_medium, "ap_large": self.ap_large}


def _box_area(boxes: np.ndarray) -> np.ndarray:
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def _greedy_match(
    iou: np.ndarray, gt_ignore: np.ndarray, crowd: np.ndarray, thresholds: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """All thresholds at once. iou (D, G) with detections by descending score and objects
    ordered non-ignored first. Returns matched (T, D) and matched-to-ignored (T, D)."""
    t_count, (d_count, g_count) = thresholds.shape[0], iou.shape
    matched = np.zeros((t_count, d_count), bool)
    matched_ignored = np.zeros((t_count, d_count), bool)
    if g_count == 0 or d_count == 0:
        return matched, matched_ignored
    ge = iou[None, :, :] >= thresholds[:, None, None]  # (T, D, G)
    if g_count == 1:  # common case, closed form
        if crowd[0]:
            return ge[:, :, 0], ge[:, :, 0] & gt_ignore[0]
        first = np.argmax(ge[:, :, 0], axis=1)
        rows = np.arange(t_count)
        matched[rows, first] = ge[rows, first, 0]
        return matched, matched & gt_ignore[0]
    # Non-ignored objects always beat ignored ones; then the highest IoU; ties -> last object.
    key = iou + 2.0 * ~gt_ignore[None, :]
    available = np.ones((t_count, g_count), bool)
    rows = np.arange(t_count)
    for d in np.flatnonzero(ge[np.argmin(thresholds)].any(axis=1)):
        val = np.where(available & ge[:, d, :], key[d][None, :], -1.0)
        m = g_count - 1 - np.argmax(val[:, ::-1], axis=1)
        hit = val[rows, m] >= 0
        matched[hit, d] = True
        matched_ignored[hit, d] = gt_ignore[m[hit]]
        available[rows[hit], m[hit]] = crowd[m[hit]]
    return matched, matched_ignored


def _sort_and_truncate(pred: Predictions, max_dets: int) -> np.ndarray:
    """Indices of the detections grouped by class, by descending score (stable) within a
    class, at most `max_dets` per class."""
    order = np.lexsort((-pred.scores, pred.labels))
    labels = pred.labels[order]
    rank = np.arange(labels.shape[0]) - np.searchsorted(labels, labels, side="left")
    return order[rank < max_dets]


def _evaluate_image(
    gt: GroundTruth, pred: Predictions, num_classes: int, max_dets: int
) -> tuple[np.ndarray, np.ndarray, list[tuple[np.ndarray, np.ndarray]], np.ndarray]:
    """One image, all classes and area ranges.

    Returns (scores (D,), labels (D,), per area range (tp (T, D), fp (T, D)), positives (A, C)).
    """
    keep = _sort_and_truncate(pred, max_dets)
    boxes, scores, labels = pred.boxes[keep], pred.scores[keep], pred.labels[keep]
    crowd = gt.difficult
    iou = pairwise_iou(boxes, gt.boxes, crowd)
    iou[labels[:, None] != gt.labels[None, :]] = 0.0
    # Only classes with a detection that overlaps an object enough need greedy matching.
    live = (iou.max(axis=1) >= IOU_THRESHOLDS.min()) if gt.labels.size else labels < 0
    live_classes = np.unique(labels[live])
    gt_area, det_area = _box_area(gt.boxes), _box_area(boxes)
    n_t, n_d = IOU_THRESHOLDS.shape[0], labels.shape[0]
    cache: dict[tuple[int, bytes], tuple[np.ndarray, np.ndarray]] = {}
    per_area = []
    positives = np.zeros((len(AREA_RANGES), num_classes), np.int64)
    for a, (lo, hi) in enumerate(AREA_RANGES.values()):
        gt_ignore = crowd | (gt_area < lo) | (gt_area > hi)
        positives[a] = np.bincount(gt.labels[~gt_ignore], minlength=num_classes)
        matched = np.zeros((n_t, n_d), bool)
        matched_ignored = np.zeros((n_t, n_d), bool)
        for c in live_classes:
            g = np.flatnonzero(gt.labels == c)
            key = (int(c), gt_ignore[g].tobytes())
            if key not in cache:
                g = g[np.argsort(gt_ignore[g], kind="mergesort")]  # non-ignored first
                d = np.flatnonzero(labels == c)
                m, mi = _greedy_match(iou[np.ix_(d, g)], gt_ignore[g], crowd[g], IOU_THRESHOLDS)
                full_m, full_mi = np.zeros((n_t, n_d), bool), np.zeros((n_t, n_d), bool)
                full_m[:, d], full_mi[:, d] = m, mi
                cache[key] = (full_m, full_mi)
            matched |= cache[key][0]
            matched_ignored |= cache[key][1]
        outside = (det_area < lo) | (det_area > hi)
        ignored = matched_ignored | (~matched & outside[None, :])
        per_area.append((matched & ~ignored, ~matched & ~ignored))
    return scores, labels, per_area, positives


def _interpolated_precision(
    scores: np.ndarray, tp: np.ndarray, fp: np.ndarray, npig: int
) -> np.ndarray:
    """(D,), (T, D), (T, D) in rank order -> (T, R) precision at the recall thresholds."""
    tp_sum = np.cumsum(tp, axis=1, dtype=np.float64)
    fp_sum = np.cumsum(fp, axis=1, dtype=np.float64)
    recall = tp_sum / npig
    precision = tp_sum / (fp_sum + tp_sum + np.spacing(1))
    precision = np.maximum.accumulate(precision[:, ::-1], axis=1)[:, ::-1]
    q = np.zeros((tp.shape[0], RECALL_THRESHOLDS.shape[0]))
    nd = scores.shape[0]
    for t in range(tp.shape[0]):
        inds = np.searchsorted(recall[t], RECALL_THRESHOLDS, side="left")
        valid = inds < nd
        q[t, valid] = precision[t, inds[valid]]
    return q


def _mean(values: np.ndarray) -> float:
    v = values[~np.isnan(values)]
    return float(v.mean()) if v.size else float("nan")


def coco_evaluate(
    gts: Sequence[GroundTruth],
    preds: Sequence[Predictions],
    num_classes: int,
    max_dets: int = 100,
) -> CocoResult:
    """COCO box AP over images (gts[i] and preds[i] describe the same image)."""
    check_inputs(gts, preds, num_classes)
    n_t, n_r, n_a = len(IOU_THRESHOLDS), len(RECALL_THRESHOLDS), len(AREA_RANGES)
    all_scores, all_labels = [], []
    all_tp: list[list[np.ndarray]] = [[] for _ in range(n_a)]
    all_fp: list[list[np.ndarray]] = [[] for _ in range(n_a)]
    positives = np.zeros((n_a, num_classes), np.int64)
    for gt, pred in zip(gts, preds, strict=True):
        scores, labels, per_area, pos = _evaluate_image(gt, pred, num_classes, max_dets)
        all_scores.append(scores)
        all_labels.append(labels)
        for a, (tp, fp) in enumerate(per_area):
            all_tp[a].append(tp)
            all_fp[a].append(fp)
        positives += pos
    scores = np.concatenate([np.zeros(0), *all_scores])
    labels = np.concatenate([np.zeros(0, np.int64), *all_labels])
    # Group by class; within a class by descending score, ties in image order (as COCOeval).
    order = np.lexsort((-scores, labels))
    scores, labels = scores[order], labels[order]
    bounds = np.searchsorted(labels, np.arange(num_classes + 1), side="left")
    precision = np.full((n_t, n_r, num_classes, n_a), np.nan)
    for a in range(n_a):
        tp_all = np.concatenate([np.zeros((n_t, 0), bool), *all_tp[a]], axis=1)[:, order]
        fp_all = np.concatenate([np.zeros((n_t, 0), bool), *all_fp[a]], axis=1)[:, order]
        for c in range(num_classes):
            if positives[a, c] == 0:
                continue
            s, e = bounds[c], bounds[c + 1]
            precision[:, :, c, a] = _interpolated_precision(
                scores[s:e], tp_all[:, s:e], fp_all[:, s:e], int(positives[a, c]))
    t50 = int(np.flatnonzero(np.isclose(IOU_THRESHOLDS, 0.5))[0])
    t75 = int(np.flatnonzero(np.isclose(IOU_THRESHOLDS, 0.75))[0])
    per_class = np.array([_mean(precision[:, :, c, 0]) for c in range(num_classes)])
    return CocoResult(
        ap=_mean(precision[..., 0]),
        ap50=_mean(precision[t50, ..., 0]),
        ap75=_mean(precision[t75, ..., 0]),
        ap_small=_mean(precision[..., 1]),
        ap_medium=_mean(precision[..., 2]),
        ap_large=_mean(precision[..., 3]),
        per_class_ap=per_class,
        precision=precision,
    )
