"""The training step's input side: targets padded on the host, identical to per-image lists;
the HSV jitter drawn by the loader and applied on the device."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tests.training.synthetic import make_voc, run_tiny, tiny_args, tiny_batch
from training.cli import resolve_config
from training.config import TrainConfig
from training.data.hsv_device import hsv_jitter_batch
from training.data.loaders import hsv_on_device
from training.engine.loop import batch_to_device, train_step
from training.trainer import Trainer


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


def test_to_device_applies_the_loaders_hsv_gains(tmp_path: Path, single_thread: None) -> None:
    make_voc(tmp_path / "data" / "VOC", num_images=2, seed=4)
    trainer = Trainer(resolve_config(tiny_args(tmp_path / "data", tmp_path / "run")))
    images, boxes, labels = tiny_batch()
    gains = torch.tensor([[0.01, 1.5, 0.8], [-0.015, 0.4, 1.3]], dtype=torch.float64)
    x, pb, pl = batch_to_device((images, boxes, labels, gains), trainer.ctx)
    coloured = hsv_jitter_batch(images, gains)
    assert not torch.equal(coloured, images)
    ref, ref_b, ref_l = batch_to_device((coloured, boxes, labels), trainer.ctx)
    assert torch.equal(x, ref) and torch.equal(pb, ref_b) and torch.equal(pl, ref_l)
    identity = torch.tensor([[0.0, 1.0, 1.0]] * 2)
    plain = batch_to_device((images, boxes, labels), trainer.ctx)[0]
    assert torch.equal(batch_to_device((images, boxes, labels, identity), trainer.ctx)[0], plain)


@pytest.mark.parametrize(
    ("flags", "device", "expected"),
    [
        ((), "cpu", False),  # auto: the loader on a CPU
        ((), "cuda", True),  # auto: the device on a GPU
        (("--hsv-on", "device"), "cpu", True),
        (("--hsv-on", "loader"), "cuda", False),
        (("--hsv-on", "device", "--no-augment"), "cuda", False),
        (("--hsv-on", "device", "--hsv-h", "0", "--hsv-s", "0", "--hsv-v", "0"), "cuda", False),
    ],
)
def test_where_the_hsv_jitter_runs(flags: tuple[str, ...], device: str, expected: bool) -> None:
    assert hsv_on_device(resolve_config(list(flags)), torch.device(device)) is expected


def test_hsv_on_refuses_other_places() -> None:
    with pytest.raises(SystemExit):
        resolve_config(["--hsv-on", "gpu"])
    with pytest.raises(ValueError, match="hsv_on"):
        TrainConfig(hsv_on="gpu").validate()


def test_a_run_with_hsv_on_the_device(tmp_path: Path, single_thread: None) -> None:
    """The trainer's loader yields the gains and its step applies them (CPU here)."""
    run = run_tiny(tmp_path, "--hsv-on", "device")
    cfg = resolve_config(tiny_args(tmp_path / "data", tmp_path / "again", "--hsv-on", "device"))
    trainer = Trainer(cfg)
    assert trainer.data.hsv_on_device
    batch = next(iter(trainer.data.stream.epoch(1)))
    assert len(batch) == 4 and batch[3].shape == (2, 3)
    epochs = [json.loads(s) for s in (run / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in epochs if r.get("type") == "epoch"] == [1]
    assert json.loads((run / "train_config.json").read_text())["hsv_on"] == "device"
