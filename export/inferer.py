"""The raw-output detector interface shared by the runtime, parity and evaluation."""

from __future__ import annotations

from typing import Protocol

import numpy as np

from export.metadata import ModelMetadata

# One inference's raw outputs for (N, 3, H, W) input: (N, P, C) class logits, (N, P, 4) ltrb
# box distances in input pixels, (N, P, 1) centre-ness logits.
Outputs = tuple[np.ndarray, np.ndarray, np.ndarray]


class Inferer(Protocol):
    """Anything with the model's metadata and `.infer(tensor) -> Outputs`:
    `export.runtime.OnnxDetector`, `training.evaluation.detectors.TorchDetector`."""

    @property
    def metadata(self) -> ModelMetadata: ...

    def infer(self, tensor: np.ndarray) -> Outputs: ...
