"""The detectors an evaluation runs: an exported ONNX file on its runtime, or a PyTorch model.

Both answer `export.inferer.Inferer` (`.metadata`, `.infer(tensor)` -> raw outputs), so the
rest of the evaluation runs them the same way. torch is imported only for checkpoints.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from export.backends import Precision, load_detector
from export.inferer import Inferer, Outputs
from export.metadata import ModelMetadata

if TYPE_CHECKING:
    import torch

    from model.config import ModelConfig


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


def load_onnx_or_checkpoint(
    path: str | Path,
    backend: str = "onnxruntime",
    threads: int | None = None,
    precision: Precision = "bf16",
) -> Inferer:
    """An `.onnx` file -> `export.backends.load_detector` (the runtime the service uses:
    onnxruntime, openvino or auto, OpenVINO with the `precision` hint); anything else is read
    as a PyTorch checkpoint into a `TorchDetector` (backend and precision do not apply).

    `threads`: intra-op threads of the runtime, or torch.set_num_threads for a checkpoint.
    """
    if Path(path).suffix.lower() == ".onnx":
        return load_detector(path, backend, threads, precision=precision)
    if threads:
        import torch

        torch.set_num_threads(threads)
    return TorchDetector.from_checkpoint(path)
