"""The benchmarked weights: one PyTorch model, exported by the bench itself to fp32/INT8 ONNX,
so the ONNX files and the PyTorch eager reference are guaranteed to be the same weights."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from bench.images import write_calibration_images

if TYPE_CHECKING:
    from model.fcos import FCOS


@dataclass(frozen=True)
class ModelSource:
    """Either a training checkpoint, or a preset with random init from a torch seed."""

    checkpoint: Path | None = None
    preset: str = "r18-gn"
    seed: int = 0

    def describe(self) -> str:
        if self.checkpoint is not None:
            path = self.checkpoint.resolve()
            shown = path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path
            return f"checkpoint {shown}"
        return f"preset {self.preset}, random init (torch seed {self.seed})"


def build_model(source: ModelSource) -> FCOS:
    import torch

    from model import FCOS, get_preset
    from model.checkpoint import load_model

    if source.checkpoint is not None:
        model, _ = load_model(source.checkpoint)
    else:
        torch.manual_seed(source.seed)
        model = FCOS(get_preset(source.preset))
    return model.float().eval()


@dataclass(frozen=True)
class ExportedModel:
    precision: str  # "fp32" | "int8"
    path: Path
    size_mb: float
    seconds: float
    note: str = ""


def export_models(
    model: FCOS,
    workdir: Path,
    precisions: list[str],
    calibration_dir: Path | None,
    calibration_images: int,
) -> dict[str, ExportedModel]:
    """Export `model` to fp32 ONNX (always, INT8 is made from it) and INT8 if asked."""
    from export.exporter.onnx_export import export_onnx
    from export.exporter.quantize import quantize_int8

    out: dict[str, ExportedModel] = {}
    t0 = time.perf_counter()
    fp32 = export_onnx(model, workdir / "model.fp32.onnx")
    out["fp32"] = ExportedModel("fp32", fp32, fp32.stat().st_size / 1e6,
                                time.perf_counter() - t0)  # fmt: skip
    if "int8" in precisions:
        note = f"calibrated on {calibration_images} images of {calibration_dir}"
        if calibration_dir is None:
            calibration_dir = workdir / "calibration"
            write_calibration_images(calibration_dir, calibration_images)
            note = (f"calibrated on {calibration_images} synthetic images: speed only, "
                    "not an accuracy measurement")  # fmt: skip
        t0 = time.perf_counter()
        int8 = quantize_int8(fp32, workdir / "model.int8.onnx", calibration_dir,
                             calibration_images)  # fmt: skip
        out["int8"] = ExportedModel("int8", int8, int8.stat().st_size / 1e6,
                                    time.perf_counter() - t0, note)  # fmt: skip
    return out


def existing_model(path: Path) -> ExportedModel:
    """An ONNX file timed as is (the bundled default): precision from its metadata."""
    import onnx

    from export.exporter.proto_metadata import read_metadata

    meta = read_metadata(onnx.load(str(path), load_external_data=False))
    return ExportedModel(meta.precision, path, path.stat().st_size / 1e6, 0.0,
                         f"the file {path.name} as is")  # fmt: skip


class TorchEager:
    """PyTorch eager fp32 forward of `model` on a fixed (1, 3, H, W) tensor, timed."""

    def __init__(self, model: FCOS, tensor: np.ndarray, threads: int) -> None:
        import torch

        torch.set_num_threads(threads)
        self.torch = torch
        self.model = model
        self.x = torch.from_numpy(np.ascontiguousarray(tensor))
        self.run()  # warm-up (allocator, oneDNN primitives)

    def run(self) -> float:
        with self.torch.inference_mode():
            t0 = time.perf_counter()
            self.model(self.x)
            return time.perf_counter() - t0
