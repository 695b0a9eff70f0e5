"""Where a detector's mistakes come from, at one operating score threshold (NumPy only).

Every detection scoring at least the threshold gets exactly one label, in this order (after
Hoiem et al., "Diagnosing Error in Object Detectors", ECCV 2012, simplified):

- correct: IoU >= 0.5 with an object of its class that no higher-scoring detection of that
  class took (the VOC rule, `training.metrics.voc.match_iou`);
- ignored: its best same-class overlap (IoU >= 0.5) is a `difficult` object (VOC: neither
  right nor wrong);
- duplicate: IoU >= 0.5 with an object of its class that a higher-scoring detection took;
- localisation: IoU in [near, 0.5) with an object of its class;
- confusion: IoU >= near with an object of another class (the class is recorded);
- background: none of these.

Objects (not difficult) that no correct detection took are misses, also counted by COCO size
(small / medium / large: area < 32², < 96², the rest, in the boxes' own pixels).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from training.metrics.common import GroundTruth, Predictions, check_inputs, pairwise_iou
from training.metrics.voc import match_iou

KINDS = ("correct", "ignored", "duplicate", "localisation", "confusion", "background")
SIZES = ("small", "medium", "large")
SIZE_EDGES = (32.0**2, 96.0**2)


@dataclass(frozen=True)
class ErrorBreakdown:
    """Counts over a set of images. Per-class arrays are indexed by the detection's class
    (`kinds`) or the object's class (`objects`, `missed`)."""

    kinds: dict[str, np.ndarray]  # kind -> (C,) detections of that kind, by predicted class
    confusions: np.ndarray  # (C, C) int: [predicted class, true class] confusion errors
    objects: np.ndarray  # (C,) non-difficult objects
    missed: np.ndarray  # (C,) objects no correct detection took
    objects_by_size: np.ndarray  # (3,) small / medium / large
    missed_by_size: np.ndarray  # (3,)

    @property
    def detections(self) -> np.ndarray:
        """(C,) detections at or above the threshold, by predicted class."""
        return np.sum([self.kinds[k] for k in KINDS], axis=0)

    def top_confusions(self, k: int | None = 10) -> list[tuple[int, int, int]]:
        """The k largest (predicted, true, count) confusion pairs (None: all), largest first."""
        pred, true = np.nonzero(self.confusions)
        counts = self.confusions[pred, true]
        order = np.lexsort((true, pred, -counts))[:k]
        return [(int(pred[i]), int(true[i]), int(counts[i])) for i in order]


def _size_index(boxes: np.ndarray) -> np.ndarray:
    """(N, 4) xyxy -> (N,) 0 small, 1 medium, 2 large."""
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return np.searchsorted(np.asarray(SIZE_EDGES), area, side="right")


def _max_iou(iou: np.ndarray, columns: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row-wise max IoU and its column over the selected columns; (0, -1) when none."""
    n = iou.shape[0]
    if not columns.any():
        return np.zeros(n), np.full(n, -1)
    masked = np.where(columns[None, :], iou, -1.0)
    best = masked.argmax(axis=1)
    return np.maximum(masked[np.arange(n), best], 0.0), best


def error_breakdown(
    gts: Sequence[GroundTruth],
    preds: Sequence[Predictions],
    num_classes: int,
    score_threshold: float = 0.4,
    iou_threshold: float = 0.5,
    near_iou: float = 0.1,
) -> ErrorBreakdown:
    """Label every detection scoring >= score_threshold and count the misses (see module doc)."""
    check_inputs(gts, preds, num_classes)
    kinds = {k: np.zeros(num_classes, np.int64) for k in KINDS}
    confusions = np.zeros((num_classes, num_classes), np.int64)
    objects = np.zeros(num_classes, np.int64)
    missed = np.zeros(num_classes, np.int64)
    objects_by_size = np.zeros(len(SIZES), np.int64)
    missed_by_size = np.zeros(len(SIZES), np.int64)
    for gt, pred in zip(gts, preds, strict=True):
        diff = np.asarray(gt.difficult, bool)  # (G,): GroundTruth fills it in
        keep = pred.scores >= score_threshold
        order = np.argsort(-pred.scores[keep], kind="stable")
        boxes, labels = pred.boxes[keep][order], pred.labels[keep][order]  # (D, 4), (D,)
        iou = pairwise_iou(boxes, gt.boxes)  # (D, G)
        found = np.zeros(len(gt.labels), bool)  # objects a correct detection took
        for c in np.unique(labels):
            det_idx = np.flatnonzero(labels == c)  # descending score
            gt_idx = np.flatnonzero(gt.labels == c)
            tp, ignored, took = match_iou(iou[np.ix_(det_idx, gt_idx)], diff[gt_idx],
                                          iou_threshold)  # fmt: skip
            found[gt_idx[took[tp]]] = True
            same, _ = _max_iou(iou[det_idx], gt.labels == c)
            other, other_best = _max_iou(iou[det_idx], gt.labels != c)
            duplicate = ~tp & ~ignored & (same >= iou_threshold)
            rest = ~(tp | ignored | duplicate)
            localisation = rest & (same >= near_iou)
            confusion = rest & ~localisation & (other >= near_iou)
            background = rest & ~localisation & ~confusion
            for name, mask in (("correct", tp), ("ignored", ignored), ("duplicate", duplicate),
                               ("localisation", localisation), ("confusion", confusion),
                               ("background", background)):  # fmt: skip
                kinds[name][c] += int(mask.sum())
            np.add.at(confusions[c], gt.labels[other_best[confusion]], 1)
        counted = ~diff
        np.add.at(objects, gt.labels[counted], 1)
        np.add.at(missed, gt.labels[counted & ~found], 1)
        size = _size_index(gt.boxes)
        np.add.at(objects_by_size, size[counted], 1)
        np.add.at(missed_by_size, size[counted & ~found], 1)
    return ErrorBreakdown(kinds, confusions, objects, missed, objects_by_size, missed_by_size)
