"""Fine-tuning across class sets (training/engine/transfer.py) and the fine-tuning recipe
(training/recipe.py, configs/finetune.toml)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from model.checkpoint import load_model
from model.config import get_preset
from model.fcos import FCOS
from tests.training.synthetic import make_voc, save_random_weights, tiny_args
from tests.training.yolo_helpers import roboflow_dataset
from training.cli import main, resolve_config
from training.config import TrainConfig
from training.engine.checkpointing import load_init_weights
from training.engine.transfer import CLASS_ROWS, freeze_backbone, transfer_state
from training.recipe import FINETUNE, load_recipe
from training.trainer import Trainer

SOURCE = ("cat", "dog", "person")
TARGET = ("person", "tractor", "cat", "kite")


def _source(tmp_path: Path) -> FCOS:
    return save_random_weights(tmp_path / "src.pt", seed=3, classes=SOURCE, epoch=4)


def test_matching_tensors_are_copied_and_class_rows_kept_by_name(tmp_path: Path) -> None:
    source = _source(tmp_path)
    torch.manual_seed(0)
    model = FCOS(get_preset("tiny", class_names=TARGET))
    fresh = {k: v.clone() for k, v in model.state_dict().items()}
    report = transfer_state(model, source.state_dict(), SOURCE, TARGET)
    got, src = model.state_dict(), source.state_dict()
    for name in got:
        if name in CLASS_ROWS:
            continue
        assert torch.equal(got[name], src[name]), name  # backbone, FPN, towers, box, ctr
    for name in CLASS_ROWS:
        # person: source row 2 -> target row 0; cat: 0 -> 2; tractor and kite stay fresh.
        assert torch.equal(got[name][0], src[name][2]) and torch.equal(got[name][2], src[name][0])
        for new in (1, 3):
            assert torch.equal(got[name][new], fresh[name][new])
    prior = -math.log((1 - 0.01) / 0.01)
    assert got["head.cls_logits.bias"][[1, 3]].tolist() == pytest.approx([prior, prior])
    assert report.shared_classes == ["person", "cat"] and report.new_classes == ["tractor", "kite"]
    assert sorted(report.reinitialised) == [
        "head.cls_logits.bias (rows of 2 new classes)",
        "head.cls_logits.weight (rows of 2 new classes)",
    ]
    assert len(report.copied) == len(got) - 2 and not report.unused
    summary = report.summary()
    assert "class rows kept (same name): person, cat" in summary and "tractor, kite" in summary


def test_other_shapes_stay_initialised_and_are_listed(tmp_path: Path) -> None:
    source = _source(tmp_path)
    model = FCOS(get_preset("tiny", class_names=TARGET, fpn_channels=16, gn_groups=4))
    fresh = {k: v.clone() for k, v in model.state_dict().items()}
    report = transfer_state(model, source.state_dict(), SOURCE, TARGET)
    assert any(r.startswith("fpn.lateral.0.weight (shape") for r in report.reinitialised)
    assert torch.equal(model.state_dict()["fpn.lateral.0.weight"], fresh["fpn.lateral.0.weight"])
    assert report.shared_classes == []  # another head width: no class row can be kept
    assert any(n.startswith("backbone.") for n in report.copied)


def test_load_init_weights_transfers_and_says_what_it_did(tmp_path: Path) -> None:
    _source(tmp_path)
    model = FCOS(get_preset("tiny", class_names=TARGET))
    message = load_init_weights(model, tmp_path / "src.pt")
    assert "its 3 classes -> this run's 4" in message and "re-initialised 2" in message


def test_the_recipe_applies_from_a_trained_model_under_config_and_flags(tmp_path: Path) -> None:
    src = tmp_path / "src.pt"
    save_random_weights(src, seed=3, preset="r18-gn-lite", classes=SOURCE)
    data = roboflow_dataset(tmp_path / "rf")
    recipe = load_recipe(FINETUNE)
    cfg = resolve_config(["--data", str(data), "--init-weights", str(src)])
    for key, value in recipe.items():
        assert getattr(cfg, key) == (tuple(value) if isinstance(value, list) else value), key
    assert cfg.preset == "r18-gn-lite" and cfg.input_size == 384  # the file's architecture
    cfg = resolve_config(["--data", str(data), "--init-weights", str(src), "--lr", "1e-3",
                          "--preset", "tiny"])  # fmt: skip
    assert cfg.lr == 1e-3 and cfg.preset == "tiny"
    (tmp_path / "c.json").write_text(json.dumps({"epochs": 5}))
    cfg = resolve_config(["--config", str(tmp_path / "c.json"), "--data", str(data),
                          "--init-weights", str(src)])  # fmt: skip
    assert cfg.epochs == 5 and cfg.ema_decay == recipe["ema_decay"]
    off = resolve_config(["--data", str(data), "--init-weights", str(src), "--recipe", "none"])
    assert off.lr == TrainConfig.lr and off.preset == "r18-gn-lite"
    scratch = resolve_config(["--data", str(data)])
    assert scratch.lr == TrainConfig.lr and scratch.epochs == TrainConfig.epochs


def test_the_recipe_file_documents_every_field() -> None:
    """Every field's group of lines in configs/finetune.toml opens with a comment saying why."""
    fields = load_recipe(FINETUNE)
    assert set(fields) <= set(TrainConfig().to_dict())
    groups = [g.splitlines() for g in FINETUNE.read_text().split("\n\n")]
    for lines in groups:
        assert lines[0].startswith("#"), lines
    assert sum(1 for g in groups for ln in g if not ln.startswith("#")) == len(fields)
    assert fields["warmup_epochs"] >= fields["probe_epochs"]  # the cosine fits the budget


@pytest.mark.slow
def test_fine_tune_a_yolo_dataset_from_weights_of_other_classes(
    tmp_path: Path, single_thread: None, capsys: pytest.CaptureFixture[str]
) -> None:
    source = _source(tmp_path)
    data = roboflow_dataset(tmp_path / "rf", names_yaml="['cat', 'kite']")
    run = tmp_path / "run"
    args = ["--preset", "tiny", "--data", str(data), "--init-weights", str(tmp_path / "src.pt"),
            "--epochs", "1", "--batch-size", "2", "--workers", "0", "--device", "cpu",
            "--no-progress", "--output-dir", str(run), "--eval-interval", "1"]  # fmt: skip
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "class rows kept (same name): cat; started afresh: kite" in out
    assert "dataset check" in out and "4 boxes dropped" in out  # the check opens the run
    assert (run / "plots" / "data.png").stat().st_size > 0
    model, ckpt = load_model(run / "weights_fp16.pt")
    assert model.cfg.class_names == ("cat", "kite")
    assert ckpt["train_config"]["recipe"] == "auto" and ckpt["train_config"]["ema_decay"] == 0.99
    assert not torch.equal(model.backbone.conv1.weight.float(), source.backbone.conv1.weight)


def test_trainer_starts_from_weights_with_other_classes(
    tmp_path: Path, single_thread: None
) -> None:
    make_voc(tmp_path / "data" / "VOC", num_images=2, seed=2)
    source = save_random_weights(tmp_path / "w.pt", seed=123, classes=("green", "blue"))
    cfg = resolve_config(tiny_args(tmp_path / "data", tmp_path / "run", "--recipe", "none",
                                   "--init-weights", str(tmp_path / "w.pt")))  # fmt: skip
    trainer = Trainer(cfg)
    got, src = trainer.model.state_dict(), source.state_dict()
    assert torch.equal(got["head.cls_logits.weight"][1], src["head.cls_logits.weight"][0])  # green
    assert torch.equal(got["backbone.conv1.weight"], src["backbone.conv1.weight"])


@pytest.mark.parametrize(("freeze_at", "frozen"), [(0, ()), (1, ("conv1", "bn1")),
                                                   (2, ("conv1", "bn1", "layer1"))])  # fmt: skip
def test_freeze_at_stops_training_the_first_backbone_parts(
    freeze_at: int, frozen: tuple[str, ...]
) -> None:
    model = FCOS(get_preset("tiny"))
    count = freeze_backbone(model, freeze_at)
    off = {n.split(".")[1] for n, p in model.named_parameters() if not p.requires_grad}
    assert off == set(frozen)
    assert count == sum(p.numel() for p in model.parameters() if not p.requires_grad)
    images = torch.randn(1, 3, 64, 64)
    sum(o.sum() for level in model(images) for o in level).backward()
    for name, p in model.named_parameters():
        assert (p.grad is None) == (not p.requires_grad), name
