"""Load torchvision-format ResNet-18 weights into our GroupNorm backbone.

Our module names match torchvision's (conv1, bn1, layer1..4 of BasicBlocks with
conv1/bn1/conv2/bn2/downsample.0/downsample.1), but every "bn" is a GroupNorm. The choice:

- conv weights are copied as they are;
- BatchNorm affine parameters (weight = gamma, bias = beta) are copied into the GroupNorm
  weight/bias of the same name: GN then normalises with per-sample group statistics instead
  of the BN running statistics, and re-applies the pretrained per-channel scale and shift, so
  each block keeps the pretrained channel scaling (this also replaces our zero-init of bn2);
- BN running_mean/running_var/num_batches_tracked are dropped: GN has no running statistics
  and renormalises every sample, so they have no counterpart (folding them, or the affine, into
  the conv would be undone by the GN that follows it);
- fc.* (the ImageNet classifier) is ignored.

Fine-tuning adapts the network to the GN statistics within the first epochs. The input
normalisation (ImageNet mean/std on 0..1 RGB) is the same as torchvision's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

DROPPED_SUFFIXES = ("running_mean", "running_var", "num_batches_tracked")


@dataclass
class LoadReport:
    loaded: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return f"backbone weights: {len(self.loaded)} tensors loaded, {len(self.dropped)} dropped"


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    obj: Any = torch.load(str(path), map_location="cpu", weights_only=True)
    for key in ("state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: expected a state dict")
    return {k.removeprefix("module."): v for k, v in obj.items() if isinstance(v, torch.Tensor)}


def load_torchvision_resnet18(backbone: nn.Module, state: dict[str, torch.Tensor]) -> LoadReport:
    """Copy conv weights and BN gamma/beta into `backbone` (a model.backbone.ResNet18GN).

    Raises ValueError when a backbone tensor has no source or shapes differ.
    """
    own = backbone.state_dict()
    report = LoadReport()
    new_state: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key.startswith("fc.") or key.endswith(DROPPED_SUFFIXES):
            report.dropped.append(key)
            continue
        if key not in own:
            raise ValueError(f"unexpected key {key!r}: not a ResNet-18 state dict?")
        if own[key].shape != value.shape:
            raise ValueError(
                f"{key}: shape {tuple(value.shape)} != backbone {tuple(own[key].shape)} "
                "(pretrained weights need backbone_channels (64, 128, 256, 512))"
            )
        new_state[key] = value.to(own[key].dtype)
        report.loaded.append(key)
    missing = sorted(set(own) - set(new_state))
    if missing:
        raise ValueError(f"backbone tensors missing from the weights file: {missing[:8]}...")
    backbone.load_state_dict(new_state)
    return report


def load_backbone_weights(backbone: nn.Module, path: str | Path) -> LoadReport:
    return load_torchvision_resnet18(backbone, read_state_dict(path))
