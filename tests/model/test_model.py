"""Model structure, output shapes and the documented location order."""

from __future__ import annotations

import math

import pytest
import torch

from export.postprocess import level_sizes
from model import FCOS, count_parameters, get_preset
from model.config import PRESETS, ModelConfig


@pytest.mark.parametrize("hw", [(128, 96), (96, 160)])
def test_output_shapes_two_sizes(hw: tuple[int, int]) -> None:
    cfg = get_preset("tiny", class_names=("a", "b", "c"))
    model = FCOS(cfg).eval()
    with torch.no_grad():
        cls, box, ctr = model(torch.randn(2, 3, *hw))
    p = sum(h * w for h, w in level_sizes(hw[0], hw[1], cfg.strides))
    assert cls.shape == (2, p, 3) and box.shape == (2, p, 4) and ctr.shape == (2, p, 1)
    assert (box >= 0).all()


def test_seed_spec_parameter_count() -> None:
    # Seed report: 19.1M parameters for 5 classes. Ours: 19,104,847 (5) / 19,139,422 (20).
    assert count_parameters(FCOS(get_preset("r18-gn", class_names=tuple("abcde")))) == 19_104_847
    assert count_parameters(FCOS(get_preset("r18-gn"))) == 19_139_422


def test_prior_probability_bias_and_level_order() -> None:
    torch.manual_seed(0)
    cfg = get_preset("tiny", class_names=("a",))
    model = FCOS(cfg).eval()
    bias = model.head.cls_logits.bias.item()
    assert torch.sigmoid(torch.tensor(bias)).item() == pytest.approx(0.01, abs=1e-6)
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        levels = model.forward_levels(x)
        cls, box, ctr = model(x)
        _, box_s, _ = model.forward_train(x)
    # P3 is first; its location (y=1, x=2) is flat index 1 * 12 + 2.
    assert torch.allclose(cls[0, 14], levels[0][0][0, :, 1, 2])
    # P4 follows P3 (8 x 12 = 96 locations); its (y=0, x=1) is 96 + 1; distances x stride 16.
    assert torch.allclose(box[0, 97], levels[1][1][0, :, 0, 1] * 16)
    assert torch.allclose(box_s[0, 97] * 16, box[0, 97])
    assert torch.allclose(ctr[0, -1], levels[2][-1][0, :, 0, 0])


def test_config_round_trip_and_presets() -> None:
    assert {"r18-gn", "r18-gn-lite", "tiny"} <= set(PRESETS)
    seed = PRESETS["r18-gn"]
    assert (seed.fpn_channels, seed.head_convs, seed.input_size) == (256, 4, 512)
    assert seed.strides == (8, 16, 32, 64, 128) and seed.num_classes == 20
    cfg = get_preset("tiny", class_names=["x", "y"])
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(KeyError):
        get_preset("nope")
    with pytest.raises(ValueError):
        ModelConfig.from_dict({"bogus": 1})
    assert math.isclose(cfg.prior_prob, 0.01)


def test_centerness_branch_routes_the_tower() -> None:
    """centerness_branch picks the tower that feeds centre-ness; the parameters are the same."""
    torch.manual_seed(0)
    reg = FCOS(get_preset("tiny"))
    cls_cfg = get_preset("tiny", centerness_branch="cls")
    assert ModelConfig.from_dict(cls_cfg.to_dict()).centerness_branch == "cls"
    on_cls = FCOS(cls_cfg)
    on_cls.load_state_dict(reg.state_dict())  # same keys and shapes
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        ctr_reg, ctr_cls = reg(x)[2], on_cls(x)[2]
        assert not torch.allclose(ctr_reg, ctr_cls)
        for model in (reg, on_cls):  # perturb the regression tower only
            model.head.reg_tower[0].weight.add_(0.5)
        assert not torch.allclose(reg(x)[2], ctr_reg)
        torch.testing.assert_close(on_cls(x)[2], ctr_cls)
    with pytest.raises(ValueError, match="centerness_branch"):
        FCOS(get_preset("tiny", centerness_branch="box"))
