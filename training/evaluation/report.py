"""Evaluation output: the metrics table and annotated images (Pillow ImageDraw)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from export.postprocess import Detections
from export.preprocess import load_image

if TYPE_CHECKING:
    from training.data.sample import Sample

GT_COLOUR = (0, 220, 0)
DIFFICULT_COLOUR = (0, 140, 255)
DET_COLOUR = (255, 40, 40)
DRAW_SCORE_THRESHOLD = 0.3  # detections below this are not drawn (they are still evaluated)


def _fmt(value: float) -> str:
    return "   n/a" if value is None or math.isnan(value) else f"{value:6.4f}"


def json_safe(value: Any) -> Any:
    """nan / inf -> None (JSON null), recursively through dicts."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    return value


def format_table(metrics: dict[str, Any], model: str | None = None, split: str | None = None
                 ) -> str:
    """Per-class AP@0.5 (VOC all-point) and AP@[.5:.95], then the summary metrics."""
    per50 = metrics["per_class"]
    per5095 = metrics.get("per_class_map50_95", {})
    width = max([len("class"), *map(len, per50)])
    lines = []
    if model is not None:
        lines.append(f"model: {model}  split: {split}  images: {metrics['num_images']}")
    lines.append(f"{'class':<{width}}  AP@0.5  AP@[.5:.95]")
    lines.append("-" * (width + 21))
    for name, ap in per50.items():
        lines.append(f"{name:<{width}}  {_fmt(ap)}  {_fmt(per5095.get(name, math.nan))}")
    lines.append("-" * (width + 21))
    rows = [
        ("mAP@0.5 (VOC, all-point)", metrics["map50"]),
        ("AP@[.5:.95] (COCO)", metrics["map50_95"]),
        ("AP50 (COCO, 101-point)", metrics["ap50"]),
        ("AP75", metrics["ap75"]),
        ("APs / APm / APl", None),
    ]
    for label, value in rows:
        if value is None:
            sizes = " / ".join(_fmt(metrics[k]).strip()
                               for k in ("ap_small", "ap_medium", "ap_large"))
            lines.append(f"{label:<26} {sizes}")
        else:
            lines.append(f"{label:<26} {_fmt(value)}")
    ci = metrics.get("map50_ci95")
    if ci:
        lines.append(f"{'mAP@0.5 95% interval':<26} {_fmt(ci['low']).strip()} - "
                     f"{_fmt(ci['high']).strip()} (bias-corrected bootstrap, {ci['draws']} "
                     f"draws of the images: mean {ci['mean']:.4f}, std {ci['std']:.4f})")
    lines.append(f"{'images/s':<26} {metrics['images_per_s']:.1f}")
    return "\n".join(lines)


def draw_detections(
    image: Image.Image,
    gt_boxes: np.ndarray,
    gt_names: Sequence[str],
    gt_difficult: np.ndarray,
    det: Detections,
    det_names: Sequence[str],
    score_threshold: float = DRAW_SCORE_THRESHOLD,
) -> Image.Image:
    """GT in green (difficult in blue), detections in red with "name score"."""
    out = image.convert("RGB").copy()
    draw = ImageDraw.Draw(out)
    font = ImageFont.load_default()
    line = max(1, round(max(out.size) / 400))
    for box, name, diff in zip(gt_boxes, gt_names, gt_difficult, strict=True):
        colour = DIFFICULT_COLOUR if diff else GT_COLOUR
        draw.rectangle([float(v) for v in box], outline=colour, width=line)
        draw.text((float(box[0]) + 2, float(box[3]) - 12), name, fill=colour, font=font)
    for box, score, cls in zip(det.boxes, det.scores, det.class_ids, strict=True):
        if score < score_threshold:
            continue
        x1, y1, x2, y2 = (float(v) for v in box)
        draw.rectangle([x1, y1, x2, y2], outline=DET_COLOUR, width=line)
        text = f"{det_names[int(cls)]} {float(score):.2f}"
        left, top, right, bottom = draw.textbbox((x1, y1), text, font=font)
        ty = y1 - (bottom - top) - 2 if y1 - (bottom - top) - 2 >= 0 else y1
        draw.rectangle([x1, ty, x1 + right - left + 4, ty + bottom - top + 2], fill=DET_COLOUR)
        draw.text((x1 + 2, ty), text, fill=(255, 255, 255), font=font)
    return out


def save_annotated(
    sample: Sample,
    det: Detections,
    model_names: Sequence[str],
    dataset_names: Sequence[str],
    out_dir: Path,
    score_threshold: float = DRAW_SCORE_THRESHOLD,
) -> Path:
    """Write `<out_dir>/<image_id>.jpg` with the sample's GT and the detections of `det`
    (annotation pixels) scoring at least `score_threshold`."""
    image = load_image(Path(sample.image_path).read_bytes(), None)
    boxes = np.asarray(sample.boxes, dtype=np.float64).reshape(-1, 4)
    sx, sy = image.width / sample.width, image.height / sample.height
    scale = np.array([sx, sy, sx, sy])
    scaled = Detections(det.boxes * scale.astype(np.float32), det.scores, det.class_ids)
    gt_names = [dataset_names[int(i)] for i in sample.labels]
    drawn = draw_detections(image, boxes * scale, gt_names, np.asarray(sample.difficult),
                            scaled, model_names, score_threshold)
    path = out_dir / f"{Path(str(sample.image_id)).name}.jpg"
    drawn.save(path, quality=90)
    return path
