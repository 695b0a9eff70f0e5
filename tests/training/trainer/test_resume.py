"""--resume continues exactly: 2 epochs straight == 1 epoch, stop, resume 1 epoch."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from tests.training.synthetic import make_voc, tiny_args
from training.cli import main

# Augmentation on (mosaic included in epoch 1, off for the last epoch) and EMA on, so the
# resume must restore the data order, the per-epoch augmentation, optimizer, EMA and schedule.
EXTRA = ("--epochs", "2", "--no-aug-epochs", "1", "--mosaic-prob", "0.5", "--mixup-prob", "0.5",
         "--ema-decay", "0.9", "--ema-tau", "3", "--seed", "3")  # fmt: skip


def _epoch_losses(run: Path) -> list[dict]:
    records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    keys = ("epoch", "total", "cls", "box", "ctr", "lr")
    return [{k: r[k] for k in keys} for r in records if r["type"] == "epoch"]


def _assert_same_tensors(a: object, b: object, where: str) -> None:
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), where
        for k in a:
            _assert_same_tensors(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), where  # type: ignore[arg-type]
        for i, (x, y) in enumerate(zip(a, b, strict=True)):  # type: ignore[call-overload]
            _assert_same_tensors(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


def test_resume_is_exact(tmp_path: Path, single_thread: None) -> None:
    make_voc(tmp_path / "data" / "VOC", num_images=6, seed=5)
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert main(tiny_args(tmp_path / "data", straight, *EXTRA)) == 0
    assert main(tiny_args(tmp_path / "data", split, *EXTRA, "--stop-epoch", "1")) == 0
    first = torch.load(split / "last.pt", weights_only=False)
    assert first["epoch"] == 1 and not (split / "final.pt").exists()
    # Resume takes the saved config; only --resume (and run-only flags) are given.
    assert main(["--resume", str(split / "last.pt"), "--no-progress"]) == 0

    a = torch.load(straight / "final.pt", weights_only=False)
    b = torch.load(split / "final.pt", weights_only=False)
    assert a["epoch"] == b["epoch"] == 2
    for key in ("model", "ema", "optimizer", "scheduler", "ema_state"):
        _assert_same_tensors(a[key], b[key], key)
    assert not torch.equal(
        a["model"]["head.cls_logits.bias"], first["model"]["head.cls_logits.bias"]
    )  # epoch 2 did train
    assert _epoch_losses(straight) == _epoch_losses(split)
