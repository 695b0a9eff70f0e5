"""Training recipes: TrainConfig defaults for a kind of run, kept as TOML files in configs/.

`--recipe auto` (the default) picks `configs/finetune.toml` when the run starts from a trained
model (`--init-weights`), and nothing otherwise (the dataclass defaults: training from
scratch). `--recipe finetune` names it outright, `--recipe none` turns recipes off, and
`--recipe FILE.toml` reads another file. A recipe is read like a `--config` file (comments are
TOML comments; `extends` works the same) and sits between the defaults and `--config`/flags,
so anything it sets can be overridden. A run started from a trained model also takes that
model's architecture (its preset, input size and centre-ness branch) unless told otherwise.
The fine-tuning recipe leaves one field to the machine: `cpu_amp` (bf16 autocast on the CPU)
is on where the processor computes bf16 natively (`machine_fields`), unless the recipe file,
--config or a flag (`--no-cpu-amp`) says otherwise. With `--recipe auto` the dataset then
decides a few more (input size, crops, Mosaic and scale jitter: training/recipe_auto.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from export.cpu_info import native_bf16
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


def machine_fields(flag: str | None) -> tuple[dict[str, Any], str]:
    """The fine-tuning recipe's machine-dependent fields for a CPU whose native bf16 flag is
    `flag` (export.cpu_info.native_bf16), and why. bf16 autocast on such a CPU: a training
    step of the bundled r18-gn-lite at 384 px, batch 8, 2 threads (`python -m
    training.tools.speed --preset r18-gn-lite --size 384 --batch-size 8 --iters 8 [--cpu-amp]`)
    ran 3.24 img/s in fp32 and 5.92 with it on an AMD EPYC (Zen 4, avx512_bf16): 1.8x the
    epochs in a time budget. Without native bf16, torch emulates it and the step is slower."""
    if flag is None:
        return {"cpu_amp": False}, "cpu_amp off: no native bf16 on this CPU (slower with it)"
    return {"cpu_amp": True}, f"cpu_amp on: this CPU has native bf16 ({flag}), ~1.8x the img/s"


def recipe_fields(settings: dict[str, Any]) -> dict[str, Any]:
    """Defaults for a fresh run with these --config/flag `settings`: the --init-weights model's
    architecture, then the recipe's fields (the fine-tuning recipe's `machine_fields` unless
    its file sets them; the machine's choice is printed with its reason unless a flag or
    --config overrides it)."""
    out: dict[str, Any] = {}
    if settings.get("init_weights") and not settings.keys() >= ARCHITECTURE:
        out.update(init_architecture(settings["init_weights"]))
    path = recipe_path(settings)
    if path is not None:
        fields = load_recipe(path)
        if path == FINETUNE:
            machine, why = machine_fields(native_bf16())
            chosen = {k: v for k, v in machine.items() if k not in fields}
            out.update(chosen)
            if chosen and not chosen.keys() & settings.keys():
                print(f"recipe {path.stem}: {why}", flush=True)
        out.update(fields)
        if settings.get("recipe", TrainConfig.recipe) == "auto" and settings.get("data"):
            from training.recipe_auto import auto_fields

            out.update(auto_fields(settings, out))
    return out
