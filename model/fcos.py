"""FCOS detector: backbone + FPN + shared head. Its forward output is what gets exported."""

from __future__ import annotations

import torch
from torch import nn

from model.backbone import ResNet18GN
from model.config import ModelConfig
from model.fpn import FPN
from model.head import FCOSHead


def _flatten(x: torch.Tensor) -> torch.Tensor:
    """(N, K, H, W) -> (N, H*W, K), row-major over (y, x)."""
    n, k = x.shape[:2]
    return x.reshape(n, k, -1).permute(0, 2, 1)


class FCOS(nn.Module):
    """Forward returns, per location, levels P3..P7 concatenated, each level row-major (y, x):

    - cls_logits (N, P, C): class logits (sigmoid gives scores);
    - box_distances (N, P, 4): l, t, r, b distances in input pixels from the location
      (x * stride + stride // 2, y * stride + stride // 2);
    - centerness_logits (N, P, 1).

    Level l has ceil(H / stride_l) x ceil(W / stride_l) locations. No thresholding, top-k or
    NMS happens inside: post-processing is export.postprocess (NumPy).
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.backbone = ResNet18GN(cfg.backbone_channels, cfg.gn_groups)
        self.fpn = FPN(self.backbone.out_channels, cfg.fpn_channels)
        self.head = FCOSHead(
            cfg.fpn_channels, cfg.num_classes, cfg.head_convs, cfg.gn_groups,
            len(cfg.strides), cfg.prior_prob, cfg.centerness_branch,
        )  # fmt: skip

    def forward_levels(
        self, images: torch.Tensor
    ) -> tuple[list[torch.Tensor], list[torch.Tensor], list[torch.Tensor]]:
        """Raw per-level maps; box distances are in units of each level's stride."""
        return self.head(self.fpn(self.backbone(images)))

    def forward_train(
        self, images: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Like forward, but box distances stay in units of each location's stride."""
        logits, boxes, ctrs = self.forward_levels(images)
        cls = torch.cat([_flatten(x) for x in logits], dim=1)
        box = torch.cat([_flatten(b) for b in boxes], dim=1)
        ctr = torch.cat([_flatten(x) for x in ctrs], dim=1)
        return cls, box, ctr

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        logits, boxes, ctrs = self.forward_levels(images)
        cls = torch.cat([_flatten(x) for x in logits], dim=1)
        box = torch.cat(
            [_flatten(b) * float(s) for b, s in zip(boxes, self.cfg.strides, strict=True)], dim=1
        )
        ctr = torch.cat([_flatten(x) for x in ctrs], dim=1)
        return cls, box, ctr


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
