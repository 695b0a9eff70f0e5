"""Pascal VOC mAP@0.5 with all-point interpolation (the VOC2010+ devkit rule), NumPy only.

Rules (as in the official devkit, with the differences noted):
- Per class, all detections of all images are ranked by descending score (stable sort).
- A detection is compared with the ground truth of its class in its image and assigned to the
  object of highest IoU (first one on ties). If that IoU >= `iou_threshold` (the MATLAB
  devkit's `>=`): a difficult object -> the detection is ignored (neither TP nor FP);
  an object not yet matched -> TP, and the object is marked matched; an object already
  matched by a higher-scoring detection -> FP (duplicate). Otherwise -> FP.
- Recall is TP / (number of non-difficult objects); AP is the area under the precision
  envelope over all recall points ("all-point" interpolation, not the 11-point VOC2007 rule).
- Coordinates are continuous: IoU uses width = x2 - x1, NOT the devkit's pixel-inclusive
  x2 - x1 + 1. Values differ from the devkit by a small amount on small boxes.
- A class with no non-difficult ground truth has AP = nan and is left out of the mean.
  A class with ground truth but no detections has AP = 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from training.metrics.common import (
    GroundTruth,
    Predictions,
    check_inputs,
    nanmean_or_nan,
    pairwise_iou,
)


@dataclass(frozen=True)
class VocResult:
    per_class_ap: np.ndarray  # (C,) float64, nan for classes without ground truth
    map: float  # mean over classes with ground truth (nan if none)
    num_positives: np.ndarray  # (C,) non-difficult ground-truth objects per class


def all_point_ap(recall: np.ndarray, precision: np.ndarray) -> float:
    """Area under the monotone precision envelope (VOC2010+), recall/precision in rank order."""
    mrec = np.concatenate([[0.0], recall, [1.0]])
    mpre = np.concatenate([[0.0], precision, [0.0]])
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    idx = np.flatnonzero(mrec[1:] != mrec[:-1])
    return float(np.sum((mrec[idx + 1] - mrec[idx]) * mpre[idx + 1]))


def match_iou(
    iou: np.ndarray, gt_difficult: np.ndarray, iou_threshold: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The VOC rule on a precomputed (D, G) IoU of one image and class, detections in
    descending score order.

    Returns (tp, ignored, best): boolean arrays over the detections (FP = ~tp & ~ignored) and
    each detection's best-overlapping object (for a TP, the object it took); (D,) each.
    """
    n = iou.shape[0]
    if iou.shape[1] == 0 or n == 0:
        return np.zeros(n, bool), np.zeros(n, bool), np.full(n, -1)
    best = iou.argmax(axis=1)
    hit = iou[np.arange(n), best] >= iou_threshold
    ignored = hit & gt_difficult[best]
    candidates = np.flatnonzero(hit & ~gt_difficult[best])
    tp = np.zeros(n, bool)
    # The first (highest-scoring) candidate for each object is the TP; later ones duplicates.
    _, first = np.unique(best[candidates], return_index=True)
    tp[candidates[first]] = True
    return tp, ignored, best


def match_image(
    det_boxes: np.ndarray,
    gt_boxes: np.ndarray,
    gt_difficult: np.ndarray,
    iou_threshold: float,
) -> tuple[np.ndarray, np.ndarray]:
    """One image, one class; detections already in descending score order.

    Returns (tp, ignored) boolean arrays over the detections; FP = ~tp & ~ignored.
    """
    if gt_boxes.shape[0] == 0 or det_boxes.shape[0] == 0:
        n = det_boxes.shape[0]
        return np.zeros(n, bool), np.zeros(n, bool)
    tp, ignored, _ = match_iou(pairwise_iou(det_boxes, gt_boxes), gt_difficult, iou_threshold)
    return tp, ignored


@dataclass(frozen=True)
class VocRecords:
    """Every detection's VOC match, kept per class with its image: what `voc_evaluate` reduces
    to AP. Matching never looks across images, so a resampled set of images (a bootstrap) is
    scored from these records by weighting each image, without matching again."""

    scores: list[np.ndarray]  # per class (D_c,) float64, in rank order (descending, stable)
    tp: list[np.ndarray]  # per class (D_c,) bool; the rest are FP (ignored ones are dropped)
    image: list[np.ndarray]  # per class (D_c,) int64, the detection's image index
    npos: np.ndarray  # (I, C) int64 non-difficult objects per image and class

    @property
    def num_images(self) -> int:
        return int(self.npos.shape[0])


def voc_records(
    gts: Sequence[GroundTruth],
    preds: Sequence[Predictions],
    num_classes: int,
    iou_threshold: float = 0.5,
) -> VocRecords:
    """Match every image's detections to its ground truth (gts[i] and preds[i]: one image)."""
    check_inputs(gts, preds, num_classes)
    scores: list[list[np.ndarray]] = [[] for _ in range(num_classes)]
    tps: list[list[np.ndarray]] = [[] for _ in range(num_classes)]
    images: list[list[np.ndarray]] = [[] for _ in range(num_classes)]
    npos = np.zeros((len(gts), num_classes), np.int64)
    for i, (gt, pred) in enumerate(zip(gts, preds, strict=True)):
        np.add.at(npos[i], gt.labels[~gt.difficult], 1)
        for c in np.unique(pred.labels):
            sel = np.flatnonzero(pred.labels == c)
            sel = sel[np.argsort(-pred.scores[sel], kind="stable")]
            g = gt.labels == c
            tp, ignored = match_image(pred.boxes[sel], gt.boxes[g], gt.difficult[g],
                                      iou_threshold)
            keep = ~ignored
            scores[c].append(pred.scores[sel][keep])
            tps[c].append(tp[keep])
            images[c].append(np.full(int(keep.sum()), i, np.int64))

    def ranked(parts: list[np.ndarray], dtype: type, order: np.ndarray) -> np.ndarray:
        return np.concatenate(parts).astype(dtype)[order] if parts else np.zeros(0, dtype)

    out_s, out_tp, out_img = [], [], []
    for c in range(num_classes):
        s = np.concatenate(scores[c]) if scores[c] else np.zeros(0)
        order = np.argsort(-s, kind="stable")
        out_s.append(s[order])
        out_tp.append(ranked(tps[c], bool, order))
        out_img.append(ranked(images[c], np.int64, order))
    return VocRecords(out_s, out_tp, out_img, npos)


def weighted_ap(records: VocRecords, weights: np.ndarray | None = None) -> np.ndarray:
    """(C,) VOC AP of the image set in which image i appears weights[i] times (None: once each).

    Equal to `voc_evaluate` on that set with the images repeated: copies of a detection share
    its match, and a run of equal (recall, precision) steps has the area of the single step.
    (With tied scores, the copies of an image's tied detections rank together, d1 d1 d2 d2,
    where a repeated list would interleave them; ties are arbitrary either way.)
    A class with no non-difficult object in the set is nan; one with objects but no
    detections is 0.
    """
    w = (np.ones(records.num_images) if weights is None
         else np.asarray(weights, dtype=np.float64).reshape(-1))  # (I,)
    if w.shape[0] != records.num_images:
        raise ValueError(f"{w.shape[0]} weights for {records.num_images} images")
    npos = w @ records.npos  # (C,)
    ap = np.full(npos.shape[0], np.nan)
    for c in range(npos.shape[0]):
        if npos[c] <= 0:
            continue
        wd = w[records.image[c]]  # (D_c,)
        tp = records.tp[c]
        tp_cum = np.cumsum(np.where(tp, wd, 0.0))
        fp_cum = np.cumsum(np.where(tp, 0.0, wd))
        if tp_cum.size == 0:
            ap[c] = 0.0
            continue
        recall = tp_cum / npos[c]
        precision = tp_cum / np.maximum(tp_cum + fp_cum, np.finfo(np.float64).eps)
        ap[c] = all_point_ap(recall, precision)
    return ap


def voc_evaluate(
    gts: Sequence[GroundTruth],
    preds: Sequence[Predictions],
    num_classes: int,
    iou_threshold: float = 0.5,
) -> VocResult:
    """Per-class AP and mAP over images (gts[i] and preds[i] describe the same image)."""
    return voc_result(voc_records(gts, preds, num_classes, iou_threshold))


def voc_result(records: VocRecords) -> VocResult:
    """Per-class AP and mAP of the images as they are, from their matches."""
    ap = weighted_ap(records)
    return VocResult(ap, nanmean_or_nan(ap), records.npos.sum(axis=0))
