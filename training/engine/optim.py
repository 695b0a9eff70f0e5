"""AdamW with weight decay only on conv/linear weights (not norms, biases or Scale factors)."""

from __future__ import annotations

import torch
from torch import nn


def split_decay(model: nn.Module) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """(decay, no_decay): tensors with ndim <= 1 (norm weights/biases, conv biases, the
    per-level Scale scalars) get no weight decay."""
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for _, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim <= 1 else decay).append(p)
    return decay, no_decay


def build_optimizer(
    model: nn.Module, lr: float, weight_decay: float, betas: tuple[float, float],
    fused: bool = False,
) -> torch.optim.AdamW:  # fmt: skip
    decay, no_decay = split_decay(model)
    groups = [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    kwargs: dict[str, object] = {"fused": True} if fused else {}
    return torch.optim.AdamW(groups, lr=lr, betas=betas, **kwargs)  # type: ignore[arg-type]
