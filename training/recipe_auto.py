"""`--recipe auto` on a dataset: the fine-tuning recipe's fields that the data decides.

The fine-tuning recipe (configs/finetune.toml) was tuned on photos like VOC's, where objects
fill a good part of the picture. A dataset of small objects (fish in a tank, cells, parts on a
belt) or of large photos needs other choices, and what the dataset check measures says which:

- **Input size**: the smallest of the model's size, +128 and +256 px (multiples of P7's stride)
  at which at most SMALL_OK of the training boxes stay smaller than SMALL_SIDE (the finest
  level resolves them on at most 4x4 locations), among the sizes at which the time budget
  still fits MIN_EPOCHS epochs at the step speed measured on this machine (`measure_speed`,
  counted in the budget), and never above the median photo's longer side (no upscaling). The
  model is trained, exported and served at that size.
- **Native-resolution crops** (`crop_scale = "native"`) when the median photo is over
  NATIVE_RATIO times even that input: shrinking whole photos would leave little of their
  objects; the model then serves with tiling (DETECTOR_TILE=auto, `--tile auto`).
- **Milder scale jitter, no Mosaic** when small boxes stay over SMALL_OK at the chosen size:
  the jitter's smallest scale (0.3) and Mosaic tiles (down to 0.5x) shrink them further.
- The regression ranges and centre sampling are in input pixels: a larger input moves objects
  to the levels their new size belongs to, with nothing to change.

`choose` is pure (statistics in, fields and reasons out) so it is tested on synthetic
statistics; `auto_fields` loads the training split, measures the speed when a larger size is
in question and prints every choice with its reason. VOC-like data (VOC at 384 px: 6% small
boxes; BCCD 7%) keeps the recipe as it is, without a speed probe.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from training.data.check import SMALL_SIDE, box_sizes, image_sides
from training.data.sample import Sample

# Candidate input sizes above the model's: steps of P7's stride (128 px), at most two (3x the
# pixels of 384 at 640: a CPU budget rarely fits more).
SIZE_STEP = 128
MAX_STEPS = 2
# The share of training boxes under SMALL_SIDE px that a size may leave: VOC at 384 px (6%)
# and BCCD (7%), both fine-tuned well at 384 (configs/finetune.md), stay; a 1280 px mosaic of
# VOC photos (20% at 384) or a tank of small fish (most boxes) asks for more pixels.
SMALL_OK = 0.10
# A larger input only while the budget still fits this many epochs. On the mosaic proxy
# (configs/finetune.md) 9 epochs at 512 px beat 14 at 384 (+0.033 mAP@0.5 [+0.008, +0.066]);
# fewer than 6 was not tried, so it is where a larger input stops being chosen.
MIN_EPOCHS = 6
# The share of the budget epochs get (the rest: validation, the probe epoch's overheads, the
# budget's reserve), and the step's share of an epoch's time (loading, logging: the rest): the
# bf16 run on the first proxy trained 11 x 420 images in 20 minutes, 3.85 img/s overall
# against the step's 5.92, 0.65 = about 0.8 x 0.8. (The mosaic proxy's 512 px run, estimated
# at 7 epochs, fitted 9: the estimate errs on the side of the smaller input.)
EPOCH_SHARE = 0.8
STEP_SHARE = 0.8
# Native crops when the median photo's longer side exceeds this many times the chosen input:
# the fit would shrink every object over 3x (a 1280 px photo at 384 px: 3.3x).
NATIVE_RATIO = 3.0
# The scale jitter's smallest factor for small objects (the default 0.3 makes a 30 px box 9 px).
SMALL_SCALE_MIN = 0.6
SPEED_BATCH = 8  # the recipe's batch: the speed probe times the step the run will take


@dataclass(frozen=True)
class DataStats:
    """What the auto recipe reads from a dataset's training split."""

    images: int
    box_sides: np.ndarray  # (N,) longer box side in px, the photo letterboxed to `at_size`
    image_sides: np.ndarray  # (M,) longer photo side in px
    at_size: int

    def small_share(self, size: int) -> float:
        """The share of boxes under SMALL_SIDE px at a `size` px input (0 without boxes)."""
        if self.box_sides.size == 0:
            return 0.0
        return float(np.mean(self.box_sides * (size / self.at_size) < SMALL_SIDE))

    def median_image_side(self) -> float:
        return float(np.median(self.image_sides)) if self.image_sides.size else 0.0


def stats_from_samples(samples: Sequence[Sample], input_size: int) -> DataStats:
    """A loaded split's DataStats at an `input_size` px input (the dataset check's measures,
    without its reading of every image file for duplicates)."""
    return DataStats(len(samples), box_sizes(samples, input_size), image_sides(samples),
                     input_size)  # fmt: skip


@dataclass
class Choice:
    fields: dict[str, Any] = field(default_factory=dict)
    reasons: list[str] = field(default_factory=list)


def epochs_at(size: int, base: int, images: int, budget_s: float, img_per_s: float) -> float:
    """Epochs that fit `budget_s` at a `size` px input, the step running `img_per_s` at `base`
    px (its cost grows with the pixels)."""
    rate = img_per_s * STEP_SHARE * (base / size) ** 2
    return EPOCH_SHARE * budget_s * rate / max(images, 1)


def candidate_sizes(base: int) -> list[int]:
    return [base + k * SIZE_STEP for k in range(MAX_STEPS + 1)]


def needs_speed(stats: DataStats, base: int) -> bool:
    """Whether a larger size is in question (then the step speed decides how large)."""
    return stats.small_share(base) > SMALL_OK and stats.median_image_side() > base


def choose(
    stats: DataStats, base: int, budget_s: float = 0.0, img_per_s: float | None = None,
    grow: bool = True,
) -> Choice:
    """The data's fields for a model of input size `base`, within a budget of `budget_s`
    seconds (0: none) at a measured step speed of `img_per_s` at `base` px; `grow` False: the
    size is fixed (a flag set it), the other choices follow it."""
    out = Choice()
    small = stats.small_share(base)
    size = base
    if not grow:
        out.reasons.append(f"input_size {base}: set; {small:.0%} of the training boxes are "
                           f"under {SMALL_SIDE:.0f} px")  # fmt: skip
    elif needs_speed(stats, base):
        fits: list[int] = []
        for s in candidate_sizes(base)[1:]:
            if s > stats.median_image_side():
                break
            if budget_s > 0 and img_per_s and (
                epochs_at(s, base, stats.images, budget_s, img_per_s) < MIN_EPOCHS
            ):
                break
            fits.append(s)
            if stats.small_share(s) <= SMALL_OK:
                break
        if fits:
            size = fits[-1]
            budget = ""
            if budget_s > 0 and img_per_s:
                n = epochs_at(size, base, stats.images, budget_s, img_per_s)
                budget = f", ~{n:.0f} epochs in the budget at {img_per_s:.1f} img/s at {base} px"
            out.fields["input_size"] = size
            out.reasons.append(
                f"input_size {size}: {small:.0%} of the training boxes are under "
                f"{SMALL_SIDE:.0f} px at {base} px, {stats.small_share(size):.0%} at {size}"
                f"{budget}"
            )
        else:
            why = "the photos are not larger" if base + SIZE_STEP > stats.median_image_side() \
                else f"the budget fits < {MIN_EPOCHS} epochs at {base + SIZE_STEP} px"
            out.reasons.append(f"input_size {base}: {small:.0%} small boxes, but {why}")
    else:
        out.reasons.append(f"input_size {base}: {small:.0%} of the training boxes are under "
                           f"{SMALL_SIDE:.0f} px (<= {SMALL_OK:.0%})")  # fmt: skip
    ratio = stats.median_image_side() / size
    if ratio > NATIVE_RATIO:
        out.fields["crop_scale"] = "native"
        out.reasons.append(
            f"crop_scale native: the median photo is {ratio:.1f}x the {size} px input; serve "
            "and evaluate with tiling (DETECTOR_TILE=auto, --tile auto)"
        )
    left = stats.small_share(size)
    if left > SMALL_OK:
        out.fields.update(mosaic_prob=0.0, scale_min=SMALL_SCALE_MIN)
        out.reasons.append(
            f"mosaic_prob 0, scale_min {SMALL_SCALE_MIN}: {left:.0%} of the boxes stay under "
            f"{SMALL_SIDE:.0f} px at {size} px; Mosaic and the jitter would shrink them further"
        )
    return out


def measure_speed(
    preset: str, size: int, cpu_amp: bool, device: str = "", iters: int = 3
) -> float:
    """Images per second of the recipe's training step (batch SPEED_BATCH, random weights: the
    speed does not depend on them) on the run's device (as --device: "" picks CUDA where there
    is one), after two untimed steps (the first ones build oneDNN's kernels: one step alone
    measured 10% slow on the CPU)."""
    from training.tools.speed import StepSpec, measure

    spec = StepSpec(preset=preset, size=size, batch=SPEED_BATCH, device=device, amp=True,
                    channels_last=True, cpu_amp=cpu_amp)  # fmt: skip
    return measure(spec, iters=iters, warmup=2)


def auto_fields(settings: dict[str, Any], recipe: dict[str, Any]) -> dict[str, Any]:
    """The data's fields for a fine-tuning run with these settings (the flags and --config
    merged over `recipe`, the fields chosen so far), printed with their reasons. Fields the
    flags or --config set are left alone; `budget_spent_s` carries the speed probe's time."""
    from training.data.errors import DatasetError
    from training.data.source import load_data

    merged = {**recipe, **settings}
    base = int(merged.get("input_size") or 384)
    classes = merged.get("classes") or None
    t0 = time.perf_counter()
    try:
        samples, _ = load_data(merged["data"], "train", classes, skip_invalid=True)
        stats = stats_from_samples(samples, base)
    except (DatasetError, ValueError):
        return {}  # not a dataset it can read: the trainer says what is wrong with --data
    budget_s = float(merged.get("time_budget_min") or 0.0) * 60.0
    speed = None
    grow = "input_size" not in settings
    if budget_s > 0 and grow and needs_speed(stats, base):
        speed = measure_speed(str(merged.get("preset", "r18-gn-lite")), base,
                              bool(merged.get("cpu_amp", False)),
                              str(merged.get("device") or ""))  # fmt: skip
    choice = choose(stats, base, budget_s, speed, grow)
    out = {k: v for k, v in choice.fields.items() if k not in settings}
    for reason in choice.reasons:
        kept = [k for k in choice.fields if k in settings and reason.startswith(k)]
        said = f" ({', '.join(kept)}: set by a flag or --config, kept)" if kept else ""
        print(f"recipe auto: {reason}{said}", flush=True)
    if speed is not None:
        out["budget_spent_s"] = spent = time.perf_counter() - t0
        print(f"recipe auto: the step ran {speed:.2f} img/s at {base} px on this machine (probe "
              f"and data statistics: {spent:.0f}s of the budget)", flush=True)  # fmt: skip
    return out
