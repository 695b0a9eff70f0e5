"""`DetectionDataset`: samples -> (image tensor, boxes, labels) for training and evaluation."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from export.preprocess import Letterbox, letterbox_size
from model.config import IMAGENET_MEAN, IMAGENET_STD
from training.data.color import apply_hsv
from training.data.images import build_cache, decode_rgb, scale_boxes
from training.data.normalize import normalize_batch, normalize_image, to_chw_uint8
from training.data.pipeline import AugmentConfig, train_view_hsv_deferred
from training.data.sample import Sample
from training.data.transforms import Item, letterbox, mean_color

__all__ = ["AugmentConfig", "DetectionDataset", "collate", "normalize_batch"]

TensorItem = tuple[torch.Tensor, ...]  # image, boxes, labels (+ (3,) HSV gains: hsv_on_device)
Batch = tuple[torch.Tensor | list[torch.Tensor], ...]


class DetectionDataset(Dataset):
    """Items are (image (3,S,S), boxes (N,4) float32 xyxy canvas px, labels (N,) int64).

    augment: None = evaluation: the image is resized so its longer side is `size` (sizes and
        resampling of `export.preprocess.preprocess`), placed top-left; the float output equals
        export's tensor on that region and is 0 elsewhere. Otherwise the training pipeline of
        `pipeline.train_view_hsv_deferred` (scale jitter, crop, flip, HSV, Mosaic, MixUp).
    cache: decode every image once into memory (uint8; in training pre-shrunk so the longer
        side is <= ceil(size * scale_max), in eval to the letterbox size; augment.crop_scale
        native keeps (and caches) full-size images: its crops are of the photo's own pixels).
        The cache is shared copy-on-write by forked DataLoader workers.
    seed: item i of epoch e draws from `default_rng([seed, e, i])`: reproducible whatever the
        worker split. Call `set_epoch` / `set_mosaic` / `set_mixup` before each epoch's
        `iter(loader)`; with `persistent_workers=True` workers would not see the change.
    normalize_on_device: images are returned as uint8 (3,S,S) (padding = the mean colour);
        normalise the batch on the GPU with `normalize_batch(images, mean, std)`.
    hsv_on_device: (training, with normalize_on_device) the HSV jitter is drawn but not
        applied; items get a 4th element, its (3,) float64 gains, for
        `training.data.hsv_device.hsv_jitter_batch` on the batch. Same draws, same geometry.
    drop_difficult: leave difficult / iscrowd objects out of the targets.
    """

    def __init__(
        self,
        samples: Sequence[Sample],
        size: int,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        augment: AugmentConfig | None = None,
        cache: bool = False,
        seed: int = 0,
        normalize_on_device: bool = False,
        drop_difficult: bool = True,
        cache_workers: int | None = None,
        hsv_on_device: bool = False,
    ) -> None:
        if size <= 0:
            raise ValueError(f"size must be positive, got {size}")
        if hsv_on_device and not (normalize_on_device and augment is not None):
            raise ValueError("hsv_on_device needs augment and normalize_on_device (uint8 items)")
        self.samples = list(samples)
        self.size = int(size)
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        self.augment = augment
        self.seed = int(seed)
        self.normalize_on_device = normalize_on_device
        self.hsv_on_device = hsv_on_device
        self.drop_difficult = drop_difficult
        self.pad_value = mean_color(self.mean)
        self.epoch = 0
        self.mosaic_enabled = True
        self.mixup_enabled = True
        scale_max = augment.scale_max if augment is not None else 1.0
        stretch = math.sqrt(1.0 + augment.aspect_jitter) if augment is not None else 1.0
        # crop_scale native crops the photo's own pixels: decoded (and cached) at full size
        native = augment is not None and augment.crop_scale == "native"
        self.max_side = None if native else math.ceil(self.size * scale_max * stretch)
        self._images: list[np.ndarray] | None = None
        if cache:
            self._images = build_cache(
                [s.image_path for s in self.samples],
                [(s.width, s.height) for s in self.samples],
                self.max_side,
                augment is not None,
                cache_workers,
            )

    def __len__(self) -> int:
        return len(self.samples)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def set_mosaic(self, enabled: bool) -> None:
        self.mosaic_enabled = bool(enabled)

    def set_mixup(self, enabled: bool) -> None:
        self.mixup_enabled = bool(enabled)

    def rng(self, index: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, self.epoch, index])

    def raw_item(self, index: int) -> Item:
        """(image, boxes in its pixels, labels) before any transform (from the cache if any)."""
        s = self.samples[index]
        if self._images is not None:
            image = self._images[index]
        else:
            image = decode_rgb(
                s.image_path, (s.width, s.height), self.max_side, draft=self.augment is not None
            )
        keep = ~s.difficult if self.drop_difficult else np.ones(len(s.labels), dtype=bool)
        boxes = scale_boxes(s.boxes[keep], image, s.width, s.height)
        return image, boxes, s.labels[keep].astype(np.int64)

    def eval_letterbox(self, index: int) -> Letterbox:
        """Eval mode: maps canvas-pixel predictions back to the original image
        (`.to_original(boxes)`), as export's Letterbox does."""
        s = self.samples[index]
        _, rw, rh, _, _ = letterbox_size(s.width, s.height, self.size)
        return Letterbox(rw / s.width, rh / s.height, s.width, s.height, self.size, self.size)

    def __getitem__(self, index: int) -> TensorItem:
        hsv: np.ndarray | None = None
        if self.augment is None:
            image, boxes, labels = letterbox(*self.raw_item(index), self.size, self.pad_value)
        else:
            args = (self.raw_item, index, len(self), self.size, self.augment, self.rng(index))
            switches = (self.pad_value, self.mosaic_enabled, self.mixup_enabled)
            (image, boxes, labels), hsv = train_view_hsv_deferred(*args, *switches)
            if not self.hsv_on_device:
                image, hsv = apply_hsv(image, hsv), None
        item = (
            self._image_tensor(image, index),
            torch.from_numpy(np.ascontiguousarray(boxes, dtype=np.float32)),
            torch.from_numpy(np.ascontiguousarray(labels, dtype=np.int64)),
        )
        return item if hsv is None else (*item, torch.from_numpy(hsv))  # float64, as drawn

    def _image_tensor(self, canvas: np.ndarray, index: int) -> torch.Tensor:
        if self.normalize_on_device:
            return to_chw_uint8(canvas)
        if self.augment is not None:
            return normalize_image(canvas, self.mean, self.std)
        # Eval: exactly export's tensor (zeros outside the resized image).
        s = self.samples[index]
        _, rw, rh, _, _ = letterbox_size(s.width, s.height, self.size)
        out = torch.zeros((3, self.size, self.size), dtype=torch.float32)
        out[:, :rh, :rw] = normalize_image(canvas[:rh, :rw], self.mean, self.std)
        return out


def collate(batch: Sequence[TensorItem]) -> Batch:
    """-> (images (B,3,S,S), [boxes (N_i,4)], [labels (N_i,)]), plus (B,3) HSV gains when
    the items carry them (hsv_on_device)."""
    images = torch.stack([item[0] for item in batch])
    out: Batch = (images, [item[1] for item in batch], [item[2] for item in batch])
    if batch and len(batch[0]) > 3:
        out = (*out, torch.stack([item[3] for item in batch]))
    return out
