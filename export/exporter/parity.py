"""Parity between two FCOS runners (PyTorch vs ONNX Runtime, or fp32 vs int8 ONNX).

The same pre-processed tensor goes through both; the report gives, per input, the max abs
difference of each raw output and whether the detections after export.postprocess agree
(same count, one-to-one match with the same class, boxes and scores within tolerance).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import torch
from PIL import Image

from export.exporter.onnx_export import model_metadata
from export.exporter.proto_metadata import read_metadata
from export.inferer import Outputs
from export.metadata import INPUT_NAME, OUTPUT_NAMES, ModelMetadata
from export.postprocess import Detections, PostprocessConfig, postprocess
from export.preprocess import Letterbox, preprocess
from export.runtime import make_session
from model.fcos import FCOS

Runner = Callable[[np.ndarray], Outputs]


@dataclass(frozen=True)
class Tolerance:
    """Max abs differences allowed: raw outputs (logits; box distances in input pixels) and
    matched detections (boxes in original-image pixels, scores)."""

    cls_logits: float = 1e-3
    box_distances: float = 1e-2
    centerness_logits: float = 1e-3
    det_box: float = 0.5
    det_score: float = 1e-3

    def for_output(self, name: str) -> float:
        return float(getattr(self, name))


# A rough "did quantization break it" check for INT8 vs fp32, not an accuracy guarantee:
# judge INT8 models by their mAP on the validation set (training.evaluate).
INT8_TOLERANCE = Tolerance(
    cls_logits=1.0, box_distances=8.0, centerness_logits=1.0, det_box=8.0, det_score=0.1
)


@dataclass(frozen=True)
class DetectionMatch:
    ref_count: int
    cand_count: int
    matched: int  # one-to-one pairs of the same class (see match_detections)
    max_box_diff: float  # max abs box coordinate difference over matched pairs (0 when none)
    max_score_diff: float

    def ok(self, tol: Tolerance) -> bool:
        return (
            self.ref_count == self.cand_count == self.matched
            and self.max_box_diff <= tol.det_box
            and self.max_score_diff <= tol.det_score
        )


@dataclass(frozen=True)
class ParityRow:
    label: str
    input_hw: tuple[int, int]
    max_abs: dict[str, float]  # per output name
    detections: DetectionMatch
    ok: bool


@dataclass(frozen=True)
class ParityReport:
    reference: str
    candidate: str
    rows: tuple[ParityRow, ...]
    tolerance: Tolerance

    @property
    def ok(self) -> bool:
        return all(row.ok for row in self.rows)

    def format(self) -> str:
        t = self.tolerance
        lines = [
            f"parity: {self.reference} vs {self.candidate} (max |diff| allowed: cls "
            f"{t.cls_logits:g}, box {t.box_distances:g} px, ctr {t.centerness_logits:g}; "
            f"detections: box {t.det_box:g} px, score {t.det_score:g})",
            f"{'input':<14}{'HxW':>9}{'cls':>11}{'box px':>11}{'ctr':>11}"
            f"{'dets':>9}{'matched':>9}{'box px':>9}{'score':>9}  result",
        ]
        for r in self.rows:
            d = r.detections
            diffs = "".join(f"{r.max_abs[name]:>11.2e}" for name in OUTPUT_NAMES)
            lines.append(
                f"{r.label:<14}{f'{r.input_hw[0]}x{r.input_hw[1]}':>9}{diffs}"
                f"{f'{d.ref_count}/{d.cand_count}':>9}{d.matched:>9}{d.max_box_diff:>9.3f}"
                f"{d.max_score_diff:>9.4f}  {'ok' if r.ok else 'MISMATCH'}"
            )
        lines.append(f"overall: {'ok' if self.ok else 'MISMATCH'}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.format()


def torch_runner(model: FCOS) -> Runner:
    """model.forward in eval mode without autograd, NumPy in and out (fp32, CPU)."""

    def run(tensor: np.ndarray) -> Outputs:
        was_training = model.training
        model.eval()
        try:
            with torch.inference_mode():
                cls, box, ctr = model(torch.from_numpy(np.ascontiguousarray(tensor)))
        finally:
            model.train(was_training)
        return cls.numpy(), box.numpy(), ctr.numpy()

    return run


def onnx_runner(path: str | Path, threads: int | None = None) -> Runner:
    session = make_session(path, threads)

    def run(tensor: np.ndarray) -> Outputs:
        cls, box, ctr = session.run(list(OUTPUT_NAMES), {INPUT_NAME: tensor})
        return cls, box, ctr

    return run


def match_detections(ref: Detections, cand: Detections) -> DetectionMatch:
    """Greedy one-to-one matching (in reference order) to the closest same-class candidate."""
    used = np.zeros(len(cand), dtype=bool)
    box_diffs, score_diffs = [], []
    for i in range(len(ref)):
        same = np.flatnonzero((cand.class_ids == ref.class_ids[i]) & ~used)
        if same.size == 0:
            continue
        diffs = np.abs(cand.boxes[same] - ref.boxes[i]).max(axis=1)
        j = int(same[np.argmin(diffs)])
        used[j] = True
        box_diffs.append(float(diffs.min()))
        score_diffs.append(abs(float(cand.scores[j]) - float(ref.scores[i])))
    return DetectionMatch(len(ref), len(cand), len(box_diffs), max(box_diffs, default=0.0),
                          max(score_diffs, default=0.0))  # fmt: skip


def compare_tensor(
    ref: Runner,
    cand: Runner,
    tensor: np.ndarray,
    strides: Sequence[int],
    label: str,
    letterbox: Letterbox | None = None,
    tol: Tolerance = Tolerance(),
    post_cfg: PostprocessConfig = PostprocessConfig(),
) -> list[ParityRow]:
    """Run (N, 3, H, W) through both runners; one row per image of the batch."""
    ref_out, cand_out = ref(tensor), cand(tensor)
    hw = (int(tensor.shape[2]), int(tensor.shape[3]))
    rows = []
    for n in range(tensor.shape[0]):
        max_abs = {
            name: float(np.abs(r[n].astype(np.float64) - c[n]).max())
            for name, r, c in zip(OUTPUT_NAMES, ref_out, cand_out, strict=True)
        }
        dets_ref, dets_cand = (
            postprocess(o[0][n], o[1][n], o[2][n], hw, tuple(strides), letterbox, post_cfg)
            for o in (ref_out, cand_out)
        )
        match = match_detections(dets_ref, dets_cand)
        ok = match.ok(tol) and all(v <= tol.for_output(k) for k, v in max_abs.items())
        name = label if tensor.shape[0] == 1 else f"{label}[{n}]"
        rows.append(ParityRow(name, hw, max_abs, match, ok))
    return rows


def image_report(
    ref: Runner,
    cand: Runner,
    meta: ModelMetadata,
    image: Image.Image,
    sizes: Sequence[int],
    names: tuple[str, str],
    tol: Tolerance = Tolerance(),
    post_cfg: PostprocessConfig = PostprocessConfig(),
) -> ParityReport:
    """Letterbox `image` at each input size (longer side) and compare both runners on it."""
    rows: list[ParityRow] = []
    for size in sizes:
        tensor, lb = preprocess(image, int(size), meta.mean, meta.std)
        rows += compare_tensor(ref, cand, tensor, meta.strides, str(size), lb, tol, post_cfg)
    return ParityReport(names[0], names[1], tuple(rows), tol)


def parity_report(
    model: FCOS,
    onnx_path: str | Path,
    image: Image.Image,
    sizes: Sequence[int] = (512, 320),
    tol: Tolerance = Tolerance(),
    post_cfg: PostprocessConfig = PostprocessConfig(),
) -> ParityReport:
    """PyTorch `model` vs the ONNX file at each input size; `print(report)` gives a table."""
    meta = model_metadata(model)
    names = ("pytorch", f"onnxruntime ({Path(onnx_path).name})")
    return image_report(torch_runner(model), onnx_runner(onnx_path), meta, image, sizes, names,
                        tol, post_cfg)  # fmt: skip


def onnx_parity_report(
    reference_path: str | Path,
    candidate_path: str | Path,
    image: Image.Image,
    sizes: Sequence[int] = (512, 320),
    tol: Tolerance = Tolerance(),
    post_cfg: PostprocessConfig = PostprocessConfig(),
) -> ParityReport:
    """Two ONNX files (e.g. fp32 vs int8), pre-processed with the reference's metadata."""
    meta = read_metadata(onnx.load(str(reference_path), load_external_data=False))
    names = (Path(reference_path).name, Path(candidate_path).name)
    return image_report(onnx_runner(reference_path), onnx_runner(candidate_path), meta, image,
                        sizes, names, tol, post_cfg)  # fmt: skip


def synthetic_image(width: int = 640, height: int = 480, seed: int = 0) -> Image.Image:
    """A deterministic RGB test card: colour gradients, a few filled rectangles, mild noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    arr = np.stack([xx / width, yy / height, 1 - xx / width], axis=-1) * 255.0
    for _ in range(6):
        x0, y0 = int(rng.integers(0, width * 3 // 4)), int(rng.integers(0, height * 3 // 4))
        w, h = (
            int(rng.integers(width // 10, width // 3)),
            int(rng.integers(height // 10, height // 3)),
        )
        arr[y0 : y0 + h, x0 : x0 + w] = rng.integers(0, 256, size=3)
    arr += rng.normal(0.0, 8.0, size=arr.shape)
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")
