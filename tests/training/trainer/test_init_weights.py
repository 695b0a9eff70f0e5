"""--init-weights (warm start from an earlier run's weights) and --cpu-amp (bf16 on CPU)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from model.fcos import FCOS
from tests.training.synthetic import (
    make_voc,
    run_tiny,
    save_random_weights,
    tiny_args,
    tiny_batch,
)
from training.cli import resolve_config
from training.engine.loop import train_step
from training.trainer import Trainer


def _perturbed_weights(path: Path, classes: tuple[str, ...] = ("red", "green")) -> FCOS:
    """A tiny model whose weights differ from any fresh initialisation, saved as fp16."""
    return save_random_weights(path, seed=123, classes=classes, half=True, epoch=7)


def test_init_weights_start_the_model_and_ema_with_a_fresh_schedule(
    tmp_path: Path, single_thread: None
) -> None:
    make_voc(tmp_path / "data" / "VOC", num_images=4, seed=2)
    source = _perturbed_weights(tmp_path / "w.pt")
    cfg = resolve_config(tiny_args(tmp_path / "data", tmp_path / "run", "--epochs", "1",
                                   "--init-weights", str(tmp_path / "w.pt")))  # fmt: skip
    trainer = Trainer(cfg)
    assert trainer.start_epoch == 0 and trainer.scheduler.iteration == 0
    expected = {k: v.half().float() for k, v in source.state_dict().items()}
    for name, value in trainer.model.state_dict().items():
        assert torch.equal(value, expected[name]), name
    assert trainer.ema is not None
    for name, value in trainer.ema.module.state_dict().items():
        assert torch.equal(value, expected[name]), name


def test_init_weights_run_trains_from_them(tmp_path: Path, single_thread: None) -> None:
    _perturbed_weights(tmp_path / "w.pt")
    run = run_tiny(tmp_path, "--init-weights", str(tmp_path / "w.pt"))
    final = torch.load(run / "final.pt", weights_only=False)
    assert final["epoch"] == 1 and final["train_config"]["init_weights"] == str(tmp_path / "w.pt")


@pytest.mark.parametrize("cpu_amp", [False, True])
def test_cpu_amp_switches_bf16_autocast_on_cpu(
    tmp_path: Path, single_thread: None, cpu_amp: bool
) -> None:
    make_voc(tmp_path / "data" / "VOC", num_images=2, seed=4)
    flags = ["--cpu-amp"] if cpu_amp else []
    trainer = Trainer(resolve_config(tiny_args(tmp_path / "data", tmp_path / "run", *flags)))
    assert trainer.ctx.amp is cpu_amp
    images, boxes, labels = tiny_batch()
    seen: list[torch.dtype] = []
    hook = trainer.model.head.cls_logits.register_forward_hook(
        lambda _m, _i, out: seen.append(out.dtype)
    )
    losses = train_step(trainer.ctx, trainer.ctx.normalize(images), boxes, labels)
    hook.remove()
    assert torch.isfinite(losses).all()
    assert seen and set(seen) == {torch.bfloat16 if cpu_amp else torch.float32}
