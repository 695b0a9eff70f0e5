"""Tiny models and datasets for the promotion tests (tests/training/test_promote.py and the
capture loop, tests/test_capture_loop.py): a served model, a candidate made better on purpose
(the dataset's labels are its own detections) and a folder snapshot to prove nothing changed."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from export.exporter.onnx_export import export_onnx
from model import FCOS, get_preset
from tests import TINY_CLASSES


def tiny_model(seed: int = 0, classes: Sequence[str] = TINY_CLASSES,
               confident_class: int | None = None) -> FCOS:  # fmt: skip
    """The `tiny` preset, default init from torch seed `seed`; `confident_class`: that class's
    logit bias raised from the prior (about -4.6) to +2, so it is detected all over."""
    torch.manual_seed(seed)
    model = FCOS(get_preset("tiny", class_names=tuple(classes)))
    if confident_class is not None:
        with torch.no_grad():
            model.head.cls_logits.bias[confident_class] = 2.0
    return model.eval()


def export_tiny(model: FCOS, path: Path, version: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return export_onnx(model, path, version=version, name="fcos-tiny")


def noise_png(seed: int, size: tuple[int, int] = (96, 80)) -> bytes:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "PNG")
    return buf.getvalue()


def write_yolo(root: Path, images: Sequence[bytes], split: str = "test",
               names: Sequence[str] = TINY_CLASSES) -> Path:  # fmt: skip
    """A data.yaml dataset with `images` (no labels yet) in `split`; returns the yaml."""
    (root / "images" / split).mkdir(parents=True, exist_ok=True)
    (root / "labels" / split).mkdir(parents=True, exist_ok=True)
    for data in images:
        (root / "images" / split / f"{hashlib.sha256(data).hexdigest()[:16]}.png").write_bytes(data)
    listed = "".join(f"  {i}: {n}\n" for i, n in enumerate(names))
    (root / "data.yaml").write_text(f"{split}: images/{split}\nnc: {len(names)}\nnames:\n{listed}")
    return root / "data.yaml"


def label_with(onnx_path: Path, data_yaml: Path, split: str = "test") -> int:
    """Overwrite the split's labels with the model's own detections (so that model scores a
    perfect mAP on it); returns the number of boxes written."""
    from training.data.source import load_data
    from training.evaluation.detectors import load_onnx_or_checkpoint
    from training.evaluation.inference import run_detector

    samples, _ = load_data(data_yaml, split)
    dets = run_detector(load_onnx_or_checkpoint(onnx_path, threads=1), samples)
    total = 0
    for s, d in zip(samples, dets, strict=True):
        lines = []
        for (x1, y1, x2, y2), c in zip(d.boxes.tolist(), d.class_ids.tolist(), strict=True):
            cx, cy = (x1 + x2) / 2 / s.width, (y1 + y2) / 2 / s.height
            lines.append(f"{c} {cx:.6f} {cy:.6f} {(x2 - x1) / s.width:.6f} "
                         f"{(y2 - y1) / s.height:.6f}\n")  # fmt: skip
        label = Path(str(s.image_path).replace("/images/", "/labels/")).with_suffix(".txt")
        label.write_text("".join(lines))
        total += len(lines)
    return total


def snapshot(folder: Path, skip: Sequence[str] = ()) -> dict[str, tuple[str, int]]:
    """Every file under `folder` (but `skip` names): relative path -> (sha256, mtime ns)."""
    return {str(p.relative_to(folder)): (hashlib.sha256(p.read_bytes()).hexdigest(),
                                         p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name not in skip}  # fmt: skip
