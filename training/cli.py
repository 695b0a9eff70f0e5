"""`python -m training`: train FCOS. Flags mirror TrainConfig fields (--batch-size for batch_size).

Examples:
  python -m training --data-root ../shared/data/voc2012-640 --output-dir runs/first
  python -m training --config configs/voc-lite/stage37.toml --batch-size 32
  python -m training --resume runs/r18/last.pt
  torchrun --nproc_per_node 8 -m training --config my_run.json
  python -m training --data my/data.yaml --init-weights models/default.pt --time-budget-min 20 \
      --output-dir runs/mine     # fine-tune (recipe: configs/finetune.json)
"""

from __future__ import annotations

import argparse
import dataclasses
import typing
from typing import Any

from model.config import CENTERNESS_BRANCHES, PRESETS
from training.config import (
    BOX_LOSS_NAMES,
    HSV_PLACES,
    INIT_CLASSES,
    TrainConfig,
    load_config_file,
)
from training.recipe import recipe_fields

CHOICES: dict[str, list[str]] = {
    "preset": sorted(PRESETS),
    "dataset_format": ["voc", "coco"],
    "box_loss": list(BOX_LOSS_NAMES),
    "hsv_on": list(HSV_PLACES),
    "centerness_branch": list(CENTERNESS_BRANCHES),
    "init_classes": list(INIT_CLASSES),
}

# Fields that describe one invocation, not the run: never taken from a checkpoint.
RUN_ONLY = frozenset({"resume", "stop_epoch", "time_budget_min"})

HELP: dict[str, str] = {
    "preset": "model preset: r18-gn, r18-gn-lite or tiny",
    "input_size": "square input size (0 = the preset's)",
    "backbone_weights": "torchvision ResNet-18 state dict to start the backbone from",
    "init_weights": "checkpoint or weights file (EMA weights preferred) to start the whole "
    "model from; optimiser, schedule and epochs start afresh (ignored with --resume)",
    "centerness_branch": "the head tower that predicts centre-ness: reg (the paper's later "
    "version, the default) or cls (its first version)",
    "box_loss": "box regression loss on positives: giou (1 - GIoU) or iou (1 - IoU)",
    "dataset_format": "voc or coco",
    "data_root": "VOC: the directory the splits are relative to (a VOCdevkit, or a VOC-layout set)",
    "train_split": "VOC: '+'-joined DIR/SPLIT entries under --data-root, e.g. "
    "VOC2007/trainval+VOC2012/trainval (no DIR: --data-root itself)",
    "val_split": "VOC: like --train-split; '' disables validation",
    "classes": "comma-separated class names (default: VOC's 20, or every COCO category)",
    "max_val_images": "evaluate on the first N validation images only (0 = all)",
    "center_radius": "centre sampling: positives lie within this many strides of the box "
    "centre (0 = off: any location inside the box)",
    "batch_size": "images per process and step",
    "lr": "peak AdamW learning rate for a total batch of --lr-base-batch",
    "lr_base_batch": "lr is scaled by total batch / this (0: no scaling)",
    "warmup_iters": "linear warmup iterations (> 0 overrides --warmup-epochs)",
    "min_lr_ratio": "cosine ends at lr * this",
    "grad_clip": "max global gradient norm (0 = off)",
    "ema_decay": "EMA decay (0 = no EMA); ramped as d * (1 - exp(-updates / tau))",
    "augment": "data augmentation (off: resize/letterbox only)",
    "aspect_jitter": "stretch each image or Mosaic tile: its width/height ratio times a "
    "log-uniform factor in [1/(1+j), 1+j], area kept (0 = off)",
    "no_aug_epochs": "final epochs without mosaic and mixup",
    "hsv_on": "where the HSV jitter is applied: loader (workers, a Pillow lookup table), "
    "device (the loader only draws it; exact, on the batch after the copy) or auto (device "
    "on CUDA, else loader). The same draws either way",
    "device": "cuda, cuda:N or cpu (default: cuda if available)",
    "amp": "bf16 autocast on CUDA",
    "cpu_amp": "bf16 autocast on CPU as well: about 3x faster steps on a CPU with native bf16 "
    "(AVX512-BF16/AMX), slower on one without",
    "channels_last": "channels_last memory format (CUDA only)",
    "compile": "torch.compile the training forward",
    "workers": "DataLoader worker processes per rank",
    "cache_images": "keep decoded, resized images in RAM",
    "eval_interval": "evaluate every N epochs (the last epoch always)",
    "log_interval": "iterations per log.jsonl record and progress-bar update",
    "checkpoint_interval": "epochs between last.pt writes (the last and --stop-epoch epochs "
    "always write; best.pt whenever val improves)",
    "progress": "tqdm progress bars (only on a TTY)",
    "output_dir": "run directory: config, log.jsonl, plots/, *.pt",
    "resume": "continue exactly from this last.pt (its config unless --config is given)",
    "stop_epoch": "stop after this epoch (resume later with --resume)",
    "time_budget_min": "wall-clock minutes for the whole fit: after --probe-epochs epochs (and "
    "one validation) the epoch count is set to what fits, --epochs being the ceiling; keep "
    "--warmup-epochs >= --probe-epochs so the cosine is unchanged (training/engine/budget.py)",
    "data": "the dataset, its format recognised: a YOLO data.yaml, a COCO .json (images beside "
    "it), a Roboflow COCO export folder or a VOC folder; its classes unless --classes is given "
    "(replaces --data-root/--train-split/--val-split/--coco-*)",
    "recipe": "defaults for this run: auto (with --init-weights: configs/finetune.json, the "
    "fine-tuning recipe), none, or a JSON file; --config and flags override it",
    "freeze_at": "backbone parts kept as they are: 1 = the stem, 2 = the stem and layer1, ... "
    "5 = the whole ResNet (0 = train everything)",
    "probe_epochs": "with --time-budget-min: epochs timed before the epoch count is fixed",
    "init_classes": "with --init-weights of other classes, how this run's new classes (not "
    "in the file by name) start: name (a fresh logit row) or similar (the row of the file's "
    "class that scores highest on the class's objects in a probe of training images, when "
    "its mean probability is >= 0.05; training/engine/class_init.py)",
    "init_classes_images": "--init-classes similar: training images the probe runs over",
}


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
        flag = "--" + f.name.replace("_", "-")
        kind, tp = _kind(hints[f.name])
        default = getattr(defaults, f.name)
        help_text = f"{HELP.get(f.name, f.name.replace('_', ' '))} (default: {default!r})"
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
                flag, dest=f.name, type=tp, choices=CHOICES.get(f.name), help=help_text
            )
    return parser


def resolve_config(argv: list[str] | None = None) -> TrainConfig:
    """Defaults < checkpoint's train_config (resume without --config) < the recipe (fresh runs:
    training/recipe.py) < --config < flags."""
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
