"""Training recipes: TrainConfig defaults for a kind of run, kept as TOML files in configs/.

`--recipe auto` (the default) picks `configs/finetune.toml` when the run starts from a trained
model (`--init-weights`), and nothing otherwise (the dataclass defaults: training from
scratch). `--recipe finetune` names it outright, `--recipe none` turns recipes off, and
`--recipe FILE.toml` reads another file. A recipe is read like a `--config` file (comments are
TOML comments; `extends` works the same) and sits between the defaults and `--config`/flags,
so anything it sets can be overridden. A run started from a trained model also takes that
model's architecture (its preset, input size and centre-ness branch) unless told otherwise.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from training.config import TrainConfig, load_config_file

CONFIGS = Path(__file__).resolve().parent.parent / "configs"
FINETUNE = CONFIGS / "finetune.toml"
# The TrainConfig fields init_architecture reads from a model file (all given: no need to).
ARCHITECTURE = frozenset({"preset", "input_size", "centerness_branch"})


def recipe_path(settings: dict[str, Any]) -> Path | None:
    """The recipe for a run given its --config and flag settings (None: no recipe)."""
    recipe = str(settings.get("recipe", TrainConfig.recipe))
    if recipe == "none":
        return None
    if recipe == "auto":
        return FINETUNE if settings.get("init_weights") else None
    named = CONFIGS / f"{recipe}.toml"
    if "/" not in recipe and "\\" not in recipe and named.is_file():
        return named
    path = Path(recipe)
    if not path.is_file():
        raise ValueError(f"--recipe {recipe}: not auto, none, a recipe in configs/ "
                         "(finetune) or a TOML file")  # fmt: skip
    return path


def load_recipe(path: str | Path) -> dict[str, Any]:
    """A recipe file's TrainConfig fields (unknown fields are an error)."""
    fields = load_config_file(path)
    TrainConfig.from_dict(fields)  # validates the names
    return fields


def init_architecture(path: str | Path) -> dict[str, Any]:
    """The TrainConfig fields that rebuild the architecture of the model in `path`."""
    from model.checkpoint import load_checkpoint_dict
    from model.config import PRESETS

    model_cfg = load_checkpoint_dict(path)["config"]
    out: dict[str, Any] = {}
    if model_cfg.get("name") in PRESETS:
        out["preset"] = model_cfg["name"]
    if model_cfg.get("input_size"):
        out["input_size"] = int(model_cfg["input_size"])
    if model_cfg.get("centerness_branch"):
        out["centerness_branch"] = str(model_cfg["centerness_branch"])
    return out


def recipe_fields(settings: dict[str, Any]) -> dict[str, Any]:
    """Defaults for a fresh run with these --config/flag `settings`: the --init-weights model's
    architecture, then the recipe's fields."""
    out: dict[str, Any] = {}
    if settings.get("init_weights") and not settings.keys() >= ARCHITECTURE:
        out.update(init_architecture(settings["init_weights"]))
    path = recipe_path(settings)
    if path is not None:
        out.update(load_recipe(path))
    return out
