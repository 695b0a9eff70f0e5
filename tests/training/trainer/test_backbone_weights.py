"""--backbone-weights: a torchvision-format ResNet-18 state dict lands in the GN backbone."""

from __future__ import annotations

import pytest
import torch

from model.config import get_preset
from model.fcos import FCOS
from training.engine.backbone_weights import load_backbone_weights


def _bn(prefix: str, ch: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
    return {
        f"{prefix}.weight": torch.rand(ch, generator=gen) + 0.5,
        f"{prefix}.bias": torch.randn(ch, generator=gen),
        f"{prefix}.running_mean": torch.randn(ch, generator=gen),
        f"{prefix}.running_var": torch.rand(ch, generator=gen) + 0.1,
        f"{prefix}.num_batches_tracked": torch.tensor(1000),
    }


def torchvision_resnet18_state(seed: int = 0) -> dict[str, torch.Tensor]:
    """The key names and shapes of torchvision.models.resnet18().state_dict(), random values."""
    gen = torch.Generator().manual_seed(seed)
    sd = {"conv1.weight": torch.randn(64, 3, 7, 7, generator=gen), **_bn("bn1", 64, gen)}
    in_ch = 64
    for layer, ch in enumerate((64, 128, 256, 512), start=1):
        for block in range(2):
            p = f"layer{layer}.{block}"
            cin = in_ch if block == 0 else ch
            sd[f"{p}.conv1.weight"] = torch.randn(ch, cin, 3, 3, generator=gen)
            sd.update(_bn(f"{p}.bn1", ch, gen))
            sd[f"{p}.conv2.weight"] = torch.randn(ch, ch, 3, 3, generator=gen)
            sd.update(_bn(f"{p}.bn2", ch, gen))
            if block == 0 and layer > 1:
                sd[f"{p}.downsample.0.weight"] = torch.randn(ch, cin, 1, 1, generator=gen)
                sd.update(_bn(f"{p}.downsample.1", ch, gen))
        in_ch = ch
    sd["fc.weight"] = torch.randn(1000, 512, generator=gen)
    sd["fc.bias"] = torch.randn(1000, generator=gen)
    return sd


def test_torchvision_weights_land_in_backbone(tmp_path) -> None:
    sd = torchvision_resnet18_state()
    path = tmp_path / "resnet18.pth"
    torch.save(sd, path)
    model = FCOS(get_preset("r18-gn", class_names=("a",)))
    head_before = {k: v.clone() for k, v in model.head.state_dict().items()}
    report = load_backbone_weights(model.backbone, path)
    own = model.backbone.state_dict()
    convs = [k for k in sd if k.endswith("weight") and sd[k].ndim == 4]
    assert len(convs) == 20  # stem + 16 block convs + 3 projections
    for key in convs:
        torch.testing.assert_close(own[key], sd[key])
    for key in ("bn1.weight", "bn1.bias", "layer3.0.downsample.1.weight", "layer4.1.bn2.bias"):
        torch.testing.assert_close(own[key], sd[key])  # BN gamma/beta -> GN weight/bias
    assert len(report.loaded) == len(own)
    assert "fc.weight" in report.dropped and "bn1.running_var" in report.dropped
    for k, v in model.head.state_dict().items():  # nothing outside the backbone changes
        torch.testing.assert_close(v, head_before[k])


def test_wrapped_and_prefixed_state_dicts_load(tmp_path) -> None:
    sd = {f"module.{k}": v for k, v in torchvision_resnet18_state(1).items()}
    path = tmp_path / "wrapped.pth"
    torch.save({"state_dict": sd}, path)
    model = FCOS(get_preset("r18-gn", class_names=("a",)))
    load_backbone_weights(model.backbone, path)
    torch.testing.assert_close(model.backbone.conv1.weight, sd["module.conv1.weight"])


def test_mismatched_backbone_is_rejected(tmp_path) -> None:
    path = tmp_path / "resnet18.pth"
    torch.save(torchvision_resnet18_state(), path)
    tiny = FCOS(get_preset("tiny", class_names=("a",)))
    with pytest.raises(ValueError, match="shape"):
        load_backbone_weights(tiny.backbone, path)
    partial = {k: v for k, v in torchvision_resnet18_state().items() if "layer4" not in k}
    torch.save(partial, path)
    with pytest.raises(ValueError, match="missing"):
        load_backbone_weights(FCOS(get_preset("r18-gn", class_names=("a",))).backbone, path)
