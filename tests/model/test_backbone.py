"""Stochastic depth in the ResNet-18 backbone: identity at inference, per-sample drops while
training, linear per-block rates."""

from __future__ import annotations

import pytest
import torch

from model.backbone import ResNet18GN, drop_path


def test_drop_path_is_identity_when_off_or_in_eval() -> None:
    x = torch.randn(4, 3, 5, 5)
    assert drop_path(x, 0.0, training=True) is x
    assert drop_path(x, 0.5, training=False) is x


def test_drop_path_zeroes_or_rescales_whole_samples() -> None:
    torch.manual_seed(0)
    x = torch.rand(2000, 2, 3, 3) + 0.5  # strictly positive: a dropped sample is all zeros
    out = drop_path(x, 0.25, training=True)
    dropped = (out == 0).flatten(1).all(dim=1)  # (B,)
    kept = ~dropped
    assert torch.allclose(out[kept], x[kept] / 0.75)
    assert not (out[dropped] != 0).any()
    assert abs(dropped.float().mean().item() - 0.25) < 0.04  # binomial sd ~0.01
    # The expectation is unchanged: the mean over samples matches the input's.
    assert abs(out.mean().item() / x.mean().item() - 1.0) < 0.05


def test_set_drop_path_rates_rise_linearly_and_leave_eval_unchanged() -> None:
    torch.manual_seed(0)
    net = ResNet18GN((8, 16, 32, 32), groups=4)
    for block in net.blocks():  # the zero-init last GN would hide the residual branch
        torch.nn.init.ones_(block.bn2.weight)
    x = torch.randn(2, 3, 64, 64)
    net.eval()
    before = net(x)
    rates = net.set_drop_path(0.2)
    assert rates == pytest.approx([0.2 * i / 7 for i in range(8)])
    assert [b.drop_path_rate for b in net.blocks()] == rates
    for a, b in zip(before, net(x), strict=True):
        assert torch.equal(a, b)
    # Training mode draws different masks per call: outputs differ.
    net.train()
    torch.manual_seed(1)
    first = net(x)[2]
    torch.manual_seed(2)
    second = net(x)[2]
    assert not torch.allclose(first, second)
    assert net.set_drop_path(0.0) == [0.0] * 8
    with pytest.raises(ValueError, match="drop path"):
        net.set_drop_path(1.0)
