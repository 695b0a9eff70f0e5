"""Evaluate a detector on a dataset split: VOC mAP@0.5 and COCO-style AP.

    python -m training.evaluate --model model.onnx --data-root VOC2012 --split val
    python -m training.evaluate --model run/best.pt --data-root DIR --split val --json m.json
    python -m training.evaluate --model runs/mine/model.onnx --data my/data.yaml --split test

(`python -m training.evaluation.evaluate` is the same command.)
--data takes a YOLO data.yaml, a COCO .json, a Roboflow COCO export or a VOC folder
(training/data/source.py); the model's own classes are matched to the dataset's by name.

Images go through exactly the service's path (training/evaluation/inference.py): candidate
threshold 0.05, at most 100 detections. ONNX files run on ONNX Runtime, or OpenVINO with
--backend openvino (the same NumPy pre- and post-processing, so this checks its accuracy:
`--ov-precision bf16|f32`); PyTorch checkpoints run through `TorchDetector`
(training/evaluation/detectors.py). torch is imported only for checkpoints (the VOC loader
imports `model.config`, whose package may still pull torch in).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import get_args

from export.backends import BACKENDS, Precision
from export.postprocess import PostprocessConfig
from export.predict import tile_arg
from export.tile_merge import DEFAULT_MERGE, MERGE_RULES
from export.tiling import DEFAULT_MAX_TILES
from training.evaluation.data import add_data_args, load_split
from training.evaluation.detectors import load_onnx_or_checkpoint
from training.evaluation.report import DRAW_SCORE_THRESHOLD, format_table, json_safe
from training.evaluation.scoring import evaluate_detector


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m training.evaluate", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_args(p)
    p.add_argument("--json", default=None, help="write the metrics to this JSON file")
    p.add_argument("--save-images", default=None, help="write annotated JPEGs to this folder")
    p.add_argument("--num-images", type=int, default=8, help="how many images to annotate")
    p.add_argument("--draw-threshold", type=float, default=DRAW_SCORE_THRESHOLD,
                   help="annotated images show detections scoring at least this")  # fmt: skip
    p.add_argument("--candidate-threshold", "--score-threshold", type=float,
                   dest="candidate_threshold", default=PostprocessConfig.candidate_threshold,
                   help="candidate threshold on the class probability, before NMS "
                        "(PostprocessConfig.candidate_threshold; --score-threshold is its "
                        "old name)")
    p.add_argument("--nms-iou", type=float, default=PostprocessConfig.nms_iou,
                   help="class-wise NMS IoU threshold (the service's DETECTOR_NMS_IOU)")
    p.add_argument("--batch-size", type=int, default=1, help="images per inference call")
    p.add_argument("--no-centerness", dest="centerness", action="store_false",
                   help="ablation: score by the class probability alone, centre-ness unused")
    p.add_argument("--threads", type=int, default=0, help="inference threads (0 = all cores)")
    p.add_argument("--backend", choices=BACKENDS, default="onnxruntime",
                   help=".onnx models: the runtime (auto: openvino when installed)")
    p.add_argument("--ov-precision", choices=get_args(Precision), default="bf16",
                   help="OpenVINO's inference precision hint for floating-point layers")
    p.add_argument("--bootstrap", type=int, default=0, metavar="N",
                   help="also report mAP@0.5's 95%% interval over N resamples of the images")
    p.add_argument("--seed", type=int, default=0, help="the bootstrap's random seed")
    p.add_argument("--tile", type=tile_arg, default="off", metavar="off|auto|N",
                   help="tiled inference for small objects (export/tiling.py, the service's "
                        "`tile`): the whole image plus overlapping tiles; auto or an N x N grid")
    p.add_argument("--max-tiles", type=int, default=DEFAULT_MAX_TILES,
                   help="at most this many tiles per image (the grid is reduced to fit)")
    p.add_argument("--tile-merge", choices=MERGE_RULES, default=DEFAULT_MERGE,
                   help="how tile boxes merge with the whole image's (export.tiling.merge): "
                        "NMS with weighted box fusion of its clusters, or plain NMS")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        detector = load_onnx_or_checkpoint(args.model, args.backend, args.threads or None,
                                           args.ov_precision)  # fmt: skip
    except ImportError as exc:  # --backend openvino without the extra installed
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        dataset_classes, _, samples = load_split(args, detector.metadata.class_names)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    postprocess = PostprocessConfig(candidate_threshold=args.candidate_threshold,
                                    nms_iou=args.nms_iou, centerness=args.centerness)
    metrics = evaluate_detector(detector, samples, dataset_classes, postprocess=postprocess,
                                batch_size=args.batch_size, save_images=args.save_images,
                                num_images=args.num_images,
                                draw_threshold=args.draw_threshold,
                                bootstrap=args.bootstrap, seed=args.seed,
                                tile=args.tile, max_tiles=args.max_tiles,
                                tile_merge=args.tile_merge)  # fmt: skip
    print(format_table(metrics, str(args.model), args.split))
    if args.json:
        backend = getattr(detector, "backend", "torch")  # the runtime that ran the model
        if backend == "openvino":
            backend += f" ({args.ov_precision})"
        payload = {**metrics, "model": str(args.model), "split": args.split,
                   "nms_iou": args.nms_iou, "backend": backend, "tile": args.tile,
                   "max_tiles": args.max_tiles, "tile_merge": args.tile_merge}  # fmt: skip
        Path(args.json).write_text(json.dumps(json_safe(payload), indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
