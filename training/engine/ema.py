"""Exponential moving average of model weights (with the usual warmup ramp of the decay)."""

from __future__ import annotations

import copy
import math
from typing import Any

import torch
from torch import nn


class ModelEMA:
    """ema = d * ema + (1 - d) * model, with d = decay * (1 - exp(-updates / tau)).

    The ramp keeps the average from being dominated by the random init early on. Float
    tensors (weights and norm buffers) are averaged; integer buffers are copied. The EMA model
    is a float32 copy in eval mode, never trained directly. `decay` and `tau` have no defaults
    here: TrainConfig's `ema_decay` and `ema_tau` are the one source.
    """

    def __init__(self, model: nn.Module, decay: float, tau: float) -> None:
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.decay = decay
        self.tau = tau
        self.updates = 0

    def current_decay(self) -> float:
        return self.decay * (1.0 - math.exp(-self.updates / self.tau))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        d = self.current_decay()
        ema_state = self.module.state_dict()
        floats_ema, floats_model = [], []
        for name, value in model.state_dict().items():
            target = ema_state[name]
            if target.is_floating_point():
                floats_ema.append(target)
                floats_model.append(value.detach())
            else:
                target.copy_(value)
        if floats_ema:
            torch._foreach_lerp_(floats_ema, floats_model, 1.0 - d)

    def state_dict(self) -> dict[str, Any]:
        return {
            "module": self.module.state_dict(),
            "updates": self.updates,
            "decay": self.decay,
            "tau": self.tau,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.module.load_state_dict(state["module"])
        self.updates = int(state["updates"])
