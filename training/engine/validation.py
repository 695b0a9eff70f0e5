"""Validation during training: the shared evaluation (training.evaluation) on an in-memory model.

Images take the service's path (export.preprocess + the NumPy export.postprocess), so the
mAP logged here is the one the exported model gets (up to ONNX numerics).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from model.config import ModelConfig
from training.data import Sample
from training.evaluation.detectors import TorchDetector
from training.evaluation.scoring import evaluate_detector


def evaluate_model(
    model: torch.nn.Module, cfg: ModelConfig, samples: Sequence[Sample],
    class_names: Sequence[str], workers: int = 4,
) -> dict[str, Any]:  # fmt: skip
    """VOC mAP@0.5, COCO-style mAP@0.5:0.95 and per-class APs of `model` on `samples`."""
    device = next(model.parameters()).device
    batch = 16 if device.type == "cuda" else 4
    return evaluate_detector(
        TorchDetector(model, cfg), samples, class_names, batch_size=batch, workers=workers
    )
