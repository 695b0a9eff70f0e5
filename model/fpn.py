"""Feature pyramid P3-P7 on C3-C5 (FCOS variant: P6 from P5, P7 from ReLU(P6))."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class FPN(nn.Module):
    def __init__(self, in_channels: tuple[int, ...], out_channels: int) -> None:
        super().__init__()
        self.lateral = nn.ModuleList(nn.Conv2d(c, out_channels, 1) for c in in_channels)
        self.output = nn.ModuleList(
            nn.Conv2d(out_channels, out_channels, 3, 1, 1) for _ in in_channels
        )
        self.p6 = nn.Conv2d(out_channels, out_channels, 3, 2, 1)
        self.p7 = nn.Conv2d(out_channels, out_channels, 3, 2, 1)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_uniform_(m.weight, a=1)  # as in the FCOS/Detectron FPN
                nn.init.zeros_(m.bias)

    def forward(self, feats: tuple[torch.Tensor, ...]) -> list[torch.Tensor]:
        laterals = [conv(f) for conv, f in zip(self.lateral, feats, strict=True)]
        for i in range(len(laterals) - 1, 0, -1):
            up = F.interpolate(laterals[i], size=laterals[i - 1].shape[-2:], mode="nearest")
            laterals[i - 1] = laterals[i - 1] + up
        outs = [conv(x) for conv, x in zip(self.output, laterals, strict=True)]
        p6 = self.p6(outs[-1])
        p7 = self.p7(F.relu(p6))
        return [*outs, p6, p7]
