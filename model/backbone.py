"""ResNet-18 with GroupNorm in place of every BatchNorm (torchvision-compatible key names)."""

from __future__ import annotations

import torch
from torch import nn


def group_norm(channels: int, groups: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(groups, channels), channels)


class BasicBlock(nn.Module):
    """Two 3x3 convs with GN; 1x1 projection shortcut when shape changes."""

    def __init__(self, in_ch: int, out_ch: int, stride: int, groups: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride, 1, bias=False)
        self.bn1 = group_norm(out_ch, groups)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, 1, 1, bias=False)
        self.bn2 = group_norm(out_ch, groups)
        self.relu = nn.ReLU(inplace=True)
        self.downsample: nn.Module | None = None
        if stride != 1 or in_ch != out_ch:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_ch, out_ch, 1, stride, bias=False), group_norm(out_ch, groups)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class ResNet18GN(nn.Module):
    """Stem 7x7/2 + max-pool, four stages of two BasicBlocks. Returns C3, C4, C5."""

    def __init__(self, channels: tuple[int, int, int, int] = (64, 128, 256, 512), groups: int = 32):
        super().__init__()
        c1 = channels[0]
        self.conv1 = nn.Conv2d(3, c1, 7, 2, 3, bias=False)
        self.bn1 = group_norm(c1, groups)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        in_ch = c1
        for i, ch in enumerate(channels):
            stride = 1 if i == 0 else 2
            layer = nn.Sequential(
                BasicBlock(in_ch, ch, stride, groups), BasicBlock(ch, ch, 1, groups)
            )
            setattr(self, f"layer{i + 1}", layer)
            in_ch = ch
        self.out_channels = channels[1:]
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.GroupNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        # Zero-init the last GN of each residual branch: each block starts as identity,
        # which makes from-scratch training markedly more stable.
        for block in self.blocks():
            nn.init.zeros_(block.bn2.weight)

    def blocks(self) -> list[BasicBlock]:
        """The residual blocks, input to output."""
        return [m for m in self.modules() if isinstance(m, BasicBlock)]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        c2 = self.layer1(x)
        c3 = self.layer2(c2)
        c4 = self.layer3(c3)
        c5 = self.layer4(c4)
        return c3, c4, c5
