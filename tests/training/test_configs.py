"""configs/: every recipe file loads and validates; stage 38's is the recipe stored in the
shipped weights; TrainConfig's defaults are stage 37's recipe from scratch."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from training.cli import resolve_config
from training.config import TrainConfig, load_config_file

REPO = Path(__file__).resolve().parents[2]
CONFIGS = sorted((REPO / "configs").rglob("*.toml"))
# Where a run reads and writes, and how often it looks: not part of the recipe.
NOT_RECIPE = {"data_root", "init_weights", "output_dir", "plot_interval_s", "eval_interval",
              "recipe"}  # recipe: how defaults are chosen, written out in full here


def test_there_are_configs() -> None:
    assert len(CONFIGS) >= 17


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: str(p.relative_to(REPO)))
def test_config_file_loads_and_validates(path: Path) -> None:
    cfg = resolve_config(["--config", str(path)])
    assert cfg == TrainConfig.from_dict(load_config_file(path))
    assert cfg.output_dir == f"runs/voc-lite/{path.stem}"  # stages never overwrite each other
    if cfg.init_weights:  # each stage starts from an earlier stage's output (or a mean of them)
        assert cfg.init_weights.startswith("runs/voc-lite/")


def test_stage38_is_the_recipe_inside_the_shipped_weights() -> None:
    ckpt = torch.load(REPO / "models" / "default.pt", map_location="cpu", weights_only=False)
    stored = ckpt["train_config"]
    cfg = resolve_config(["--config", str(REPO / "configs" / "voc-lite" / "stage38.toml")])
    ours = cfg.to_dict()
    differ = {
        k: (ours[k], stored[k])
        for k in ours
        if k in stored and k not in NOT_RECIPE and json.dumps(ours[k]) != json.dumps(stored[k])
    }
    assert differ == {}


def test_defaults_are_stage37_recipe_from_scratch() -> None:
    stage37 = resolve_config(["--config", str(REPO / "configs" / "voc-lite" / "stage37.toml")])
    default, ours = TrainConfig().to_dict(), stage37.to_dict()
    differ = {k for k in default if default[k] != ours[k]}
    # A first run: from random init, longer, the runtime settings of an unknown machine.
    assert differ <= NOT_RECIPE | {"epochs", "workers", "cache_images", "progress",
                                   "checkpoint_interval", "lr_base_batch"}  # fmt: skip
    # The default lr scales with the batch; at stage 37's batch of 64 it is stage 37's lr.
    d = TrainConfig()
    assert d.batch_size == stage37.batch_size
    assert d.lr * d.batch_size / d.lr_base_batch == stage37.lr
    assert TrainConfig().init_weights == "" and TrainConfig().epochs > stage37.epochs


def test_extends_merges_and_rejects_cycles(tmp_path: Path) -> None:
    (tmp_path / "base.toml").write_text('epochs = 5\nlr = 0.01\n')
    (tmp_path / "child.toml").write_text('extends = "base.toml"\nlr = 0.02\n')
    assert load_config_file(tmp_path / "child.toml") == {"epochs": 5, "lr": 0.02}
    (tmp_path / "a.toml").write_text('extends = "b.toml"\n')
    (tmp_path / "b.toml").write_text('extends = "a.toml"\n')
    with pytest.raises(ValueError, match="cycle"):
        load_config_file(tmp_path / "a.toml")
    (tmp_path / "bad.toml").write_text('epochs = 5\nno_such_field = 1\n')
    with pytest.raises(ValueError, match="no_such_field"):
        resolve_config(["--config", str(tmp_path / "bad.toml")])
