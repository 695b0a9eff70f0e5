"""Scoring a detector on a split: its detections and the ground truth -> VOC and COCO metrics.

`evaluate_detector` is the evaluation the CLI (`python -m training.evaluate`) and validation
during training (training/engine/validation.py) share.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from export.inferer import Inferer
from export.postprocess import Detections, PostprocessConfig
from export.tile_merge import DEFAULT_MERGE
from export.tiling import DEFAULT_MAX_TILES, Tile
from training.evaluation.data import class_mapping
from training.evaluation.inference import run_detector
from training.evaluation.report import DRAW_SCORE_THRESHOLD, save_annotated
from training.metrics import GroundTruth, Predictions, coco_evaluate
from training.metrics.bootstrap import bootstrap_map
from training.metrics.voc import voc_records, voc_result

if TYPE_CHECKING:
    from training.data.sample import Sample


def metric_inputs(
    samples: Sequence[Sample], dets: Sequence[Detections], to_model: np.ndarray
) -> tuple[list[GroundTruth], list[Predictions]]:
    """Samples and their detections -> the metrics' inputs, in model class ids.

    to_model: `class_mapping`'s dataset id -> model id; objects of classes the model lacks
    (-1) are dropped.
    """
    gts, preds = [], []
    for sample, det in zip(samples, dets, strict=True):
        labels = to_model[np.asarray(sample.labels, dtype=np.int64)]
        keep = labels >= 0
        gts.append(GroundTruth(np.asarray(sample.boxes)[keep], labels[keep],
                               np.asarray(sample.difficult)[keep]))
        preds.append(Predictions(det.boxes, det.scores, det.class_ids))
    return gts, preds


def evaluate_detector(
    detector: Inferer,
    samples: Sequence[Sample],
    class_names: Sequence[str],
    *,
    postprocess: PostprocessConfig = PostprocessConfig(),
    batch_size: int = 1,
    workers: int = 2,
    save_images: str | Path | None = None,
    num_images: int = 8,
    draw_threshold: float = DRAW_SCORE_THRESHOLD,
    bootstrap: int = 0,
    seed: int = 0,
    tile: Tile = "off",
    max_tiles: int = DEFAULT_MAX_TILES,
    tile_merge: str = DEFAULT_MERGE,
) -> dict[str, Any]:
    """Run `detector` on `samples` and compute the metrics.

    class_names: the names of the samples' label ids (the class list the data was loaded with).
    The detector's classes (`detector.metadata.class_names`) are matched to them by name
    (ValueError if one is missing); objects of dataset classes the model lacks are not scored.
    Returns {"map50" (VOC all-point mAP@0.5), "map50_95", "ap50", "ap75", "ap_small",
    "ap_medium", "ap_large" (COCO-style), "per_class" {name: VOC AP@0.5},
    "per_class_map50_95" {name: AP}, "num_images", "images_per_s", "seconds"}. A metric with
    no ground truth to score is nan. `bootstrap` > 0 adds "map50_ci95": mAP@0.5's 95% interval
    over that many draws of the images with replacement (`training.metrics.bootstrap`, `seed`).
    `postprocess`: the service's decode, thresholds and NMS
    (defaults: candidate threshold 0.05, NMS IoU 0.5, 100 detections, which COCO AP also caps).
    `tile`, `max_tiles`, `tile_merge`: tiled inference (export/tiling.py; `run_detector`).
    """
    model_names = tuple(detector.metadata.class_names)
    to_model = class_mapping(model_names, class_names)
    t0 = time.perf_counter()
    dets = run_detector(detector, samples, postprocess, batch_size, workers, tile, max_tiles,
                        tile_merge)
    seconds = time.perf_counter() - t0
    gts, preds = metric_inputs(samples, dets, to_model)
    records = voc_records(gts, preds, len(model_names))  # matched once, also for the bootstrap
    voc = voc_result(records)
    coco = coco_evaluate(gts, preds, len(model_names), max_dets=postprocess.max_detections)
    if save_images is not None and num_images > 0:
        out_dir = Path(save_images)
        out_dir.mkdir(parents=True, exist_ok=True)
        for sample, det in list(zip(samples, dets, strict=True))[:num_images]:
            save_annotated(sample, det, model_names, class_names, out_dir, draw_threshold)
    n = len(samples)
    extra: dict[str, Any] = {}
    if bootstrap > 0:
        extra["map50_ci95"] = dataclasses.asdict(bootstrap_map(records, bootstrap, seed))
    return {
        "map50": voc.map,
        "map50_95": coco.ap,
        "ap50": coco.ap50,
        "ap75": coco.ap75,
        "ap_small": coco.ap_small,
        "ap_medium": coco.ap_medium,
        "ap_large": coco.ap_large,
        "per_class": {name: float(v) for name, v in zip(model_names, voc.per_class_ap,
                                                          strict=True)},
        "per_class_map50_95": {name: float(v) for name, v in zip(model_names,
                                                                   coco.per_class_ap,
                                                                   strict=True)},
        "num_images": n,
        "images_per_s": n / seconds if seconds > 0 else float("nan"),
        "seconds": seconds,
        **extra,
    }
