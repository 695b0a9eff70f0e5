"""Training configuration: one flat dataclass; each field carries its help text (and choices).

The field metadata is the one source of what a field means: `python -m training --help`
(training/cli.py) and the table in docs/TRAINING.md (scripts/sync_docs.py) are built from it.

Precedence (lowest to highest): dataclass defaults < the checkpoint's `train_config` (with
`--resume` and no `--config`) < the recipe (fresh runs: `--recipe`, training/recipe.py) <
`--config FILE` (.toml or .json) < explicit CLI flags.

The defaults are the recipe of the shipped model's main GPU stage (configs/voc-lite/
stage37.toml) run from random initialisation on the project's VOC 2012 copy: a sensible first
run on a GPU. configs/ holds every stage of the shipped model as a file.

A dataset is named by `data` (`--data`). The eight older dataset fields (LEGACY_DATA_FIELDS)
are read from old checkpoints and old runs' train_config.json only; they are no CLI flags.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from model.config import (
    CENTERNESS_BRANCHES,
    PRESETS,
    VOC_CLASSES,
    dataclass_from_dict,
    dataclass_to_dict,
)

CONFIG_FILENAME = "train_config.json"
# What a run writes into --output-dir: name -> what it is. docs/TRAINING.md's list is
# generated from this (scripts/sync_docs.py); a finished run's directory holds exactly these
# (tests/training/trainer/test_cli.py).
RUN_OUTPUTS: dict[str, str] = {
    "train_config.json": "the run's TrainConfig (resume and `--config` read it)",
    "log.jsonl": "one record per --log-interval iterations and per epoch: losses, lr, img/s, "
    "val metrics, the time-budget plan",
    "plots/": "losses.png, lr.png, map.png (and data.png for a --data run's dataset check)",
    "last.pt": "full checkpoint (optimiser, scheduler, RNG states) every "
    "--checkpoint-interval epochs and after the last: what --resume reads",
    "best.pt": "the full checkpoint of the best val mAP@0.5 (runs with validation)",
    "final.pt": "a copy of last.pt once the last epoch is done",
    "weights_fp16.pt": "the EMA weights alone in fp16 with the train config: what export and "
    "--init-weights need",
}
BOX_LOSS_NAMES: tuple[str, ...] = ("giou", "iou")  # training.engine.losses.BOX_LOSSES
HSV_PLACES: tuple[str, ...] = ("auto", "loader", "device")
CROP_SCALES: tuple[str, ...] = ("fit", "native")  # training.data.native_crop.CROP_SCALES
INIT_CLASSES: tuple[str, ...] = ("name", "similar")
DATASET_FORMATS: tuple[str, ...] = ("voc", "coco")
# Options of removed experiments that older checkpoints' train_config still carry (see
# models/TRAINING_LOG.md: stochastic depth, class distillation).
REMOVED_FIELDS: frozenset[str] = frozenset({"drop_path", "distill_from", "distill_weight"})
# `extends` chains: a file may extend a base, and that base nothing (two levels at most).
MAX_EXTENDS_LEVELS = 2


def _f(default: Any, help: str, choices: tuple[str, ...] | None = None, *,
       legacy: bool = False) -> Any:  # fmt: skip
    """A TrainConfig field with its help text, allowed values and whether it is a legacy
    dataset field (old checkpoints only, no CLI flag)."""
    meta: dict[str, Any] = {"help": help}
    if choices is not None:
        meta["choices"] = tuple(choices)
    if legacy:
        meta["legacy"] = True
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class TrainConfig:
    # Model
    preset: str = _f("r18-gn-lite", "model preset (model/config.py)", tuple(sorted(PRESETS)))
    input_size: int = _f(384, "square input size in pixels (0 = the preset's)")
    backbone_weights: str = _f("", "a torchvision-format ResNet-18 state dict to start the "
                               "backbone from (training/engine/backbone_weights.py)")
    init_weights: str = _f("", "a checkpoint or weights file (EMA weights preferred) to start the "
                           "whole model from; optimiser, schedule and epochs start afresh "
                           "(ignored with --resume)")
    centerness_branch: str = _f("reg", "the head tower that predicts centre-ness: reg (the "
                                "paper's later version) or cls (its first version)",
                                CENTERNESS_BRANCHES)
    # Data
    data: str = _f("", "the dataset, its format recognised: a YOLO data.yaml, a COCO .json "
                   "(images beside it), a Roboflow COCO export folder or a VOC folder "
                   "(training/data/source.py); its classes unless --classes is given. "
                   "--data-root is an old spelling of it")
    classes: tuple[str, ...] = _f((), "comma-separated class names to train, in this order "
                                  "(default: the dataset's own list)")
    max_val_images: int = _f(0, "validate on the first N validation images only (0 = all)")
    skip_invalid: bool = _f(False, "skip (and count) malformed annotations instead of failing")
    dataset_format: str = _f("voc", "old checkpoints only: voc or coco", DATASET_FORMATS,
                             legacy=True)
    data_root: str = _f("../shared/data/voc2012-640", "old checkpoints only: the VOC directory "
                        "the splits are under", legacy=True)
    train_split: str = _f("train", "old checkpoints only: '+'-joined DIR/SPLIT VOC entries "
                          "under data_root", legacy=True)
    val_split: str = _f("val", "old checkpoints only: like train_split; '' = no validation",
                        legacy=True)
    coco_train_json: str = _f("", "old checkpoints only: COCO training annotations",
                              legacy=True)
    coco_train_images: str = _f("", "old checkpoints only: COCO training images", legacy=True)
    coco_val_json: str = _f("", "old checkpoints only: COCO validation annotations",
                            legacy=True)
    coco_val_images: str = _f("", "old checkpoints only: COCO validation images", legacy=True)
    # Schedule and optimiser (AdamW)
    epochs: int = _f(300, "training epochs (with --time-budget-min: the ceiling)")
    batch_size: int = _f(64, "images per process and step")
    lr: float = _f(8e-4, "peak AdamW learning rate for a total batch of --lr-base-batch")
    lr_base_batch: int = _f(64, "lr is scaled by total batch / this (0 = lr as is)")
    weight_decay: float = _f(0.075, "AdamW weight decay (not on norm, bias and Scale "
                             "parameters)")
    betas: tuple[float, float] = _f((0.9, 0.999), "AdamW betas")
    warmup_epochs: float = _f(2.0, "linear warm-up length in epochs")
    warmup_iters: int = _f(0, "linear warm-up iterations (> 0 overrides --warmup-epochs)")
    warmup_start_ratio: float = _f(0.001, "warm-up starts at lr * this")
    min_lr_ratio: float = _f(0.05, "the cosine decays to lr * this")
    grad_clip: float = _f(1.0, "max global gradient norm (0 = off)")
    ema_decay: float = _f(0.998, "EMA decay of the weights (0 = no EMA); ramped as "
                          "d * (1 - exp(-updates / tau))")
    ema_tau: float = _f(300.0, "EMA ramp length in optimiser steps")
    # Loss
    center_radius: float = _f(1.5, "centre sampling: positives lie within this many strides of "
                              "the box centre (0 = off: any location inside the box)")
    box_loss: str = _f("giou", "box regression loss on positives: giou (1 - GIoU) or iou "
                       "(1 - IoU)", BOX_LOSS_NAMES)
    # Augmentation (training/data AugmentConfig fields)
    augment: bool = _f(True, "data augmentation (off: resize and letterbox only)")
    scale_min: float = _f(0.3, "random scale jitter: smallest factor")
    scale_max: float = _f(2.0, "random scale jitter: largest factor")
    aspect_jitter: float = _f(0.3, "stretch each image or Mosaic tile: its width/height ratio "
                              "times a log-uniform factor in [1/(1+j), 1+j], area kept (0 = off)")
    crop_scale: str = _f("fit", "what --scale-min/max scale: fit (the whole image letterboxed "
                         "to the input) or native (the photo's own pixels, never below the fit; "
                         "an input-sized window is cut out, half the time around a random box; "
                         "Mosaic tiles too; images are decoded and cached at full size): for "
                         "small objects in photos much larger than the input "
                         "(training/data/native_crop.py)", CROP_SCALES)
    flip_prob: float = _f(0.5, "horizontal flip probability")
    hsv_h: float = _f(0.015, "HSV jitter: hue gain")
    hsv_s: float = _f(0.7, "HSV jitter: saturation gain")
    hsv_v: float = _f(0.4, "HSV jitter: value gain")
    hsv_on: str = _f("auto", "where the HSV jitter is applied: loader (workers, a Pillow lookup "
                     "table), device (the loader only draws it; exact, on the batch after the "
                     "copy) or auto (device on CUDA, else loader); the same draws either way",
                     HSV_PLACES)
    mosaic_prob: float = _f(1.0, "Mosaic probability per training image")
    mixup_prob: float = _f(1.0, "MixUp probability per Mosaic image")
    mixup_beta: float = _f(1.5, "MixUp ratio lambda ~ Beta(this, this)")
    min_box_size: float = _f(2.0, "boxes smaller than this (pixels) after augmentation are "
                             "dropped")
    no_aug_epochs: int = _f(15, "final epochs without Mosaic and MixUp")
    # Runtime
    device: str = _f("", "cuda, cuda:N or cpu (default: cuda when available, LOCAL_RANK picks "
                     "the GPU)")
    amp: bool = _f(True, "bf16 autocast on CUDA")
    cpu_amp: bool = _f(False, "bf16 autocast on CPU as well: faster steps on a CPU with native "
                       "bf16 (AVX512-BF16/AMX; 1.8x on a Zen 4), slower on one without; the "
                       "fine-tuning recipe sets it from the CPU's flags")
    channels_last: bool = _f(True, "channels_last memory format (CUDA only)")
    compile: bool = _f(False, "torch.compile the training forward")
    workers: int = _f(8, "DataLoader worker processes per rank")
    cache_images: bool = _f(False, "keep decoded, resized images in RAM")
    seed: int = _f(0, "seed of every random draw (data order, augmentation, init)")
    # Evaluation, logging, outputs
    eval_interval: int = _f(10, "validate every N epochs, the last always (0 = no validation)")
    log_interval: int = _f(20, "iterations per log.jsonl record and progress-bar update")
    checkpoint_interval: int = _f(10, "epochs between last.pt writes (the last and "
                                  "--stop-epoch epochs always write; best.pt whenever val "
                                  "improves)")
    plot_interval_s: float = _f(30.0, "plots are redrawn after an epoch at most this often "
                                "(seconds)")
    progress: bool = _f(True, "tqdm progress bars (also off when stderr is not a TTY)")
    output_dir: str = _f("runs/fcos", "the run directory (its files: docs/TRAINING.md)")
    resume: str = _f("", "continue exactly from this last.pt (its config unless --config is "
                     "given)")
    stop_epoch: int = _f(0, "> 0: stop after this epoch (time-sliced jobs; --resume later)")
    time_budget_min: float = _f(0.0, "> 0: wall-clock minutes for the whole fit: after "
                                "--probe-epochs epochs (and one validation) the epoch count is "
                                "set to what fits, --epochs being the ceiling; keep "
                                "--warmup-epochs >= --probe-epochs so the cosine is unchanged "
                                "(training/engine/budget.py)")
    # Fine-tuning on a user's dataset
    recipe: str = _f("auto", "defaults for a fresh run, under --config and flags: auto "
                     "(configs/finetune.toml with --init-weights, then what --data's statistics "
                     "choose: training/recipe_auto.py; else none), none, a recipe name in "
                     "configs/ (finetune) or a TOML file (training/recipe.py)")
    freeze_at: int = _f(0, "backbone parts kept as they are: 1 = the stem, 2 = the stem and "
                        "layer1, ... 5 = the whole ResNet (0 = train everything)")
    probe_epochs: int = _f(2, "with --time-budget-min: epochs timed before the epoch count is "
                           "fixed")
    init_classes: str = _f("name", "with --init-weights of other classes, how this run's new "
                           "classes (not in the file by name) start: name (a fresh logit row) "
                           "or similar (the row of the file's class that scores highest on the "
                           "class's objects in a probe of training images, when its mean "
                           "probability is >= 0.05; training/engine/class_init.py)",
                           INIT_CLASSES)
    budget_spent_s: float = _f(0.0, "seconds of --time-budget-min spent before training (set "
                               "by --recipe auto: its speed probe)")
    init_classes_images: int = _f(128, "--init-classes similar: training images the probe "
                                  "runs over")

    def to_dict(self) -> dict[str, Any]:
        return dataclass_to_dict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        """Fields of removed features (REMOVED_FIELDS) in older configs are dropped; any other
        unknown field is an error."""
        return dataclass_from_dict(cls, {k: v for k, v in d.items() if k not in REMOVED_FIELDS})

    def replace(self, **changes: Any) -> TrainConfig:
        merged = self.to_dict()
        merged.update(changes)
        return TrainConfig.from_dict(merged)

    def class_names(self) -> tuple[str, ...] | None:
        """Explicit classes, VOC's for VOC, or None (COCO, --data: the dataset's own list)."""
        if self.classes:
            return tuple(self.classes)
        return VOC_CLASSES if self.dataset_format == "voc" and not self.data else None

    def validate(self) -> None:
        for f in fields(self):
            choices = f.metadata.get("choices")
            if choices is not None and getattr(self, f.name) not in choices:
                raise ValueError(f"{f.name} must be one of {choices}, not "
                                 f"{getattr(self, f.name)!r}")  # fmt: skip
        if self.epochs < 1 or self.batch_size < 1 or self.checkpoint_interval < 1:
            raise ValueError("epochs, batch_size and checkpoint_interval must be >= 1")
        if self.center_radius < 0:
            raise ValueError("center_radius must be >= 0 (0 turns centre sampling off)")
        if self.time_budget_min < 0:
            raise ValueError("time_budget_min must be >= 0")
        if self.eval_interval < 0:
            raise ValueError("eval_interval must be >= 0 (0: no validation)")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError("ema_decay must be in [0, 1)")
        if not 0 <= self.freeze_at <= 5:
            raise ValueError("freeze_at must be in 0..5 (0: train the whole backbone)")
        if self.init_classes_images < 1:
            raise ValueError("init_classes_images must be >= 1")
        if self.probe_epochs < 1:
            raise ValueError("probe_epochs must be >= 1")
        if (
            self.dataset_format == "coco"
            and not self.data
            and not (self.coco_train_json and self.coco_train_images)
        ):
            raise ValueError("an old COCO config needs coco_train_json and coco_train_images")

    def resolved_input_size(self) -> int:
        """The input size the run trains at: input_size, or the preset's when it is 0."""
        return self.input_size or PRESETS[self.preset].input_size


LEGACY_DATA_FIELDS: tuple[str, ...] = tuple(
    f.name for f in fields(TrainConfig) if f.metadata.get("legacy")
)


def field_help(name: str) -> str:
    """A TrainConfig field's help text (its metadata)."""
    return str(TrainConfig.__dataclass_fields__[name].metadata["help"])


def field_choices(name: str) -> tuple[str, ...] | None:
    """A TrainConfig field's allowed values, or None when any value of its type goes."""
    return TrainConfig.__dataclass_fields__[name].metadata.get("choices")


def _read(path: Path) -> dict[str, Any]:
    text = path.read_text()
    if path.suffix == ".toml":
        if sys.version_info >= (3, 11):
            import tomllib
        else:  # pragma: no cover - Python 3.10
            import tomli as tomllib
        data: Any = tomllib.loads(text)
    else:
        data = json.loads(text)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a config file holds one object of TrainConfig fields")
    return data


def load_config_file(path: str | Path) -> dict[str, Any]:
    """TrainConfig fields from a .toml or .json file. `extends = "base.toml"` (a path relative
    to the file) starts from that file's fields; the file's own fields win. A base extends
    nothing (MAX_EXTENDS_LEVELS): a deeper chain is an error. Field names are checked when the
    dict becomes a TrainConfig."""
    path = Path(path).resolve()
    data = _read(path)
    base = data.pop("extends", None)
    if base is None:
        return data
    base_path = (path.parent / str(base)).resolve()
    if base_path == path:
        raise ValueError(f"{path}: a config file cannot extend itself")
    merged = _read(base_path)
    if "extends" in merged:
        raise ValueError(
            f"{path} extends {base_path.name}, which extends {merged['extends']}: at most "
            f"{MAX_EXTENDS_LEVELS} levels (a file and one base that extends nothing); copy the "
            "fields into one of them"
        )
    merged.update(data)
    return merged


def save_config(cfg: TrainConfig, run_dir: str | Path) -> Path:
    path = Path(run_dir) / CONFIG_FILENAME
    path.write_text(json.dumps(cfg.to_dict(), indent=2) + "\n")
    return path


def config_table() -> str:
    """Every TrainConfig field as a Markdown table (flag, default, meaning): docs/TRAINING.md's
    generated block (scripts/sync_docs.py)."""
    defaults = TrainConfig()
    rows = ["| flag | default | meaning |", "|---|---|---|"]
    for f in fields(TrainConfig):
        value = getattr(defaults, f.name)
        if isinstance(value, bool):
            shown = str(value).lower()
        elif isinstance(value, tuple):
            shown = ",".join(str(v) for v in value)
        else:
            shown = str(value)
        shown = f"`{shown}`" if shown else '`""`'
        meaning = str(f.metadata["help"]).replace("|", "\\|")
        choices = f.metadata.get("choices")
        if choices:
            meaning += "; one of " + ", ".join(f"`{c}`" for c in choices)
        flag = f"`--{f.name.replace('_', '-')}`"
        if f.metadata.get("legacy"):
            flag = f"`{f.name}` (no flag)"
        rows.append(f"| {flag} | {shown} | {meaning} |")
    return "\n".join(rows)


def run_outputs_list() -> str:
    """RUN_OUTPUTS as a Markdown list: docs/TRAINING.md's generated block."""
    return "\n".join(f"- `{name}`: {what}" for name, what in RUN_OUTPUTS.items())
