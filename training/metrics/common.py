"""Shared inputs for the detection metrics: per-image ground truth and detections (NumPy only).

Boxes are xyxy in continuous pixel coordinates (width = x2 - x1, no VOC "+1").
Labels are class indices in [0, num_classes).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class GroundTruth:
    """One image's annotated objects. `difficult` objects count neither as TP nor as FP."""

    boxes: np.ndarray  # (N, 4) xyxy
    labels: np.ndarray  # (N,) int
    difficult: np.ndarray | None = None  # (N,) bool; None = none difficult

    def __post_init__(self) -> None:
        boxes = np.asarray(self.boxes, dtype=np.float64).reshape(-1, 4)
        labels = np.asarray(self.labels, dtype=np.int64).reshape(-1)
        diff = (np.zeros(labels.shape, bool) if self.difficult is None
                else np.asarray(self.difficult, dtype=bool).reshape(-1))
        if not boxes.shape[0] == labels.shape[0] == diff.shape[0]:
            raise ValueError(f"ground truth sizes differ: {boxes.shape}, {labels.shape}, "
                             f"{diff.shape}")
        object.__setattr__(self, "boxes", boxes)
        object.__setattr__(self, "labels", labels)
        object.__setattr__(self, "difficult", diff)


@dataclass(frozen=True)
class Predictions:
    """One image's detections."""

    boxes: np.ndarray  # (K, 4) xyxy
    scores: np.ndarray  # (K,)
    labels: np.ndarray  # (K,) int

    def __post_init__(self) -> None:
        boxes = np.asarray(self.boxes, dtype=np.float64).reshape(-1, 4)
        scores = np.asarray(self.scores, dtype=np.float64).reshape(-1)
        labels = np.asarray(self.labels, dtype=np.int64).reshape(-1)
        if not boxes.shape[0] == scores.shape[0] == labels.shape[0]:
            raise ValueError(f"prediction sizes differ: {boxes.shape}, {scores.shape}, "
                             f"{labels.shape}")
        object.__setattr__(self, "boxes", boxes)
        object.__setattr__(self, "scores", scores)
        object.__setattr__(self, "labels", labels)

    @staticmethod
    def empty() -> Predictions:
        return Predictions(np.zeros((0, 4)), np.zeros((0,)), np.zeros((0,), np.int64))


def check_inputs(
    gts: Sequence[GroundTruth], preds: Sequence[Predictions], num_classes: int
) -> None:
    if len(gts) != len(preds):
        raise ValueError(f"{len(gts)} ground-truth images but {len(preds)} prediction images")
    for g in gts:
        if g.labels.size and (g.labels.min() < 0 or g.labels.max() >= num_classes):
            raise ValueError(f"ground-truth label outside [0, {num_classes})")
    for p in preds:
        if p.labels.size and (p.labels.min() < 0 or p.labels.max() >= num_classes):
            raise ValueError(f"predicted label outside [0, {num_classes})")


def pairwise_iou(dets: np.ndarray, gts: np.ndarray, crowd: np.ndarray | None = None) -> np.ndarray:
    """(D, 4), (G, 4) xyxy -> (D, G) IoU in float64; 0 where the overlap is empty.

    For a `crowd` ground truth the denominator is the detection's area (COCO's iscrowd rule).
    """
    d = dets.astype(np.float64, copy=False)
    g = gts.astype(np.float64, copy=False)
    iw = np.minimum(d[:, None, 2], g[None, :, 2]) - np.maximum(d[:, None, 0], g[None, :, 0])
    ih = np.minimum(d[:, None, 3], g[None, :, 3]) - np.maximum(d[:, None, 1], g[None, :, 1])
    inter = np.where((iw > 0) & (ih > 0), iw * ih, 0.0)
    area_d = (d[:, 2] - d[:, 0]) * (d[:, 3] - d[:, 1])
    area_g = (g[:, 2] - g[:, 0]) * (g[:, 3] - g[:, 1])
    union = area_d[:, None] + area_g[None, :] - inter
    if crowd is not None and crowd.any():
        union = np.where(crowd[None, :], area_d[:, None], union)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(inter > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def nanmean_or_nan(values: np.ndarray) -> float:
    """Mean over the finite entries; nan when there are none (no warning)."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    return float(v.mean()) if v.size else float("nan")
