"""The training augmentation pipeline: which transforms run, in which order, with which odds."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ParamSpec

import numpy as np

from training.data.color import apply_hsv, draw_hsv
from training.data.mosaic import mixup, mosaic
from training.data.native_crop import CROP_SCALES, native_crop, native_tile
from training.data.transforms import (
    Item,
    PadValue,
    filter_boxes,
    random_hflip,
    random_scale_letterbox,
)

P = ParamSpec("P")
ItemGetter = Callable[[int], Item]  # index -> (image HxWx3 uint8, boxes (N,4), labels (N,))


@dataclass
class AugmentConfig:
    """Training augmentation settings (defaults follow YOLOX-style FCOS training)."""

    scale_min: float = 0.5  # longer side = size * U(scale_min, scale_max); mosaic zoom too
    scale_max: float = 1.5
    aspect_jitter: float = 0.0  # w/h ratio x log-uniform [1/(1+j), 1+j] per image or tile
    flip_prob: float = 0.5
    hsv_h: float = 0.015  # hue shift, fraction of the hue circle
    hsv_s: float = 0.7  # saturation gain in [1 - hsv_s, 1 + hsv_s]
    hsv_v: float = 0.4  # value gain in [1 - hsv_v, 1 + hsv_v]
    mosaic_prob: float = 0.5
    mixup_prob: float = 0.1
    mixup_beta: float = 1.5  # lambda ~ Beta(mixup_beta, mixup_beta)
    min_box_size: float = 2.0  # px: smaller boxes are dropped after augmentation
    min_visible: float = 0.25  # boxes keeping less of their area after cropping are dropped
    mosaic_center: tuple[float, float] = (0.5, 1.5)  # mosaic centre range, x size (2x canvas)
    # fit: scale_min/max x the whole image letterboxed; native: x the photo's own pixels, an
    # input-sized window cut out (native_crop.py), Mosaic tiles too
    crop_scale: str = "fit"

    def __post_init__(self) -> None:
        if not 0 < self.scale_min <= self.scale_max:
            raise ValueError(f"need 0 < scale_min <= scale_max, got {self}")
        if self.crop_scale not in CROP_SCALES:
            raise ValueError(f"crop_scale must be one of {CROP_SCALES}, not {self.crop_scale!r}")
        for name in ("flip_prob", "mosaic_prob", "mixup_prob", "min_visible"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1]")
        non_negative = (self.hsv_h, self.hsv_s, self.hsv_v, self.min_box_size, self.aspect_jitter)
        if min(non_negative) < 0 or self.mixup_beta <= 0:
            raise ValueError(f"invalid augmentation settings: {self}")

    @property
    def scale_range(self) -> tuple[float, float]:
        return self.scale_min, self.scale_max


def single_view(
    get: ItemGetter,
    index: int,
    size: int,
    cfg: AugmentConfig,
    rng: np.random.Generator,
    pad_value: PadValue,
    flip: bool = True,
) -> Item:
    """One image: scale jitter + random letterbox/crop (crop_scale fit) or a native-scale
    window (native) (+ horizontal flip if `flip`)."""
    image, boxes, labels = get(index)
    view = native_crop if cfg.crop_scale == "native" else random_scale_letterbox
    image, boxes, labels = view(
        image,
        boxes,
        labels,
        size,
        rng,
        cfg.scale_range,
        pad_value,
        cfg.min_box_size,
        cfg.min_visible,
        cfg.aspect_jitter,
    )
    if flip:
        image, boxes = random_hflip(image, boxes, rng, cfg.flip_prob)
        image = np.ascontiguousarray(image)
    return image, boxes, labels


def train_view_hsv_deferred(
    get: ItemGetter,
    index: int,
    num_items: int,
    size: int,
    cfg: AugmentConfig,
    rng: np.random.Generator,
    pad_value: PadValue,
    use_mosaic: bool = True,
    use_mixup: bool = True,
) -> tuple[Item, np.ndarray]:
    """The full training pipeline for item `index` (partners drawn from 0..num_items-1):
    Mosaic (odds mosaic_prob; crop_scale native: of `native_tile` windows) or a single view;
    MixUp with a (flipped at random) single view of a random item (odds mixup_prob); HSV
    jitter drawn; horizontal flip; a final clip + size filter. -> (item, (3,) `draw_hsv`
    gains): the jitter is not applied, so that a batch can get it on the device
    (training.data.hsv_device); `train_view` applies it here. The jitter is per pixel, so it
    commutes with the flip. The image may be a non-contiguous view."""
    if use_mosaic and cfg.mosaic_prob > 0 and rng.random() < cfg.mosaic_prob:
        partners = [int(j) for j in rng.integers(0, num_items, size=3)]
        tiles = [get(index)] + [get(j) for j in partners]
        if cfg.crop_scale == "native":
            tiles = [native_tile(*tile, size, rng, cfg.min_visible) for tile in tiles]
        image, boxes, labels = mosaic(
            tiles,
            size,
            rng,
            cfg.scale_range,
            cfg.mosaic_center,
            pad_value,
            cfg.min_box_size,
            cfg.min_visible,
            cfg.aspect_jitter,
        )
    else:
        image, boxes, labels = single_view(get, index, size, cfg, rng, pad_value, flip=False)
    if use_mixup and cfg.mixup_prob > 0 and rng.random() < cfg.mixup_prob:
        other = single_view(get, int(rng.integers(0, num_items)), size, cfg, rng, pad_value)
        image, boxes, labels = mixup((image, boxes, labels), other, rng, cfg.mixup_beta)
    hsv = draw_hsv(rng, cfg.hsv_h, cfg.hsv_s, cfg.hsv_v)
    image, boxes = random_hflip(image, boxes, rng, cfg.flip_prob)
    boxes, labels = filter_boxes(boxes, labels, size, size, cfg.min_box_size, 0.0)
    return (image, boxes, labels), hsv


def _hsv_applied(view: Callable[P, tuple[Item, np.ndarray]]) -> Callable[P, Item]:
    def apply(*args: P.args, **kwargs: P.kwargs) -> Item:
        (image, boxes, labels), gains = view(*args, **kwargs)
        return apply_hsv(image, gains), boxes, labels

    apply.__doc__ = f"{view.__name__} with its HSV jitter applied on the host -> the item."
    return apply


# The full training pipeline (train_view_hsv_deferred's arguments) -> the augmented item.
train_view = _hsv_applied(train_view_hsv_deferred)
