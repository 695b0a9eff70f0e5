"""Normalisation, identical to `export.preprocess.preprocess`: (x / 255 - mean) / std, computed
as export does, (x - 255 * mean) / (255 * std) in float32 (IEEE ops: bit-identical results)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch


def _vectors(
    mean: Sequence[float], std: Sequence[float], device: torch.device | str = "cpu"
) -> tuple[torch.Tensor, torch.Tensor]:
    mean_vec = torch.from_numpy(np.asarray(mean, dtype=np.float32) * 255.0)
    scale_vec = torch.from_numpy(np.asarray(std, dtype=np.float32) * 255.0)
    return mean_vec.view(3, 1, 1).to(device), scale_vec.view(3, 1, 1).to(device)


def to_chw_uint8(image: np.ndarray) -> torch.Tensor:
    """HxWx3 uint8 (any strides, e.g. a flipped view) -> contiguous (3, H, W) uint8 tensor."""
    return torch.from_numpy(np.ascontiguousarray(np.asarray(image).transpose(2, 0, 1)))


def normalize_image(image: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """HxWx3 uint8 RGB -> (3, H, W) float32 tensor, bit-identical to export's preprocess."""
    mean_vec, scale_vec = _vectors(mean, std)
    return to_chw_uint8(image).to(torch.float32).sub_(mean_vec).div_(scale_vec)


def normalize_batch(
    images: torch.Tensor, mean: Sequence[float], std: Sequence[float]
) -> torch.Tensor:
    """(B, 3, H, W) uint8 (on any device) -> float32 normalised, on the same device.

    Use with `DetectionDataset(normalize_on_device=True)`: move the uint8 batch to the GPU
    (4x fewer bytes), then normalise there.
    """
    mean_vec, scale_vec = _vectors(mean, std, images.device)
    return (images.to(torch.float32) - mean_vec) / scale_vec
