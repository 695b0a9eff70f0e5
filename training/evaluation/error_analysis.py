"""Error analysis at an operating point: what the detections above a score threshold get wrong.

    python -m training.evaluation.error_analysis --model models/default.onnx \
        --data ../shared/data/voc2012-640 --split val --json errors.json

Runs the model like `python -m training.evaluate` (the service's pre- and post-processing,
with the settings the service uses for that threshold on the final score, NMS IoU 0.5 and
at most 100 detections per image)
and labels every detection correct, ignored, duplicate, localisation, confusion or background
(`training.metrics.error_breakdown`). Prints per class: objects and the share found, detections and
the share correct, and how many of each error kind; then the misses by object size and the
most frequent confusions (predicted class -> true class).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from export.defaults import SCORE_THRESHOLD
from export.postprocess import PostprocessConfig, candidate_config
from training.evaluation.data import add_data_args, load_split
from training.evaluation.detectors import load_onnx_or_checkpoint
from training.evaluation.inference import run_detector
from training.evaluation.scoring import metric_inputs
from training.metrics.error_breakdown import KINDS, SIZES, ErrorBreakdown, error_breakdown


def _share(num: int, den: int) -> str:
    return f"{num / den:6.1%}" if den else "     -"


def breakdown_dict(b: ErrorBreakdown, class_names: Sequence[str]) -> dict[str, Any]:
    """JSON-ready counts: totals, per class, by size and the confusion pairs."""
    det = b.detections
    per_class = {
        name: {"objects": int(b.objects[i]), "missed": int(b.missed[i]),
               "detections": int(det[i]), **{k: int(b.kinds[k][i]) for k in KINDS}}
        for i, name in enumerate(class_names)
    }  # fmt: skip
    return {
        "objects": int(b.objects.sum()),
        "missed": int(b.missed.sum()),
        "detections": int(det.sum()),
        **{k: int(b.kinds[k].sum()) for k in KINDS},
        "per_class": per_class,
        "by_size": {s: {"objects": int(b.objects_by_size[i]), "missed": int(b.missed_by_size[i])}
                    for i, s in enumerate(SIZES)},
        "confusions": [{"predicted": class_names[p], "true": class_names[t], "count": n}
                       for p, t, n in b.top_confusions(None)],
    }


def format_breakdown(b: ErrorBreakdown, class_names: Sequence[str], top: int = 10) -> str:
    """A per-class table, the totals, the misses by size and the `top` confusion pairs."""
    width = max(len("class"), len("all"), *map(len, class_names))
    head = f"{'class':<{width}}  objects  found    dets  correct  " + "  ".join(
        f"{k[:5]:>5}" for k in KINDS[1:])
    lines = [head, "-" * len(head)]
    det = b.detections

    def row(name: str, objects: int, missed: int, dets: int, kinds: list[int]) -> str:
        found = _share(objects - missed, objects)
        return (f"{name:<{width}}  {objects:7d} {found}  {dets:6d}  {_share(kinds[0], dets)}  "
                + "  ".join(f"{n:5d}" for n in kinds[1:]))

    for i, name in enumerate(class_names):
        lines.append(row(name, int(b.objects[i]), int(b.missed[i]), int(det[i]),
                         [int(b.kinds[k][i]) for k in KINDS]))
    lines.append("-" * len(head))
    lines.append(row("all", int(b.objects.sum()), int(b.missed.sum()), int(det.sum()),
                     [int(b.kinds[k].sum()) for k in KINDS]))
    size_objects = b.objects_by_size.tolist()
    size_found = (b.objects_by_size - b.missed_by_size).tolist()
    sizes = ", ".join(f"{s} {_share(f, n).strip()} of {n}"
                      for s, f, n in zip(SIZES, size_found, size_objects, strict=True))
    lines.append(f"found by object size: {sizes}")
    pairs = b.top_confusions(top)
    if pairs:
        lines.append("most frequent confusions (predicted -> true): " + ", ".join(
            f"{class_names[p]} -> {class_names[t]} {n}" for p, t, n in pairs))
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m training.evaluation.error_analysis",
                                description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_args(p)
    p.add_argument("--score-threshold", type=float, default=SCORE_THRESHOLD,
                   help="the operating point (default: the service's, DETECTOR_SCORE_THRESHOLD)")
    p.add_argument("--near-iou", type=float, default=0.1,
                   help="overlap below which a wrong detection counts as background")
    p.add_argument("--top", type=int, default=10, help="confusion pairs to print")
    p.add_argument("--json", default=None, help="write the counts to this JSON file")
    p.add_argument("--threads", type=int, default=0, help="inference threads (0 = all cores)")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    detector = load_onnx_or_checkpoint(args.model, threads=args.threads or None)
    model_names = tuple(detector.metadata.class_names)
    try:
        _, to_model, samples = load_split(args, model_names)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    # The service's settings for this threshold: the same detections it would answer with.
    cfg = candidate_config(args.score_threshold, PostprocessConfig.max_detections,
                           PostprocessConfig.nms_iou)  # fmt: skip
    dets = run_detector(detector, samples, cfg)
    gts, preds = metric_inputs(samples, dets, to_model)
    b = error_breakdown(gts, preds, len(model_names), args.score_threshold,
                        near_iou=args.near_iou)  # fmt: skip
    print(f"model: {args.model}  split: {args.split}  images: {len(samples)}  "
          f"score >= {args.score_threshold}")
    print(format_breakdown(b, model_names, args.top))
    if args.json:
        payload = {"model": str(args.model), "split": args.split, "num_images": len(samples),
                   "score_threshold": args.score_threshold, "near_iou": args.near_iou,
                   **breakdown_dict(b, model_names)}  # fmt: skip
        Path(args.json).write_text(json.dumps(payload, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
