"""Training configuration: one flat dataclass, loadable from a config file and CLI flags.

Precedence (lowest to highest): dataclass defaults < checkpoint's `train_config` (when
resuming without `--config`) < `--config FILE` (.toml or .json) < explicit CLI flags.

The defaults are the recipe of the shipped model's main GPU stage (configs/voc-lite/
stage37.toml) run from random initialisation on the project's VOC 2012 copy: a sensible first
run on a GPU. configs/ holds every stage of the shipped model as a file.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from model.config import CENTERNESS_BRANCHES, VOC_CLASSES, dataclass_from_dict, dataclass_to_dict

CONFIG_FILENAME = "train_config.json"
BOX_LOSS_NAMES: tuple[str, ...] = ("giou", "iou")  # training.engine.losses.BOX_LOSSES
# Where the HSV jitter is applied: auto = on the device when it is a GPU, else in the loader.
HSV_PLACES: tuple[str, ...] = ("auto", "loader", "device")
# How new classes' logit rows start when fine-tuning across class lists (engine/class_init.py).
INIT_CLASSES: tuple[str, ...] = ("name", "similar")
# Options of removed experiments that older checkpoints' train_config still carry (see
# models/TRAINING_LOG.md: stochastic depth, class distillation).
REMOVED_FIELDS: frozenset[str] = frozenset({"drop_path", "distill_from", "distill_weight"})


@dataclass
class TrainConfig:
    # Model
    preset: str = "r18-gn-lite"
    input_size: int = 384  # 0 = the preset's input size
    backbone_weights: str = ""  # torchvision-format ResNet-18 state dict (see backbone_weights.py)
    init_weights: str = ""  # whole-model weights to start from (fresh optimiser and schedule)
    centerness_branch: str = "reg"  # tower that predicts centre-ness: reg or cls (ablation)
    # Data
    dataset_format: str = "voc"  # voc | coco
    data_root: str = "../shared/data/voc2012-640"  # VOC: the directory the splits are under
    train_split: str = "train"
    val_split: str = "val"  # "" disables validation
    coco_train_json: str = ""
    coco_train_images: str = ""
    coco_val_json: str = ""
    coco_val_images: str = ""
    classes: tuple[str, ...] = ()  # empty: VOC's 20 classes (voc) or all categories (coco)
    max_val_images: int = 0  # 0 = the whole validation split
    skip_invalid: bool = False  # skip (and count) malformed annotations instead of failing
    # Schedule and optimiser (AdamW)
    epochs: int = 300
    batch_size: int = 64  # per process
    lr: float = 8e-4  # for a total batch of `lr_base_batch`
    lr_base_batch: int = 64  # lr scales linearly with the total batch; 0 = use lr as is
    weight_decay: float = 0.075  # not applied to norm, bias and Scale parameters
    betas: tuple[float, float] = (0.9, 0.999)
    warmup_epochs: float = 2.0
    warmup_iters: int = 0  # > 0 overrides warmup_epochs
    warmup_start_ratio: float = 0.001
    min_lr_ratio: float = 0.05  # cosine decays to lr * min_lr_ratio
    grad_clip: float = 1.0  # max global grad norm; 0 disables
    ema_decay: float = 0.998  # 0 disables EMA
    ema_tau: float = 300.0  # decay ramp: d * (1 - exp(-updates / tau))
    # Loss
    center_radius: float = 1.5  # centre sampling, in strides; 0 = off (the whole box)
    box_loss: str = "giou"  # giou | iou (1 - IoU, the ablation)
    # Augmentation (training/data AugmentConfig fields)
    augment: bool = True
    scale_min: float = 0.3
    scale_max: float = 2.0
    aspect_jitter: float = 0.3  # w/h ratio stretch, log-uniform in [1/(1+j), 1+j]; 0 = off
    flip_prob: float = 0.5
    hsv_h: float = 0.015
    hsv_s: float = 0.7
    hsv_v: float = 0.4
    hsv_on: str = "auto"  # auto | loader | device: where the HSV jitter is applied
    mosaic_prob: float = 1.0
    mixup_prob: float = 1.0
    mixup_beta: float = 1.5
    min_box_size: float = 2.0
    no_aug_epochs: int = 15  # last epochs with mosaic and mixup off
    # Runtime
    device: str = ""  # "" = cuda when available (LOCAL_RANK picks the GPU), else cpu
    amp: bool = True  # bf16 autocast on CUDA
    cpu_amp: bool = False  # bf16 autocast on CPU too (needs native bf16: AVX512-BF16 or AMX)
    channels_last: bool = True  # CUDA only
    compile: bool = False  # torch.compile the training forward
    workers: int = 8
    cache_images: bool = False
    seed: int = 0
    # Evaluation, logging, outputs
    eval_interval: int = 10  # epochs; the last epoch is always evaluated
    log_interval: int = 20  # iterations per log.jsonl record
    checkpoint_interval: int = 10  # epochs between last.pt writes (the last epoch always)
    plot_interval_s: float = 30.0  # plots are redrawn after an epoch at most this often
    progress: bool = True  # tqdm bars (also off when stderr is not a TTY)
    output_dir: str = "runs/fcos"
    resume: str = ""  # a last.pt to continue from
    stop_epoch: int = 0  # > 0: stop after this epoch (time-sliced jobs; resume later)
    time_budget_min: float = 0.0  # > 0: fit the epoch count to this wall time (engine/budget.py)
    # Added for fine-tuning on a user's dataset (issue 40)
    data: str = ""  # a dataset path, format recognised (training/data/source.py); overrides above
    recipe: str = "auto"  # auto (configs/finetune.json with --init-weights) | none | a JSON file
    freeze_at: int = 0  # backbone parts not trained: 1 = stem, 2 = + layer1, ... (transfer.py)
    probe_epochs: int = 2  # --time-budget-min: epochs timed before the count is fixed (budget.py)
    init_classes: str = "name"  # new classes' logit rows: name (fresh) | similar (class_init.py)
    init_classes_images: int = 128  # --init-classes similar: training images probed

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
        if self.dataset_format not in ("voc", "coco"):
            raise ValueError(f"dataset_format must be voc or coco, not {self.dataset_format!r}")
        if self.epochs < 1 or self.batch_size < 1 or self.checkpoint_interval < 1:
            raise ValueError("epochs, batch_size and checkpoint_interval must be >= 1")
        if self.center_radius < 0:
            raise ValueError("center_radius must be >= 0 (0 turns centre sampling off)")
        if self.box_loss not in BOX_LOSS_NAMES:
            raise ValueError(f"box_loss must be one of {BOX_LOSS_NAMES}, not {self.box_loss!r}")
        if self.centerness_branch not in CENTERNESS_BRANCHES:
            raise ValueError(
                f"centerness_branch must be one of {CENTERNESS_BRANCHES}, "
                f"not {self.centerness_branch!r}"
            )
        if self.hsv_on not in HSV_PLACES:
            raise ValueError(f"hsv_on must be one of {HSV_PLACES}, not {self.hsv_on!r}")
        if self.time_budget_min < 0:
            raise ValueError("time_budget_min must be >= 0")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError("ema_decay must be in [0, 1)")
        if not 0 <= self.freeze_at <= 5:
            raise ValueError("freeze_at must be in 0..5 (0: train the whole backbone)")
        if self.init_classes not in INIT_CLASSES:
            raise ValueError(
                f"init_classes must be one of {INIT_CLASSES}, not {self.init_classes!r}"
            )
        if self.init_classes_images < 1:
            raise ValueError("init_classes_images must be >= 1")
        if self.probe_epochs < 1:
            raise ValueError("probe_epochs must be >= 1")
        if self.data and not Path(self.data).exists():
            raise ValueError(f"--data {self.data}: no such file or folder")
        if (
            self.dataset_format == "coco"
            and not self.data
            and not (self.coco_train_json and self.coco_train_images)
        ):
            raise ValueError("coco needs --coco-train-json and --coco-train-images")


def load_config_file(path: str | Path, _seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """TrainConfig fields from a .toml or .json file. `extends = "other.toml"` (a path relative
    to the file) starts from that file's fields; the file's own fields win. Field names are
    checked when the dict becomes a TrainConfig."""
    path = Path(path).resolve()
    if path in _seen:
        raise ValueError(f"{path}: config files extend each other in a cycle")
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
    base = data.pop("extends", None)
    if base is None:
        return data
    merged = load_config_file(path.parent / str(base), (*_seen, path))
    merged.update(data)
    return merged


def save_config(cfg: TrainConfig, run_dir: str | Path) -> Path:
    path = Path(run_dir) / CONFIG_FILENAME
    path.write_text(json.dumps(cfg.to_dict(), indent=2) + "\n")
    return path
