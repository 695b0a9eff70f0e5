"""Detection metrics in pure NumPy: Pascal VOC mAP@0.5 (all-point) and COCO-style box AP."""

from training.metrics.coco import CocoResult, coco_evaluate
from training.metrics.common import GroundTruth, Predictions, pairwise_iou
from training.metrics.voc import VocResult, all_point_ap, voc_evaluate

__all__ = [
    "CocoResult",
    "GroundTruth",
    "Predictions",
    "VocResult",
    "all_point_ap",
    "coco_evaluate",
    "pairwise_iou",
    "voc_evaluate",
]
