"""Trainer building blocks: schedule, EMA, optimiser groups, config/CLI, checkpoints' RNG."""

from __future__ import annotations

import itertools
import json
import math
import random

import numpy as np
import pytest
import torch
from torch import nn

from model.config import get_preset
from model.fcos import FCOS
from training.cli import resolve_config
from training.config import TrainConfig
from training.engine.checkpointing import rng_state, set_rng_state
from training.engine.ema import ModelEMA
from training.engine.optim import build_optimizer, split_decay
from training.engine.schedule import WarmupCosine, lr_at


def test_lr_warmup_is_linear_from_start_ratio() -> None:
    assert lr_at(0, 1.0, 100, 10, 0.05, 0.001) == pytest.approx(0.001)
    assert lr_at(5, 1.0, 100, 10, 0.05, 0.001) == pytest.approx(0.001 + 0.999 * 0.5)
    assert lr_at(10, 1.0, 100, 10, 0.05, 0.001) == pytest.approx(1.0)


def test_lr_cosine_values() -> None:
    # Halfway through the decay: the mean of peak and floor.
    assert lr_at(55, 2.0, 100, 10, 0.1) == pytest.approx(0.2 + 1.8 * 0.5)
    q = 10 + 90 // 4  # not exact quarter: compare with the closed form
    expected = 0.2 + 1.8 * 0.5 * (1 + math.cos(math.pi * (q - 10) / 90))
    assert lr_at(q, 2.0, 100, 10, 0.1) == pytest.approx(expected)
    assert lr_at(100, 2.0, 100, 10, 0.1) == pytest.approx(0.2)
    assert lr_at(1000, 2.0, 100, 10, 0.1) == pytest.approx(0.2)  # held at the floor


def test_lr_no_warmup_starts_at_peak_and_decreases() -> None:
    values = [lr_at(i, 1e-3, 50, 0, 0.05) for i in range(51)]
    assert values[0] == pytest.approx(1e-3)
    assert all(a >= b for a, b in itertools.pairwise(values))


def test_scheduler_sets_param_groups_and_counts() -> None:
    opt = torch.optim.AdamW([nn.Parameter(torch.zeros(1))], lr=123.0)
    sched = WarmupCosine(1.0, 20, 4)
    sched.apply(opt)
    assert opt.param_groups[0]["lr"] == pytest.approx(lr_at(0, 1.0, 20, 4))
    for _ in range(7):
        sched.step()
    state = sched.state_dict()
    other = WarmupCosine(1.0, 20, 4)
    other.load_state_dict(state)
    assert other.apply(opt) == pytest.approx(lr_at(7, 1.0, 20, 4))


def test_ema_math_with_ramp() -> None:
    model = nn.Linear(2, 1)
    with torch.no_grad():
        model.weight.fill_(0.0)
        model.bias.fill_(0.0)
    ema = ModelEMA(model, decay=0.9, tau=2.0)
    expected = 0.0
    for step in range(1, 6):
        with torch.no_grad():
            model.weight.fill_(float(step))
            model.bias.fill_(float(step))
        ema.update(model)
        d = 0.9 * (1 - math.exp(-step / 2.0))
        expected = d * expected + (1 - d) * step
        assert ema.updates == step
        assert ema.current_decay() == pytest.approx(d)
        torch.testing.assert_close(ema.module.weight, torch.full((1, 2), expected))
    assert not any(p.requires_grad for p in ema.module.parameters())
    restored = ModelEMA(model, decay=0.9, tau=2.0)
    restored.load_state_dict(ema.state_dict())
    assert restored.updates == 5
    torch.testing.assert_close(restored.module.bias, ema.module.bias)


def test_no_weight_decay_on_norms_biases_and_scales() -> None:
    model = FCOS(get_preset("tiny", class_names=("a", "b")))
    decay, no_decay = split_decay(model)
    names = {id(p): n for n, p in model.named_parameters()}
    no_decay_names = {names[id(p)] for p in no_decay}
    assert "head.scales.0.scale" in no_decay_names
    assert "backbone.bn1.weight" in no_decay_names and "fpn.p6.bias" in no_decay_names
    assert all(p.ndim == 4 for p in decay)
    assert len(decay) + len(no_decay) == len(list(model.parameters()))
    opt = build_optimizer(model, 1e-3, 0.05, (0.9, 0.999))
    assert [g["weight_decay"] for g in opt.param_groups] == [0.05, 0.0]


def test_rng_state_roundtrip() -> None:
    state = rng_state()
    a = (random.random(), float(np.random.rand()), float(torch.rand(1)))
    set_rng_state(state)
    b = (random.random(), float(np.random.rand()), float(torch.rand(1)))
    assert a == b


def test_config_precedence_and_roundtrip(tmp_path) -> None:
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"epochs": 7, "lr": 0.01, "classes": ["x", "y"]}))
    cfg = resolve_config(
        [
            "--config",
            str(path),
            "--lr",
            "0.02",
            "--no-amp",
            "--betas",
            "0.8",
            "0.9",
            "--classes",
            "a,b,c",
        ]
    )
    assert (cfg.epochs, cfg.lr, cfg.amp, cfg.betas) == (7, 0.02, False, (0.8, 0.9))
    assert cfg.classes == ("a", "b", "c") and cfg.class_names() == ("a", "b", "c")
    assert TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    with pytest.raises(ValueError):
        TrainConfig.from_dict({"nope": 1})
    with pytest.raises(SystemExit):
        resolve_config(["--dataset-format", "yolo"])
    with pytest.raises(ValueError):
        TrainConfig(dataset_format="yolo").validate()


def test_speed_tool_runs_the_training_step(single_thread: None) -> None:
    from training.tools.speed import StepSpec, measure

    assert measure(StepSpec("tiny", 128, 2, device="cpu"), iters=1, warmup=1) > 0


@pytest.mark.parametrize(("flag", "radius"), [("1.5", 1.5), ("0", None), ("2", 2.0)])
def test_center_radius_zero_turns_centre_sampling_off(
    tmp_path, single_thread: None, flag: str, radius: float | None
) -> None:
    from tests.training.synthetic import make_voc, tiny_args
    from training.trainer import Trainer

    make_voc(tmp_path / "data" / "VOC", num_images=2, seed=1)
    cfg = resolve_config(tiny_args(tmp_path / "data", tmp_path / "run", "--center-radius", flag))
    assert Trainer(cfg).loss_fn.center_radius == radius


def test_negative_center_radius_is_refused() -> None:
    with pytest.raises(ValueError, match="center_radius"):
        resolve_config(["--center-radius", "-1"])


def test_ablation_flags_reach_the_loss_and_the_model(tmp_path, single_thread: None) -> None:
    from tests.training.synthetic import make_voc, tiny_args
    from training.engine.losses import giou_loss, iou_loss
    from training.trainer import Trainer

    make_voc(tmp_path / "data" / "VOC", num_images=2, seed=1)
    base = tiny_args(tmp_path / "data", tmp_path / "run")
    default = Trainer(resolve_config(base))
    assert default.loss_fn.box_loss_fn is giou_loss
    assert default.model_cfg.centerness_branch == "reg" and not default.model.head.centerness_on_cls
    flags = ["--box-loss", "iou", "--centerness-branch", "cls"]
    trainer = Trainer(resolve_config([*base, *flags]))
    assert trainer.loss_fn.box_loss_fn is iou_loss
    # The branch is part of the model config, so checkpoints (and exports) rebuild it.
    assert trainer.model_cfg.centerness_branch == "cls" and trainer.model.head.centerness_on_cls
    for bad in (["--box-loss", "l1"], ["--centerness-branch", "box"]):
        with pytest.raises(SystemExit):
            resolve_config(bad)
    for field, value in (("box_loss", "l1"), ("centerness_branch", "box")):
        with pytest.raises(ValueError, match=field):
            TrainConfig(**{field: value}).validate()


def test_old_configs_with_removed_options_still_load() -> None:
    """train_config of checkpoints written before drop_path and distillation were removed."""
    old = {**TrainConfig().to_dict(), "drop_path": 0.1, "distill_from": "t.pt",
           "distill_weight": 4.0}  # fmt: skip
    assert TrainConfig.from_dict(old) == TrainConfig()
    with pytest.raises(ValueError, match="unknown"):
        TrainConfig.from_dict({**old, "no_such_field": 1})
