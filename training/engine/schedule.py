"""Learning-rate schedule: linear warmup then cosine decay, evaluated per iteration."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


def lr_at(
    it: int, base_lr: float, total_iters: int, warmup_iters: int, min_lr_ratio: float = 0.05,
    warmup_start_ratio: float = 0.001,
) -> float:  # fmt: skip
    """Learning rate for iteration `it` (0-based).

    Warmup: linear from base_lr * warmup_start_ratio (it = 0) to base_lr (it = warmup_iters).
    Then cosine from base_lr down to base_lr * min_lr_ratio at it = total_iters (and held there).
    """
    min_lr = base_lr * min_lr_ratio
    if warmup_iters > 0 and it < warmup_iters:
        start = base_lr * warmup_start_ratio
        return start + (base_lr - start) * it / warmup_iters
    decay_iters = max(1, total_iters - warmup_iters)
    progress = min(1.0, max(0.0, (it - warmup_iters) / decay_iters))
    return min_lr + (base_lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))


@dataclass
class WarmupCosine:
    """Sets each param group's lr from `lr_at`; its only state is the iteration counter."""

    base_lr: float
    total_iters: int
    warmup_iters: int
    min_lr_ratio: float = 0.05
    warmup_start_ratio: float = 0.001
    iteration: int = 0

    def lr(self) -> float:
        return lr_at(
            self.iteration,
            self.base_lr,
            self.total_iters,
            self.warmup_iters,
            self.min_lr_ratio,
            self.warmup_start_ratio,
        )

    def apply(self, optimizer: torch.optim.Optimizer) -> float:
        """Set the lr for the coming step (call before optimizer.step)."""
        lr = self.lr()
        for group in optimizer.param_groups:
            group["lr"] = lr
        return lr

    def step(self) -> None:
        self.iteration += 1

    def state_dict(self) -> dict[str, float | int]:
        return {
            "iteration": self.iteration,
            "base_lr": self.base_lr,
            "total_iters": self.total_iters,
            "warmup_iters": self.warmup_iters,
        }

    def load_state_dict(self, state: dict[str, float | int]) -> None:
        self.iteration = int(state["iteration"])
