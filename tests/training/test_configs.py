"""configs/: every recipe file loads and validates; the flattened stages resolve as before;
stage 38's is the recipe stored in the shipped weights; TrainConfig's defaults are stage 37's
recipe from scratch; the field metadata is the one source of help and choices."""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path

import pytest
import torch

from training.cli import build_parser, resolve_config
from training.config import (
    LEGACY_DATA_FIELDS,
    MAX_EXTENDS_LEVELS,
    TrainConfig,
    field_help,
    load_config_file,
)

REPO = Path(__file__).resolve().parents[2]
CONFIGS = sorted((REPO / "configs" / "voc-lite").glob("*.toml"))  # the finetune recipe: below
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


def test_extends_merges_and_is_at_most_two_levels(tmp_path: Path) -> None:
    (tmp_path / "base.toml").write_text('epochs = 5\nlr = 0.01\n')
    (tmp_path / "child.toml").write_text('extends = "base.toml"\nlr = 0.02\n')
    assert load_config_file(tmp_path / "child.toml") == {"epochs": 5, "lr": 0.02}
    (tmp_path / "grandchild.toml").write_text('extends = "child.toml"\nseed = 3\n')
    with pytest.raises(ValueError, match=f"at most {MAX_EXTENDS_LEVELS} levels"):
        load_config_file(tmp_path / "grandchild.toml")
    (tmp_path / "a.toml").write_text('extends = "b.toml"\n')
    (tmp_path / "b.toml").write_text('extends = "a.toml"\n')
    with pytest.raises(ValueError, match="levels"):  # a cycle is a deep chain too
        load_config_file(tmp_path / "a.toml")
    (tmp_path / "self.toml").write_text('extends = "self.toml"\n')
    with pytest.raises(ValueError, match="itself"):
        load_config_file(tmp_path / "self.toml")
    (tmp_path / "bad.toml").write_text('epochs = 5\nno_such_field = 1\n')
    with pytest.raises(ValueError, match="no_such_field"):
        resolve_config(["--config", str(tmp_path / "bad.toml")])


# Each stage's resolved TrainConfig computed before the lineage was flattened (when stages
# extended each other up to 8 files deep), by the loader of that time.
BEFORE = json.loads((Path(__file__).parent / "stage_configs_before.json").read_text())
# Fields added since, at the default that keeps what the stages did then.
ADDED_SINCE: dict[str, object] = {"crop_scale": "fit", "budget_spent_s": 0.0}


@pytest.mark.parametrize("name", sorted(BEFORE))
def test_flattened_stage_resolves_exactly_as_before(name: str) -> None:
    path = REPO / "configs" / "voc-lite" / name
    resolved = TrainConfig.from_dict(load_config_file(path)).to_dict()
    assert resolved == {**ADDED_SINCE, **BEFORE[name]}
    text = path.read_text()  # the shipped lineage: a stage extends one base at most
    if "extends" in text:
        parent = path.parent / text.split('extends = "', 1)[1].split('"', 1)[0]
        assert "extends" not in parent.read_text(), name


def test_every_field_has_help_and_the_parser_uses_it(capsys: pytest.CaptureFixture[str]) -> None:
    parser = build_parser()
    actions = {a.option_strings[0]: a for a in parser._actions if a.option_strings}
    for f in fields(TrainConfig):
        assert len(field_help(f.name)) > 10, f.name
        if f.name in LEGACY_DATA_FIELDS:
            flag = actions.get("--" + f.name.replace("_", "-"))
            assert flag is None or flag.dest == "data", f.name  # --data-root: --data's alias
            continue
        action = actions["--" + f.name.replace("_", "-")]
        assert action.help is not None and action.help.startswith(field_help(f.name)[:40])
        choices = f.metadata.get("choices")
        if choices is not None:
            assert tuple(action.choices) == choices, f.name
            for bad in ("nope",):
                with pytest.raises(ValueError, match=f.name):
                    TrainConfig(**{f.name: bad}).validate()
    assert LEGACY_DATA_FIELDS == ("dataset_format", "data_root", "train_split", "val_split",
                                  "coco_train_json", "coco_train_images", "coco_val_json",
                                  "coco_val_images")  # fmt: skip
    for flag in ("--train-split", "--val-split", "--dataset-format", "--coco-train-json"):
        with pytest.raises(SystemExit):  # no flags: --data names a dataset
            parser.parse_args([flag, "x"])
    capsys.readouterr()
    assert parser.parse_args(["--data-root", "d"]).data == "d"  # the old spelling of --data


def test_docs_table_is_generated_from_the_fields() -> None:
    from training.config import config_table

    table = config_table()
    doc = (REPO / "docs" / "TRAINING.md").read_text()
    assert table in doc  # python scripts/sync_docs.py rewrites it
    for f in fields(TrainConfig):
        assert f"`--{f.name.replace('_', '-')}`" in table or f"`{f.name}` (no flag)" in table


def test_stale_explanations_stay_fixed() -> None:
    import inspect

    import onnx

    import training.config
    from model.config import PRESETS
    from training.engine.ema import ModelEMA
    from training.recipe import FINETUNE

    # The EMA defaults have one source: ModelEMA takes them, TrainConfig holds them.
    params = inspect.signature(ModelEMA).parameters
    assert params["decay"].default is inspect.Parameter.empty
    assert params["tau"].default is inspect.Parameter.empty
    finetune = FINETUNE.read_text()
    d = TrainConfig()
    assert f"default ({d.ema_decay:g}, ramp {d.ema_tau:g})" in finetune
    for path in REPO.joinpath("configs").rglob("*.*"):
        assert "0.9998" not in path.read_text(), path
    # Recipes are TOML files, as configs/ is; the precedence lists the recipe layer.
    assert FINETUNE.suffix == ".toml" and not list(REPO.joinpath("configs").rglob("*.json"))
    assert "< the recipe" in " ".join((training.config.__doc__ or "").split())
    # r18-gn-lite is 384 px: the bundled model's size and every shipped GPU stage's.
    meta = {p.key: p.value for p in onnx.load(str(REPO / "models" / "default.onnx")).metadata_props}
    assert PRESETS["r18-gn-lite"].input_size == int(meta["input_size"]) == 384
    assert TrainConfig().resolved_input_size() == 384
    assert TrainConfig(input_size=0).resolved_input_size() == 384
    for name in ("stage37.toml", "stage38.toml"):
        assert resolve_config(["--config", str(REPO / "configs" / "voc-lite" / name)]).input_size \
            == 384


def test_finetune_notes_are_short_and_free_of_tracker_references() -> None:
    import re

    notes = (REPO / "configs" / "finetune.md").read_text()
    assert len(notes.splitlines()) <= 100
    mine = ("config.py", "cli.py", "recipe.py", "trainer.py", "check.py", "__main__.py")
    for path in [*REPO.joinpath("configs").rglob("*"), REPO / "docs" / "TRAINING.md",
                 *(REPO / "training" / name for name in mine)]:  # fmt: skip
        if path.suffix:
            assert not re.search(r"\bissues? \d+", path.read_text(), re.I), path


def test_recipe_by_name_is_the_finetune_file() -> None:
    from training.recipe import FINETUNE, recipe_path

    assert recipe_path({"recipe": "finetune"}) == FINETUNE
    assert recipe_path({"recipe": "auto", "init_weights": "x.pt"}) == FINETUNE
    assert recipe_path({"recipe": "auto"}) is None and recipe_path({"recipe": "none"}) is None
    with pytest.raises(ValueError, match="recipe"):
        recipe_path({"recipe": "no/such.toml"})


@pytest.mark.parametrize(
    "flag, expected", [("avx512_bf16", True), ("amx_bf16", True), (None, False)]
)
def test_the_finetune_recipe_turns_cpu_amp_on_where_bf16_is_native(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], flag: str | None,
    expected: bool,
) -> None:
    import training.recipe

    monkeypatch.setattr(training.recipe, "native_bf16", lambda: flag)
    fields = training.recipe.recipe_fields({"recipe": "finetune"})
    assert fields["cpu_amp"] is expected
    said = capsys.readouterr().out
    assert f"cpu_amp {'on' if expected else 'off'}" in said and (flag or "no native") in said
    # No recipe, or a run from scratch: the TrainConfig default (off), nothing said.
    assert "cpu_amp" not in training.recipe.recipe_fields({"recipe": "none"})
    assert "cpu_amp" not in training.recipe.recipe_fields({"recipe": "auto"})
    assert capsys.readouterr().out == ""


def test_a_flag_or_config_overrides_the_machine_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    import training.recipe
    from training.cli import resolve_config

    monkeypatch.setattr(training.recipe, "native_bf16", lambda: "avx512_bf16")
    monkeypatch.setattr(training.recipe, "init_architecture", lambda path: {})
    base = ["--data", "d", "--init-weights", "w.pt"]
    assert resolve_config(base).cpu_amp is True
    assert resolve_config([*base, "--no-cpu-amp"]).cpu_amp is False
    monkeypatch.setattr(training.recipe, "native_bf16", lambda: None)
    assert resolve_config(base).cpu_amp is False
    assert resolve_config([*base, "--cpu-amp"]).cpu_amp is True
