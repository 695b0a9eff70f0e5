"""`python -m training`: train FCOS. Flags mirror TrainConfig fields (--batch-size for batch_size).

Every flag's help is its TrainConfig field's (training/config.py); docs/TRAINING.md has the
same as a table. A dataset is named by --data alone.

Examples:
  python -m training --data ../shared/data/voc2012-640 --output-dir runs/first
  python -m training --config configs/voc-lite/stage37.toml --batch-size 32
  python -m training --resume runs/r18/last.pt
  torchrun --nproc_per_node 8 -m training --config my_run.json
  python -m training --data my/data.yaml --init-weights models/default.pt --time-budget-min 20 \
      --output-dir runs/mine     # fine-tune (recipe: configs/finetune.toml)
"""

from __future__ import annotations

import argparse
import dataclasses
import typing
from typing import Any

from training.config import (
    LEGACY_DATA_FIELDS,
    TrainConfig,
    field_choices,
    field_help,
    load_config_file,
)
from training.recipe import recipe_fields

# Fields that describe one invocation, not the run: never taken from a checkpoint.
RUN_ONLY = frozenset({"resume", "stop_epoch", "time_budget_min", "budget_spent_s"})


def _kind(tp: Any) -> tuple[str, Any]:
    origin = typing.get_origin(tp)
    if tp is bool:
        return "bool", bool
    if origin is tuple:
        args = typing.get_args(tp)
        if args and args[-1] is Ellipsis:
            return "list", args[0]
        return "tuple", args[0]
    return "scalar", tp


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m training", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter, argument_default=argparse.SUPPRESS,
    )  # fmt: skip
    parser.add_argument(
        "--config", help="TOML or JSON file of TrainConfig fields (flags override it; see configs/)"
    )
    hints = typing.get_type_hints(TrainConfig)
    defaults = TrainConfig()
    for f in dataclasses.fields(TrainConfig):
        if f.name in LEGACY_DATA_FIELDS:  # old checkpoints' configs only: --data names a dataset
            continue
        flag = "--" + f.name.replace("_", "-")
        kind, tp = _kind(hints[f.name])
        default = getattr(defaults, f.name)
        help_text = f"{field_help(f.name)} (default: {default!r})".replace("%", "%%")
        if kind == "bool":
            parser.add_argument(
                flag, dest=f.name, action=argparse.BooleanOptionalAction, help=help_text
            )
        elif kind == "list":
            parser.add_argument(
                flag,
                dest=f.name,
                type=lambda s: tuple(x.strip() for x in s.split(",") if x.strip()),
                help=help_text,
            )
        elif kind == "tuple":
            metavar = tuple(f"{f.name.upper()}{i + 1}" for i in range(len(default)))
            parser.add_argument(
                flag, dest=f.name, type=tp, nargs=len(default), metavar=metavar, help=help_text
            )
        else:
            parser.add_argument(
                flag, dest=f.name, type=tp, choices=field_choices(f.name), help=help_text
            )
    # The old spelling of --data (as in python -m training.evaluate): a VOC folder, say.
    parser.add_argument("--data-root", dest="data", help=argparse.SUPPRESS)
    return parser


def resolve_config(argv: list[str] | None = None) -> TrainConfig:
    """Defaults < checkpoint's train_config (resume without --config) < the recipe (fresh runs:
    training/recipe.py) < --config < flags (training/config.py's precedence)."""
    args = vars(build_parser().parse_args(argv))
    config_file = args.pop("config", None)
    merged: dict[str, Any] = {}
    resume = args.get("resume")
    if resume and not config_file:
        from training.engine.checkpointing import load_for_resume

        saved = load_for_resume(resume)["train_config"]
        merged.update({k: v for k, v in saved.items() if k not in RUN_ONLY})
    from_file = load_config_file(config_file) if config_file else {}
    if not resume:
        merged.update(recipe_fields({**from_file, **args}))
    merged.update(from_file)
    merged.update(args)
    cfg = TrainConfig.from_dict(merged)
    cfg.validate()
    return cfg


def main(argv: list[str] | None = None) -> int:
    cfg = resolve_config(argv)
    from training.trainer import train

    result = train(cfg)
    return 0 if result["epoch"] >= 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
