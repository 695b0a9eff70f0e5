"""Evaluate a detector on a dataset split: VOC mAP@0.5 and COCO-style AP.

    python -m training.evaluate --model model.onnx --data-root VOC2012 --split val
    python -m training.evaluate --model run/best.pt --data-root DIR --split val --json m.json
    python -m training.evaluate --model runs/mine/model.onnx --data my/data.yaml --split test

--data takes a YOLO data.yaml, a COCO .json, a Roboflow COCO export or a VOC folder
(training/data/source.py); the model's own classes are matched to the dataset's by name.

Images go through exactly the service's path: `export.preprocess.load_image` (bytes, JPEG draft
at the input size) + `preprocess` + `export.postprocess.postprocess` (candidate threshold 0.05,
at most 100 detections). Boxes are mapped back to the annotated image size. ONNX files run on
ONNX Runtime, or OpenVINO with --backend openvino (the same NumPy pre- and post-processing,
so this checks its accuracy: `--ov-precision bf16|f32`); PyTorch checkpoints run through
`TorchDetector`, which the trainer can also build from an in-memory (EMA) model. This module
imports torch only for checkpoints (the VOC loader imports `model.config`, whose package may
still pull torch in).
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import sys
import time
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, get_args

import numpy as np

from export.backends import BACKENDS, Precision
from export.inferer import Inferer, Outputs
from export.metadata import ModelMetadata
from export.postprocess import Detections, PostprocessConfig, postprocess
from export.preprocess import Letterbox, load_image, preprocess
from training.evaluation.data import add_data_args, class_mapping, load_split
from training.evaluation.report import DRAW_SCORE_THRESHOLD, format_table, json_safe, save_annotated
from training.metrics import GroundTruth, Predictions, coco_evaluate
from training.metrics.bootstrap import bootstrap_map
from training.metrics.voc import voc_records, voc_result

if TYPE_CHECKING:
    import torch

    from model.config import ModelConfig
    from training.data.sample import Sample


class TorchDetector:
    """A PyTorch FCOS behind OnnxDetector's `.metadata` / `.infer(tensor)` interface.

    `model` may live on any device and be in train mode (it is put in eval mode for the call
    and restored afterwards); outputs come back as float32 NumPy arrays.
    """

    def __init__(self, model: torch.nn.Module, cfg: ModelConfig | None = None) -> None:
        self.model = model
        cfg = cfg if cfg is not None else model.cfg  # type: ignore[assignment]
        self.cfg = cfg
        self._metadata = ModelMetadata(
            name=cfg.name, version="torch", preset=cfg.name, class_names=tuple(cfg.class_names),
            strides=tuple(cfg.strides), input_size=cfg.input_size, mean=tuple(cfg.mean),
            std=tuple(cfg.std), precision="fp32",
        )

    @property
    def metadata(self) -> ModelMetadata:
        return self._metadata

    @classmethod
    def from_checkpoint(cls, path: str | Path, use_ema: bool = True) -> TorchDetector:
        from model.checkpoint import load_model

        model, _ = load_model(path, use_ema=use_ema)
        return cls(model)

    def infer(self, tensor: np.ndarray) -> Outputs:
        import torch

        param = next(self.model.parameters())
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.inference_mode():
                x = torch.from_numpy(np.ascontiguousarray(tensor)).to(param.device, param.dtype)
                outs = self.model(x)
        finally:
            self.model.train(was_training)
        cls, box, ctr = (o.float().cpu().numpy() for o in outs)
        return cls, box, ctr


def load_detector(
    path: str | Path,
    threads: int | None = None,
    backend: str = "onnxruntime",
    precision: Precision = "bf16",
) -> Inferer:
    """An `.onnx` file -> the `backend` runtime's detector (`export.backends.load_detector`:
    onnxruntime, openvino or auto, OpenVINO with the `precision` hint); anything else is read
    as a PyTorch checkpoint (backend and precision do not apply).

    `threads`: intra-op threads of the runtime, or torch.set_num_threads for a checkpoint.
    """
    if Path(path).suffix.lower() == ".onnx":
        from export.backends import load_detector as load_onnx

        return load_onnx(path, backend, threads, precision=precision)
    if threads:
        import torch

        torch.set_num_threads(threads)
    return TorchDetector.from_checkpoint(path)


def _prepare(sample: Sample, meta: ModelMetadata) -> tuple[np.ndarray, Letterbox]:
    """Read + decode + letterbox one image, like the service; boxes map to the annotation size
    (the JPEG draft decode may be smaller than the annotated image)."""
    image = load_image(Path(sample.image_path).read_bytes(), None, draft_size=meta.input_size)
    tensor, lb = preprocess(image, meta.input_size, meta.mean, meta.std)
    return tensor, lb.for_original_size(sample.width, sample.height)


def run_detector(
    detector: Inferer,
    samples: Sequence[Sample],
    cfg: PostprocessConfig = PostprocessConfig(),
    batch_size: int = 1,
    workers: int = 2,
) -> list[Detections]:
    """Detections per sample, in annotated-image pixels and model class ids.

    Images are decoded in `workers` threads. With batch_size > 1, images of a chunk that share
    the same letterboxed shape are stacked (no extra padding, so the outputs are unchanged).
    """
    meta = detector.metadata
    results: list[Detections] = []

    def flush(chunk: list[tuple[np.ndarray, Letterbox]]) -> None:
        out: list[Detections | None] = [None] * len(chunk)
        shapes: dict[tuple[int, ...], list[int]] = {}
        for i, item in enumerate(chunk):
            shapes.setdefault(item[0].shape, []).append(i)
        for shape, idx in shapes.items():
            cls, box, ctr = detector.infer(np.concatenate([chunk[i][0] for i in idx]))
            for j, i in enumerate(idx):
                lb = chunk[i][1]
                out[i] = postprocess(cls[j], box[j], ctr[j], shape[2:], meta.strides, lb, cfg)
        results.extend(d for d in out if d is not None)
        chunk.clear()

    chunk: list[tuple[np.ndarray, Letterbox]] = []
    batch_size = max(1, batch_size)
    with ThreadPoolExecutor(max(1, workers)) as pool:
        # Bounded read-ahead: at most one batch plus 2 * workers images in memory.
        pending: deque[Future[tuple[np.ndarray, Letterbox]]] = deque()
        it = iter(samples)
        for sample in itertools.islice(it, batch_size + 2 * workers):
            pending.append(pool.submit(_prepare, sample, meta))
        while pending:
            chunk.append(pending.popleft().result())
            for sample in itertools.islice(it, 1):
                pending.append(pool.submit(_prepare, sample, meta))
            if len(chunk) >= batch_size:
                flush(chunk)
        if chunk:
            flush(chunk)
    return results


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
    """
    model_names = tuple(detector.metadata.class_names)
    to_model = class_mapping(model_names, class_names)
    t0 = time.perf_counter()
    dets = run_detector(detector, samples, postprocess, batch_size, workers)
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


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m training.evaluate", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_args(p)
    p.add_argument("--json", default=None, help="write the metrics to this JSON file")
    p.add_argument("--save-images", default=None, help="write annotated JPEGs to this folder")
    p.add_argument("--num-images", type=int, default=8, help="how many images to annotate")
    p.add_argument("--draw-threshold", type=float, default=DRAW_SCORE_THRESHOLD,
                   help="annotated images show detections scoring at least this")  # fmt: skip
    p.add_argument("--score-threshold", type=float, default=PostprocessConfig.score_threshold,
                   help="candidate threshold")
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
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        detector = load_detector(args.model, args.threads or None, args.backend,
                                 args.ov_precision)  # fmt: skip
    except ImportError as exc:  # --backend openvino without the extra installed
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        dataset_classes, _, samples = load_split(args, detector.metadata.class_names)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    postprocess = PostprocessConfig(score_threshold=args.score_threshold, nms_iou=args.nms_iou,
                                    centerness=args.centerness)  # fmt: skip
    metrics = evaluate_detector(detector, samples, dataset_classes, postprocess=postprocess,
                                batch_size=args.batch_size, save_images=args.save_images,
                                num_images=args.num_images,
                                draw_threshold=args.draw_threshold,
                                bootstrap=args.bootstrap, seed=args.seed)  # fmt: skip
    print(format_table(metrics, str(args.model), args.split))
    if args.json:
        backend = getattr(detector, "backend", "torch")  # the runtime that ran the model
        if backend == "openvino":
            backend += f" ({args.ov_precision})"
        payload = {**metrics, "model": str(args.model), "split": args.split,
                   "nms_iou": args.nms_iou, "backend": backend}  # fmt: skip
        Path(args.json).write_text(json.dumps(json_safe(payload), indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
