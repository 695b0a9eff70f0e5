"""The training step's input side: targets padded on the host, identical to per-image lists."""

from __future__ import annotations

from pathlib import Path

import torch

from tests.training.synthetic import make_voc, single_thread, tiny_args, tiny_batch
from training.cli import resolve_config
from training.loop import batch_to_device, train_step
from training.trainer import Trainer

__all__ = ["single_thread"]


def test_to_device_pads_the_targets(tmp_path: Path, single_thread: None) -> None:
    make_voc(tmp_path / "data" / "VOC", num_images=2, seed=4)
    trainer = Trainer(resolve_config(tiny_args(tmp_path / "data", tmp_path / "run")))
    images, boxes, labels = tiny_batch()
    boxes[1] = torch.cat([boxes[1], torch.tensor([[0.0, 0.0, 40.0, 40.0]])])
    labels[1] = torch.tensor([1, 0])
    x, pb, pl = batch_to_device((images, boxes, labels), trainer.ctx)
    assert x.dtype == torch.float32 and x.shape == images.shape
    assert pb.shape == (2, 2, 4) and pl.tolist() == [[0, -1], [1, 0]]
    assert torch.equal(pb[0, 0], boxes[0][0]) and torch.equal(pb[1], boxes[1])


def test_a_step_on_padded_targets_equals_one_on_lists(tmp_path: Path, single_thread: None) -> None:
    make_voc(tmp_path / "data" / "VOC", num_images=2, seed=4)
    images, boxes, labels = tiny_batch()
    steps = []
    for name in ("lists", "padded"):
        torch.manual_seed(0)  # the same initial weights for both trainers
        trainer = Trainer(resolve_config(tiny_args(tmp_path / "data", tmp_path / name)))
        x, pb, pl = batch_to_device((images, boxes, labels), trainer.ctx)
        losses = train_step(trainer.ctx, x, *((boxes, labels) if name == "lists" else (pb, pl)))
        steps.append((losses, [p.detach().clone() for p in trainer.model.parameters()]))
    (loss_a, params_a), (loss_b, params_b) = steps
    assert torch.equal(loss_a, loss_b)
    assert all(torch.equal(a, b) for a, b in zip(params_a, params_b, strict=True))
