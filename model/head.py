"""FCOS head shared across pyramid levels."""

from __future__ import annotations

import math

import torch
from torch import nn

from model.config import CENTERNESS_BRANCHES


class Scale(nn.Module):
    """A learnable scalar (one per pyramid level) applied to the box regression output."""

    def __init__(self, init: float = 1.0) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(float(init)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale


def _tower(channels: int, depth: int, groups: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for _ in range(depth):
        layers += [
            nn.Conv2d(channels, channels, 3, 1, 1),
            nn.GroupNorm(min(groups, channels), channels),
            nn.ReLU(inplace=True),
        ]
    return nn.Sequential(*layers)


class FCOSHead(nn.Module):
    """Classification tower -> class logits; regression tower -> l,t,r,b and centre-ness.

    centerness_branch="cls" predicts centre-ness from the classification tower instead, as
    the first FCOS paper did (its later version moved it to the regression tower).
    Both variants have the same parameters; only the forward routing differs.
    Box output is ReLU(scale_l * x), i.e. distances in units of the level's stride; the
    caller multiplies by the stride to get pixels (FCOS with normalised regression targets).
    """

    def __init__(
        self, channels: int, num_classes: int, depth: int, groups: int, num_levels: int,
        prior_prob: float, centerness_branch: str = "reg",
    ) -> None:  # fmt: skip
        super().__init__()
        if centerness_branch not in CENTERNESS_BRANCHES:
            raise ValueError(
                f"centerness_branch must be one of {CENTERNESS_BRANCHES}, not {centerness_branch!r}"
            )
        self.centerness_on_cls = centerness_branch == "cls"
        self.cls_tower = _tower(channels, depth, groups)
        self.reg_tower = _tower(channels, depth, groups)
        self.cls_logits = nn.Conv2d(channels, num_classes, 3, 1, 1)
        self.bbox_pred = nn.Conv2d(channels, 4, 3, 1, 1)
        self.centerness = nn.Conv2d(channels, 1, 3, 1, 1)
        self.scales = nn.ModuleList(Scale(1.0) for _ in range(num_levels))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, std=0.01)
                nn.init.zeros_(m.bias)
        nn.init.constant_(self.cls_logits.bias, -math.log((1 - prior_prob) / prior_prob))

    def forward(
        self, feats: list[torch.Tensor]
    ) -> tuple[list[torch.Tensor], list[torch.Tensor], list[torch.Tensor]]:
        """Per level: logits (N, C, H, W), distances in strides (N, 4, H, W), ctr (N, 1, H, W)."""
        logits, boxes, ctrs = [], [], []
        for level, f in enumerate(feats):
            c = self.cls_tower(f)
            r = self.reg_tower(f)
            logits.append(self.cls_logits(c))
            boxes.append(torch.relu(self.scales[level](self.bbox_pred(r))))
            ctrs.append(self.centerness(c if self.centerness_on_cls else r))
        return logits, boxes, ctrs
